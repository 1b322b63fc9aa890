"""pytest's configuration file, found as pytest finds it (``runner.pytest_config``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.attempts import randomly_off
from runner.pytest_config import (
    PytestConfig,
    find_config,
    selects_tests,
    switched_off,
    warning_filters,
)

INI_OPTIONS = '[tool.pytest.ini_options]\naddopts = "--cov-fail-under=50"\n'


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


def test_the_first_file_that_counts_wins_in_pytests_order(tmp_path: Path) -> None:
    assert find_config(tmp_path).where(tmp_path) == "no pytest configuration file"
    write(tmp_path / "setup.cfg", "[tool:pytest]\naddopts = -x\n")
    assert find_config(tmp_path).args("addopts") == ["-x"]
    write(tmp_path / "tox.ini", "[tox]\nenvlist = py\n")  # no [pytest]: does not count
    assert find_config(tmp_path).path == tmp_path / "setup.cfg"
    write(tmp_path / "tox.ini", "[pytest]\naddopts = -s\n")
    assert find_config(tmp_path).args("addopts") == ["-s"]
    write(tmp_path / "pyproject.toml", '[project]\nname = "p"\n')  # no pytest table
    assert find_config(tmp_path).path == tmp_path / "tox.ini"
    write(tmp_path / "pyproject.toml", INI_OPTIONS)
    assert find_config(tmp_path).args("addopts") == ["--cov-fail-under=50"]
    write(tmp_path / ".pytest.ini", "[pytest]\naddopts = --cov=pkg --cov-fail-under=70\n")
    config = find_config(tmp_path)
    assert (config.where(tmp_path), config.args("addopts")) == (
        ".pytest.ini", ["--cov=pkg", "--cov-fail-under=70"],
    )  # fmt: skip
    write(tmp_path / "pytest.ini", "# no [pytest]: counts all the same\n")
    assert find_config(tmp_path) == PytestConfig(path=tmp_path / "pytest.ini")
    write(tmp_path / ".pytest.toml", '[pytest]\naddopts = ["-q", "-k", "a b"]\n')
    assert find_config(tmp_path).args("addopts") == ["-q", "-k", "a b"]
    write(tmp_path / "pytest.toml", "")
    assert find_config(tmp_path) == PytestConfig(path=tmp_path / "pytest.toml")


def test_pytest_looks_from_the_paths_given_then_up_through_the_parents(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write(tmp_path / "tox.ini", "[pytest]\ntestpaths = tests\n")
    write(project / "tests" / "unit" / "test_a.py", "")
    write(project / "tests" / "other" / "test_b.py", "")
    assert find_config(project).path == tmp_path / "tox.ini"
    write(project / "tests" / "pytest.ini", "[pytest]\n")
    assert find_config(project).path == tmp_path / "tox.ini"
    given = ("tests/unit/test_a.py::test_a", "tests/other", "-k", "x", "missing")
    assert find_config(project, pytest_args=given).path == project / "tests" / "pytest.ini"
    assert find_config(project, pytest_args=("tests/unit",)).path == project / "tests/pytest.ini"


def test_a_config_file_named_in_the_arguments_is_the_only_one(tmp_path: Path) -> None:
    write(tmp_path / "pytest.ini", "[pytest]\naddopts = --cov-fail-under=10\n")
    write(tmp_path / "ci" / "gate.ini", "[pytest]\naddopts = --cov-fail-under=20\n")
    write(tmp_path / "ci" / "gate.cfg", "[tool:pytest]\naddopts = --cov-fail-under=30\n")
    write(tmp_path / "ci" / "gate.toml", "[pytest]\naddopts = ['--cov-fail-under=40']\n")
    write(tmp_path / "ci" / "tool.toml", INI_OPTIONS)
    write(tmp_path / "ci" / "pyproject.toml", "[pytest]\naddopts = '-x'\n")  # read by name
    write(tmp_path / "ci" / "gate.json", "{}")
    for args, expected in (
        (("-c", "ci/gate.ini"), ["--cov-fail-under=20"]),
        (("-cci/gate.cfg",), ["--cov-fail-under=30"]),
        (("--config-file", "ci/gate.toml"), ["--cov-fail-under=40"]),
        (("-c", "ci/gate.ini", "--config-file=ci/tool.toml"), ["--cov-fail-under=50"]),
        (("-c", "ci/pyproject.toml"), []),
        (("-c", "ci/gate.json"), []),  # pytest refuses the format
        (("--config-file=/dev/null",), []),  # pytest's way to ask for none
        (("-c", "ci/missing.ini"), []),
        (("-c",), ["--cov-fail-under=10"]),  # argparse would refuse this
    ):
        assert find_config(tmp_path, pytest_args=args).args("addopts") == expected, args
    assert find_config(tmp_path, pytest_args=("-c", "/dev/null")).where(tmp_path) == "/dev/null"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pytest.ini", "[pytest\naddopts = --cov-fail-under=10\n"),
        ("pytest.ini", "[pytest]\naddopts = a\naddopts = b\n"),
        ("pytest.ini", "\udcff"),
        ("tox.ini", "addopts = --cov-fail-under=10\n"),
        ("pyproject.toml", "[tool.pytest\n"),
        ("pyproject.toml", '[tool.pytest]\naddopts = "-x"\n[tool.pytest.ini_options]\n'),
        ("setup.cfg", "[pytest]\naddopts = --cov-fail-under=10\n"),
    ],
)
def test_a_file_pytest_stops_at_with_an_error_is_taken_with_no_options(
    tmp_path: Path, name: str, text: str
) -> None:
    """pytest fails with a usage error there; it never goes on to read another file."""
    write(tmp_path / "setup.cfg", "[tool:pytest]\naddopts = --cov-fail-under=99\n")
    (tmp_path / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    assert find_config(tmp_path) == PytestConfig(path=tmp_path / name)


def test_options_in_toml_and_ini_read_as_pytest_reads_args(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.pytest]\ntestpaths = 3\n")
    assert find_config(tmp_path).args("testpaths") == []
    write(tmp_path / "pyproject.toml", "[tool]\npytest = 3\n")
    assert find_config(tmp_path).path is None
    write(tmp_path / "pyproject.toml", "[tool.pytest.ini_options]\ntestpaths = ['a', 'b c']\n")
    assert find_config(tmp_path).args("testpaths") == ["a", "b c"]
    write(tmp_path / "pyproject.toml", "[tool.pytest.ini_options]\n")
    assert find_config(tmp_path).path == tmp_path / "pyproject.toml"
    (tmp_path / "pyproject.toml").unlink()
    write(tmp_path / "tox.ini", "\ufeff[pytest]\ntestpaths =\n    one\n    two 'three four'\n")
    assert find_config(tmp_path).args("testpaths") == ["one", "two", "three four"]


def test_pytest_randomly_is_off_by_an_argument_the_addopts_or_pytest_addopts(
    tmp_path: Path,
) -> None:
    assert not randomly_off(tmp_path, pytest_args=("-x",), environ={})
    assert randomly_off(tmp_path, pytest_args=("-p", "no:randomly"), environ={})
    assert randomly_off(tmp_path, pytest_args=(), environ={"PYTEST_ADDOPTS": "-p no:randomly"})
    write(tmp_path / "setup.cfg", "[tool:pytest]\naddopts = -p no:randomly\n")
    assert randomly_off(tmp_path, pytest_args=(), environ={})
    assert not randomly_off(tmp_path, pytest_args=("-c", "/dev/null"), environ={})
    assert not randomly_off(tmp_path, pytest_args=(), environ={"PYTEST_ADDOPTS": "-c /dev/null"})
    write(tmp_path / "setup.cfg", "[tool:pytest]\naddopts = -p 'no:randomly\n")  # unclosed
    assert not randomly_off(tmp_path, pytest_args=(), environ={})


def test_arguments_that_choose_some_tests_are_told_from_those_that_do_not(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("", "utf-8")
    chosen = [["tests/test_a.py::test_b"], ["tests"], ["-k", "slow"], ["-mnot slow"],
              ["--deselect=tests/test_a.py::x"], ["--lf"], ["--sw"]]  # fmt: skip
    assert [selects_tests(tmp_path, args) for args in chosen] == [True] * len(chosen)
    whole = [[], ["--tb", "short"], ["-p", "no:randomly"], ["-x", "--durations=5"]]
    assert [selects_tests(tmp_path, args) for args in whole] == [False] * len(whole)


def test_the_warning_filters_pytest_applies_as_it_configures_are_found_everywhere(
    tmp_path: Path,
) -> None:
    """The configuration's filterwarnings (an ini file's lines, a TOML list) and every -W of
    addopts, PYTEST_ADDOPTS and the command line: their categories are imported before
    pytest-cov starts (test_run_cli's
    test_a_project_whose_warning_filter_names_its_own_category_is_measured_from_the_start)."""
    write(
        tmp_path / "tox.ini",
        "[pytest]\naddopts = -W error::a.A --pythonwarnings=ignore::b.B\n"
        "filterwarnings =\n    error\n    ignore::c.C\n",
    )
    environ = {"PYTEST_ADDOPTS": "-Wignore::d.D"}
    found = warning_filters(tmp_path, pytest_args=["--pythonwarnings", "e"], environ=environ)
    assert found == ["error", "ignore::c.C", "error::a.A", "ignore::b.B", "ignore::d.D", "e"]
    write(tmp_path / "pytest.toml", '[pytest]\nfilterwarnings = ["ignore::f.F"]\n')
    assert warning_filters(tmp_path, pytest_args=[], environ={}) == ["ignore::f.F"]
    write(tmp_path / "pytest.toml", "[pytest]\nfilterwarnings = 3\n")  # pytest refuses it
    assert warning_filters(tmp_path, pytest_args=["-W"], environ={}) == []


def test_plugins_the_projects_options_switch_off_are_found_where_they_are(tmp_path: Path) -> None:
    """``-p no:NAME`` in addopts, PYTEST_ADDOPTS or pytest-args blocks a plugin testgate runs:
    pytest then refuses its options (``-n``, ``--cov``, ``--randomly-seed``)."""
    project = write(
        tmp_path / "p" / "pytest.ini",
        "[pytest]\naddopts = -p no:cacheprovider -pno:pytest_cov -p xdist -p\n",
    ).parent
    found = switched_off(project, pytest_args=["-p", "no:randomly"],
                         environ={"PYTEST_ADDOPTS": "-p no:xdist.plugin -p no:xdist"})  # fmt: skip
    assert found == {
        "cov": "pytest.ini's addopts", "xdist": "PYTEST_ADDOPTS", "randomly": "pytest-args",
    }  # fmt: skip
    assert switched_off(tmp_path / "none", pytest_args=[], environ={}) == {}  # no config
