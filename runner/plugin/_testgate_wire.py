"""The plugin's wire protocol: the variables testgate hands pytest, and the record it gets back.

Both sides read this one module: the injected plugin imports it as ``_testgate_wire``
(its folder is on the project's ``PYTHONPATH``), testgate's runner as
``runner.plugin._testgate_wire``. Standard library only, and nothing but names and
shapes, because it runs inside the project's own pytest process.

Variables (each is taken out of the environment by the plugin, and kept from every
other process testgate starts):

* ``RECORD_ENV``: the path of the JSON-lines record the plugin writes;
* ``SELECT_ENV``: a selection file (the test ids of a rerun or a flaky-detection round);
* ``SCHEDULE_ENV``: the shard and ordering plan, as a JSON file's path;
* ``TIMEOUTS_ENV``: the per-test time limits, as JSON;
* ``WORKER_ENV``: JSON of variable -> template with ``{worker}``/``{index}``, filled per
  xdist worker (each worker's own database);
* ``DJANGO_ENV``: the suffix pytest-django gives test databases in a run without xdist;
* ``NO_DYNAMIC_CONTEXT_ENV``: set when pytest-cov is to record no per-test contexts;
* ``WORKERS_ENV``: the xdist workers testgate decided for the attempt, as ``-n`` takes
  them: they win over a ``-n`` in the project's addopts or one a plugin adds.

The record is one JSON object a line; ``kind`` says which, and ``FIELDS`` gives the
fields each kind always carries with their types (``OPTIONAL_FIELDS``: those it may).
"""

from __future__ import annotations

from collections.abc import Mapping

RECORD_ENV = "TESTGATE_RECORD"
SELECT_ENV = "TESTGATE_SELECT"
SCHEDULE_ENV = "TESTGATE_SCHEDULE"
TIMEOUTS_ENV = "TESTGATE_TIMEOUTS"
WORKER_ENV = "TESTGATE_WORKER_ENV"
DJANGO_ENV = "TESTGATE_DJANGO_SUFFIX"
NO_DYNAMIC_CONTEXT_ENV = "TESTGATE_COVERAGE_NO_DYNAMIC_CONTEXT"
WORKERS_ENV = "TESTGATE_ATTEMPT_WORKERS"  # not TESTGATE_WORKERS: the workers option's own
# The variables the runner hands the plugin for one attempt: never inherited by another.
ATTEMPT_VARIABLES = (RECORD_ENV, SELECT_ENV, SCHEDULE_ENV, TIMEOUTS_ENV, WORKERS_ENV)

# What an xdist worker hands its controller at its end (``workeroutput``): the tests it
# deselected, which the controller, collecting nothing itself, cannot count.
DESELECTED_OUTPUT = "testgate_deselected"

# Record kinds, in the order a session writes them.
START = "start"
COLLECTED = "collected"
DESELECTED = "deselected"  # collected tests the project's options or plugins set aside
COLLECT_ERROR = "collect-error"
COLLECT_SKIP = "collect-skip"
LOGSTART = "logstart"
REPORT = "report"
WARNING = "warning"
INTERNAL_ERROR = "internal-error"
WORKER_DOWN = "worker-down"
KEYBOARD_INTERRUPT = "keyboard-interrupt"  # what stopped the session: a Ctrl-C, or a test
FORKED = "forked"  # a process a test forked went on with pytest's session: nothing else of it
FINISH = "finish"
UNCAUGHT = "uncaught"  # an exception that ended the process after the session's last hook
CONFTEST_ERROR = "conftest-error"  # a conftest pytest could not import, before it configured

FIELDS: Mapping[str, Mapping[str, type | tuple[type, ...]]] = {
    START: {},
    COLLECTED: {"count": int},
    DESELECTED: {"count": int},
    LOGSTART: {"id": str},
    COLLECT_ERROR: {"id": str, "message": str, "text": str},
    REPORT: {"id": str, "when": str, "outcome": str, "duration": (int, float)},
    INTERNAL_ERROR: {"text": str},
    WARNING: {"text": str},
    COLLECT_SKIP: {"id": str, "message": str},
    WORKER_DOWN: {"worker": str},
    KEYBOARD_INTERRUPT: {"message": str},
    FORKED: {"pid": int},  # and the test it was forked in, if one had started
    FINISH: {"exitstatus": int},
    UNCAUGHT: {"message": str, "where": str, "text": str},
    CONFTEST_ERROR: {"path": str, "message": str},
}
OPTIONAL_FIELDS: Mapping[str, type | tuple[type, ...]] = {
    "def_line": (int, type(None)),
    "line": (int, type(None)),
    "worker": (str, type(None)),
    "message": str,
    "wasxfail": str,
    "text": str,
    "stdout": str,
    "stderr": str,
    "test": str,
    "round": (int, type(None)),
    "timed_out": bool,
    "ids": list,
    "exit": (int, type(None)),
    "interrupted": bool,  # a worker that ended on a KeyboardInterrupt, not a crash
    "subtest": str,  # which subtest a report is of: ``[msg] (i=2)``
}
# A report's outcome, as pytest's TestReport says it; a plugin may set another
# (pytest-rerunfailures: RERUN, the failure of a try it runs again).
OUTCOMES = ("passed", "failed", "skipped")
RERUN = "rerun"
