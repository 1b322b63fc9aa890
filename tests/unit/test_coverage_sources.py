"""What testgate measures when a project names no code of its own (coverage_data)."""

from __future__ import annotations

from pathlib import Path

from runner.coverage_data import (
    WHOLE_FOLDER,
    cov_arguments,
    measures_branches,
    project_data_files,
    project_name,
    whole_folder_warning,
)


def test_a_project_of_tests_alone_is_warned_only_where_a_coverage_gate_judges(
    tmp_path: Path,
) -> None:
    """Tests alone, no source configured: the whole folder is measured, and the warning
    goes only to a run that gates coverage (the run that says it:
    test_run_cli's test_a_project_of_tests_alone_is_told_its_coverage_measures_them)."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "alone"\nversion = "0"\n', "utf-8")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_it.py").write_text("def test_it():\n    pass\n", "utf-8")
    args = cov_arguments(tmp_path)
    assert WHOLE_FOLDER in args
    said = whole_folder_warning(args, gated=True)
    assert said is not None
    assert said.startswith("coverage measures the whole project folder, its tests too")
    assert whole_folder_warning(args, gated=False) is None  # no gate judges the tests' own
    assert whole_folder_warning(("--cov=lib", *args[1:]), gated=True) is None


def test_the_projects_own_data_files_are_looked_for_only_where_they_would_count(
    tmp_path: Path,
) -> None:
    """A process a test starts with the project's coverage configuration writes its data
    beside ``[run] data_file`` (the run counts it: test_run_cli's
    test_a_subprocess_the_tests_start_with_an_environment_of_their_own_counts). None is
    looked for under a configuration coverage.py cannot read, or one that names nothing to
    measure (such a process measured all it ran, not what testgate measures); a file
    coverage.py cannot read holds no branch data."""
    pyproject = tmp_path / "pyproject.toml"
    data = tmp_path / ".coverage.host.1.x"
    data.write_bytes(b"not a data file")
    pyproject.write_text('[tool.coverage.run]\nsource = ["lib"]\n', "utf-8")
    assert project_data_files(tmp_path) == {data: data.stat().st_mtime_ns}  # default name
    assert not measures_branches(data)
    pyproject.write_text("[tool.coverage.run]\nbranch = true\n", "utf-8")
    assert project_data_files(tmp_path) == {}
    pyproject.write_text('[tool.coverage.run]\nsource = ["lib"]\nbranch = "maybe"\n', "utf-8")
    assert project_data_files(tmp_path) == {}


def test_a_projects_name_comes_from_pyproject_else_setuptools_metadata(tmp_path: Path) -> None:
    """A pytest plugin's own project (pytest-timeout's metadata is in setup.cfg) is known by
    its name as one pytest imports before any plugin starts, so it is measured from the
    start: before, only ``[project] name`` counted, and its module bodies went unmeasured."""
    project = tmp_path / "p"
    project.mkdir()
    assert project_name(project) is None
    (project / "setup.py").write_text(
        "import setuptools\nsetuptools.setup(name='from-setup-py', version='1')\n", "utf-8"
    )
    assert project_name(project) == "from-setup-py"
    (project / "setup.cfg").write_text("[metadata]\nname = from-setup-cfg\n", "utf-8")
    assert project_name(project) == "from-setup-cfg"
    (project / "pyproject.toml").write_text('[project]\nname = "from-pyproject"\n', "utf-8")
    assert project_name(project) == "from-pyproject"
    for broken in ("[metadata\nname", "[tool:pytest]\naddopts = -ra\n"):
        (project / "pyproject.toml").write_text("[build-system]\n", "utf-8")
        (project / "setup.cfg").write_text(broken, "utf-8")
        for setup_py in ("setup(name=", "from setuptools import setup\nsetup(name=None)\n"):
            (project / "setup.py").write_text(setup_py, "utf-8")
            assert project_name(project) is None
    (project / "pyproject.toml").write_text("not toml", "utf-8")
    (project / "setup.py").write_text("setup(name='after-bad-toml')\n", "utf-8")
    assert project_name(project) == "after-bad-toml"
