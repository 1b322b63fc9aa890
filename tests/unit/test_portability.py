"""Every runner module imports where POSIX-only parts of Python are missing (Windows).

One Python process hides ``pwd`` and ``fcntl`` behind a meta path finder and deletes
``os.killpg`` (and the other process-group calls Windows lacks), then imports every
module of ``runner``, and the plugin as pytest loads it, as a Windows runner's ``testgate`` would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

HIDDEN_MODULES = ("pwd", "fcntl", "grp", "termios", "resource")
HIDDEN_FUNCTIONS = ("killpg", "getpgid", "setpgid", "setsid", "getuid", "geteuid", "fork")
IMPORT_ALL = """
import importlib, json, os, pkgutil, sys

hidden = set(sys.argv[1].split(","))

class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden: not on Windows)")
        return None

sys.meta_path.insert(0, Hide())
for name in hidden:
    sys.modules.pop(name, None)
for name in sys.argv[2].split(","):
    if hasattr(os, name):
        delattr(os, name)
sys.path.insert(0, sys.argv[3])  # the plugin imports its sibling as pytest loads it
import runner

failed = {}
names = [module.name for module in pkgutil.walk_packages(runner.__path__, "runner.")]
names.remove("runner.__main__")  # importing it runs the command line (runner.cli is checked)
# loaded into pytest from runner/plugin
names += ["_testgate_plugin", "_testgate_schedule", "_testgate_wire", "_testgate_timeouts"]
for name in names:
    try:
        importlib.import_module(name)
    except Exception as error:
        failed[name] = f"{type(error).__name__}: {error}"
print(json.dumps({"imported": names, "failed": failed}))
"""


def test_every_module_imports_without_pwd_fcntl_or_killpg() -> None:
    completed = subprocess.run(
        [sys.executable, "-I", "-c", IMPORT_ALL, ",".join(HIDDEN_MODULES),
         ",".join(HIDDEN_FUNCTIONS), str(ROOT / "runner" / "plugin")],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout.splitlines()[-1])
    assert found["failed"] == {}
    for module in ("runner.cli", "runner.services.local", "runner.execute", "runner.run"):
        assert module in found["imported"]
    assert "_testgate_plugin" in found["imported"]


def test_a_venvs_python_is_where_each_os_puts_it(tmp_path: Path) -> None:
    # A requirements-only project's venv, and an activated one, on a Windows runner keep
    # their Python in Scripts\python.exe: bin/python was looked for there, and not found.
    from runner.environment import venv_python  # noqa: PLC0415 (after the import check)

    assert venv_python(tmp_path, windows=True) == tmp_path / "Scripts" / "python.exe"
    assert venv_python(tmp_path, windows=False) == tmp_path / "bin" / "python"
    assert venv_python(tmp_path) == tmp_path / ("Scripts" if sys.platform == "win32" else "bin") / (
        "python.exe" if sys.platform == "win32" else "python"
    )
