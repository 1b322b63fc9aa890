"""The environment probe's answer is kept per environment, not per place of the project."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from runner import environment
from runner.errors import ConfigError
from runner.settings import Settings, load_settings
from tests.conftest import copy_fixture
from tests.conftest import environment as shell


def settings_of(project: Path, **flags: str) -> Settings:
    return load_settings(project=project, flags=dict(flags), environ={})


def counting(tmp_path: Path) -> tuple[Path, Path]:
    """A folder for PYTHONPATH whose sitecustomize logs every start of a Python that runs
    its site hooks, as the probe's does; and the log."""
    site, log = tmp_path / "site", tmp_path / "started.log"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"open({str(log)!r}, 'a').write('1\\n')\n", "utf-8")
    return site, log


def starts(log: Path) -> int:
    count = len(log.read_text("utf-8").splitlines()) if log.exists() else 0
    log.unlink(missing_ok=True)
    return count


def test_a_copy_of_the_project_on_the_same_environment_reuses_its_answer(
    tmp_path: Path,
) -> None:
    """A checkout in another folder (a CI workspace, a second clone) that runs on the same
    environment starts no probe; a copy that differs where the probe looks is asked."""
    site, log = counting(tmp_path)
    environ = shell(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(site))
    first = copy_fixture("passing", tmp_path / "a")
    found = environment.probe(settings_of(first, python=sys.executable), environ, sources=("calc",))
    assert starts(log) == 1
    second = copy_fixture("passing", tmp_path / "b")
    again = environment.probe(
        settings_of(second, python=sys.executable), environ, sources=("calc",)
    )
    assert (starts(log), again) == (0, found)
    (second / "calc.py").write_text("", "utf-8")  # importable at the root, where it runs
    environment.probe(settings_of(second, python=sys.executable), environ, sources=("calc",))
    assert starts(log) == 1
    (second / "notes.txt").write_text("", "utf-8")  # nothing Python imports
    (second / "testgate-reports").mkdir()
    environment.probe(settings_of(second, python=sys.executable), environ, sources=("calc",))
    assert starts(log) == 0
    kept = list((tmp_path / "cache" / "testgate" / "probes").iterdir())
    assert len(kept) == 1  # one file for the environment, holding both answers
    environment.probe(settings_of(first, python=sys.executable), environ, sources=("calc",))
    assert starts(log) == 0


def test_a_package_imported_from_one_checkout_lends_its_answer_to_no_other(
    tmp_path: Path,
) -> None:
    """When the environment imports the project's package from a folder of its own (an
    absolute PYTHONPATH here; an editable install's .pth or finder alike), the answer
    holds for that checkout alone: a second checkout on the same environment is probed,
    and refused, since its tests would test the first one's code."""
    first = tmp_path / "a" / "lib"
    (first / "src" / "lib").mkdir(parents=True)
    (first / "src" / "lib" / "__init__.py").write_text("", "utf-8")
    (first / "pyproject.toml").write_text('[project]\nname = "lib"\nversion = "1"\n', "utf-8")
    second = tmp_path / "b" / "lib"
    shutil.copytree(first, second)
    environ = shell(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(first / "src"))
    environment.probe(settings_of(first, python=sys.executable), environ, sources=("src",))
    environment.probe(settings_of(first, python=sys.executable), environ, sources=("src",))
    with pytest.raises(ConfigError, match=r"'lib' is imported from .*/a/lib/src/lib/__init__"):
        environment.probe(settings_of(second, python=sys.executable), environ, sources=("src",))
