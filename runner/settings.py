"""Settings: what one testgate command was asked to do, from every place it can be said.

Each option has one kebab-case name, shared by the command line (``--fail-under-line``),
the action's inputs (``fail-under-line:``), the environment (``TESTGATE_FAIL_UNDER_LINE``)
and ``[tool.testgate]`` in the project's pyproject.toml (``fail-under-line``). The first of
those that sets an option wins, in that order; otherwise the default applies. A bad value
is a ``ConfigError`` that names where it came from and what would be accepted.

The action hands testgate all of its inputs at once, as ``toJSON(inputs)`` in
``TESTGATE_INPUTS``; an input left empty (every option input's default) is not set, so
pyproject decides. Adding an option is one entry in ``OPTIONS`` and one input in action.yml.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import shlex
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import ConfigError
from runner.plugin import _testgate_wire as wire

if TYPE_CHECKING:
    from runner.services.spec import ServiceSpec

ENV_PREFIX = "TESTGATE_"
INPUTS_ENV = "TESTGATE_INPUTS"
# Inputs the action itself acts on in a step of its own: the action's services step has
# started them (the run then finds them in the project's state file), so the run does not.
STEP_INPUTS = frozenset({"services"})
DIST_MODES = ("worksteal", "load", "loadscope", "loadfile", "loadgroup", "each", "no")
# The commands that take settings, and which of them an option acts on: a command's
# --help lists only those.
COMMANDS = ("run", "flaky", "merge", "gate", "sonar", "history")
TESTS = ("run", "flaky")  # installing the project, running pytest, services
JUDGED = ("run", "flaky", "merge")  # gates, history and annotations of a run's results
GATED = (*JUDGED, "gate")  # the gates' thresholds and annotations: judged again by gate


def _percent(text: str) -> float:
    """A percentage, with or without its sign: ``95.5``, ``95.5%`` (as max-skipped takes)."""
    value = _number(text.strip().removesuffix("%"))
    if not 0 <= value <= 100:
        raise ValueError("must be a percentage from 0 to 100")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("must be a whole number") from None
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _optional_count(text: str) -> int | None:
    if text.strip().lower() in ("", "none"):
        return None
    value = _count(text)
    if value < 1:
        raise ValueError("must be a whole number above 0")
    return value


def _probability(text: str) -> float:
    value = _number(text)
    if not 0 < value < 1:
        raise ValueError("must be a probability between 0 and 1, such as 0.05")
    return value


def _seconds(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise ValueError("must be a number of seconds above 0")
    return value


def _optional_seconds(text: str) -> float | None:
    if text.strip().lower() in ("", "none", "off"):
        return None
    value = _number(text)
    if value <= 0:
        raise ValueError("must be a number of seconds above 0, or 'none'")
    return value


def _timeout(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise ValueError("must be a number of seconds, or 0 for no limit")
    return value


def _marker_timeouts(text: str) -> tuple[tuple[str, float], ...]:
    """``unit=1, integration=5`` (a TOML table arrives as such lines) as sorted pairs."""
    pairs: dict[str, float] = {}
    for item in (part.strip() for part in re.split(r"[,\n]", text)):
        if not item:
            continue
        marker, equals, seconds = (piece.strip() for piece in item.partition("="))
        if not equals or not marker.isidentifier():
            raise ValueError("must be a table of marker = seconds, such as {unit = 1, slow = 30}")
        value = _number(seconds)
        if value <= 0:
            raise ValueError(f"gives marker {marker!r} {seconds} s: a timeout must be above 0")
        pairs[marker] = value
    return tuple(sorted(pairs.items()))


def _workers(text: str) -> str:
    value = text.strip().lower()
    if value in ("auto", "logical"):
        return value
    return str(_count(value))


def _dist(text: str) -> str:
    value = text.strip().lower()
    if value not in DIST_MODES:
        raise ValueError("must be one of " + ", ".join(DIST_MODES))
    return value


# The words a boolean option takes, in any case; action.yml's setup-uv takes the same.
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ValueError("must be true or false")


def _arguments(text: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(text))
    except ValueError as error:
        raise ValueError(f"cannot be split into arguments ({error})") from None


def _shard(text: str) -> str | None:
    value = text.strip()
    if value.lower() in ("", "none"):
        return None
    index, _, count = value.partition("/")
    if not (index.isdigit() and count.isdigit()) or not 1 <= int(index) <= int(count):
        raise ValueError("must be I/N with 1 <= I <= N, such as 2/4")
    return f"{int(index)}/{int(count)}"


# runner.services is imported where a service option is parsed: the commands that use
# none (merge, gate, sonar) do not load it.
def _services(text: str) -> tuple[ServiceSpec, ...]:
    from runner.services.spec import parse_specs  # noqa: PLC0415 (lazy, see above)

    try:
        return parse_specs([text])
    except ConfigError as error:
        raise ValueError(f"is not a list of services: {error.message}") from None


def _service_env(text: str) -> dict[str, dict[str, str]]:
    """``SERVICE.VARIABLE=TEMPLATE`` lines (pyproject: a table of tables) -> per service."""
    found: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        target, equals, template = line.strip().partition("=")
        service, dot, variable = target.strip().partition(".")
        if not (equals and dot and service.strip() and variable.strip().isidentifier()):
            raise ValueError(
                f"has {line.strip()!r}, not SERVICE.VARIABLE=TEMPLATE such as "
                "postgres.POSTGRES_SERVER={host}"
            )
        from runner.services.running import check_template  # noqa: PLC0415 (lazy, see above)

        problem = check_template(template)
        if problem is not None:
            raise ValueError(f"has {line.strip()!r}: {problem}")
        found.setdefault(service.strip().lower(), {})[variable.strip()] = template.strip()
    return found


def _service_setup(text: str) -> dict[str, str]:
    """``SERVICE=COMMAND`` lines (pyproject: a table) -> the command per service."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        service, equals, command = line.strip().partition("=")
        if not (equals and service.strip() and command.strip()):
            raise ValueError(
                f"has {line.strip()!r}, not SERVICE=COMMAND such as postgres=alembic upgrade head"
            )
        found[service.strip().lower()] = command.strip()
    return found


def _backend(text: str) -> str:
    from runner.services.spec import BACKENDS  # noqa: PLC0415 (lazy, see above)

    value = text.strip().lower()
    if value not in BACKENDS:
        raise ValueError("must be one of " + ", ".join(BACKENDS))
    return value


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


def _optional_text(text: str) -> str | None:
    return text.strip() or None


def _python_version(text: str) -> str | None:
    """A Python version for uv; ``3.1`` and ``3.2`` are refused: they are what YAML makes of
    an unquoted ``3.10`` and ``3.20`` (``python-version: [3.10, 3.11]``), not a Python
    anyone tests on."""
    value = _optional_text(text)
    if value in ("3.1", "3.2"):
        raise ValueError(f'is what YAML makes of an unquoted {value}0: quote it ("{value}0")')
    return value


def _names(text: str) -> tuple[str, ...]:
    """Names separated by commas or spaces: dependency groups, extras, files."""
    return tuple(name for name in re.split(r"[,\s]+", text.strip()) if name)


def _count_or_share(text: str) -> str | None:
    """A count (``10``) or a share of the tests (``5%``), or none (off)."""
    value = text.strip().lower()
    if value in ("", "none", "off"):
        return None
    if value.endswith("%"):
        return f"{_percent(value[:-1])}%"
    return str(_count(value))


def _days(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise ValueError("must be a number of days above 0")
    return value


def _counts_as(text: str) -> str:
    value = text.strip().lower()
    if value not in ("flaky", "failed", "quarantined"):
        raise ValueError("must be flaky, failed or quarantined")
    return value


@dataclass(frozen=True)
class Option:
    """One setting: its kebab-case name, how text becomes a value, the default, help.

    ``commands`` are those it does something for (COMMANDS), whose ``--help`` lists it;
    every command reads every option, from its flag, the action's inputs, ``TESTGATE_*``
    and pyproject alike.
    """

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    pyproject_only: bool = False
    commands: tuple[str, ...] = TESTS

    @property
    def attribute(self) -> str:
        return self.name.replace("-", "_")

    @property
    def joined_by(self) -> str | None:
        """How the values of a flag given more than once join: a list of names (``--group
        test --group django52``, as uv takes them) or pytest arguments; None for a single
        value, where the last one given wins, as argparse has it."""
        if self.parse is _names:
            return ","
        return " " if self.parse is _arguments else None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.attribute.upper()


OPTIONS: tuple[Option, ...] = (
    Option(
        "reports-dir",
        _text,
        "testgate-reports",
        "where reports go, relative to the project",
        commands=COMMANDS,
    ),
    Option(
        "workers", _workers, "auto", "xdist workers: a number, 'auto' or 'logical'; 0 = no xdist"
    ),
    Option("dist", _dist, "worksteal", "xdist scheduler"),
    Option("fail-under-line", _percent, 100.0, "minimum line coverage, percent", commands=GATED),
    Option(
        "fail-under-branch", _percent, 100.0, "minimum branch coverage, percent", commands=GATED
    ),
    Option(
        "fail-under-diff",
        _percent,
        100.0,
        "minimum coverage of the lines changed since diff-base",
        commands=GATED,
    ),
    Option(
        "diff-base",
        _optional_text,
        None,
        "git ref to diff against (default: the PR's base, else origin/HEAD, main or master)",
        commands=("run", "flaky", "merge", "gate", "history"),
    ),
    Option(
        "min-tests",
        _count,
        1,
        "fewest tests that must run (skipped tests do not count)",
        commands=GATED,
    ),
    Option(
        "max-duration",
        _optional_seconds,
        None,
        "longest allowed suite wall time, seconds",
        commands=GATED,
    ),
    Option("reruns", _count, 2, "times a failed test is rerun to tell flaky from broken"),
    Option(
        "max-reruns",
        _count_or_share,
        None,
        "most failed tests rerun: a count, or a percent of the tests such as 10%; more "
        "failures are reported without reruns (default: no limit)",
        commands=("run",),
    ),
    Option("max-flaky", _count, 0, "most flaky tests allowed", commands=GATED),
    Option(
        "quarantine",
        _optional_text,
        None,
        "file of test ids whose failures do not fail the gate",
        commands=JUDGED,  # gate classifies no test again: its expiry gate alone reads it
    ),
    Option(
        "confidence",
        _probability,
        0.95,
        "flaky detection: confidence of a stable verdict",
        commands=JUDGED,
    ),
    Option(
        "max-fail-rate",
        _probability,
        0.05,
        "flaky detection: failure rate ruled out",
        commands=JUDGED,
    ),
    Option(
        "time-budget",
        _optional_seconds,
        None,
        "flaky detection: stop after this many seconds",
        commands=("flaky",),
    ),
    Option(
        "timeout", _timeout, 900.0, "seconds one test may take before it is stopped (0: no limit)"
    ),
    Option(
        "timeouts",
        _marker_timeouts,
        (),
        "per-marker test timeouts, {unit = 1, integration = 5}: the strictest marker wins",
        pyproject_only=True,
    ),
    Option(
        "timeout-run",
        _optional_seconds,
        None,
        "hard deadline for the whole run, seconds: pytest is stopped and the run is interrupted",
    ),
    Option("shard", _shard, None, "run shard I/N of the suite, balanced by recorded durations"),
    Option(
        "durations",
        _optional_text,
        None,
        "durations.json to balance shards and order tests by (default: the reports dir's)",
    ),
    Option(
        "sonar-host-url",
        _text,
        "https://sonarcloud.io",
        "SonarQube Cloud, or a Server's URL",
        commands=("sonar",),
    ),
    Option(
        "sonar-organization",
        _optional_text,
        None,
        "SonarQube Cloud organization",
        commands=("sonar",),
    ),
    Option("sonar-project-key", _optional_text, None, "SonarQube project key", commands=("sonar",)),
    Option(
        "sonar-wait",
        _boolean,
        True,
        "wait for SonarQube's quality gate and fail on it",
        commands=("sonar",),
    ),
    Option(
        "sonar-timeout",
        _seconds,
        300.0,
        "longest wait for SonarQube's quality gate, seconds",
        commands=("sonar",),
    ),
    Option("pytest-args", _arguments, (), "extra pytest arguments, as one shell-quoted string"),
    Option("python-version", _python_version, None, "the Python uv runs the suite with"),
    Option("sync", _boolean, True, "install the project's environment first (uv sync)"),
    Option(
        "python",
        _optional_text,
        None,
        "an existing environment's Python to run the suite with, as it is (no sync)",
    ),
    Option(
        "groups",
        _names,
        (),
        "dependency groups to install (default: those of dev, test, tests, testing it has)",
    ),
    Option("extras", _names, (), "extras to install (default: all of them)"),
    Option("all-groups", _boolean, False, "install every dependency group"),
    Option(
        "requirements",
        _names,
        (),
        "requirements files to install, for a project without a [project] table "
        "(default: requirements*.txt and requirements/*.txt)",
    ),
    Option("package", _optional_text, None, "the uv workspace member to test (default: all)"),
    Option(
        "max-skipped",
        _count_or_share,
        None,
        "most skipped tests allowed: a count, or a percent of the tests such as 5%",
        commands=GATED,
    ),
    Option(
        "services",
        _services,
        (),
        "services to start around the run, one per line or comma-separated: postgres:16, "
        "redis, mysql, mariadb, mongo, rabbitmq, NAME=IMAGE port=PORT, or NAME=URL",
    ),
    Option(
        "services-backend",
        _backend,
        "auto",
        "how to provide services: auto (docker when an engine answers, else local), "
        "docker, local or external",
    ),
    Option("services-timeout", _seconds, 60.0, "longest wait for the services to be ready"),
    Option(
        "service-env",
        _service_env,
        None,
        "the project's own variable names per service, filled per xdist worker: lines of "
        "SERVICE.VARIABLE=TEMPLATE with {host} {port} {user} {password} {database} {url} "
        '(pyproject: [tool.testgate.service-env.postgres] POSTGRES_SERVER = "{host}")',
    ),
    Option(
        "service-setup",
        _service_setup,
        None,
        "the command that builds a service's schema (SERVICE=COMMAND lines, such as "
        "postgres=alembic upgrade head), run in the project's environment against a "
        "template database each worker's is copied from, or once per worker database",
    ),
    Option(
        "annotations",
        _boolean,
        True,
        "on GitHub: put failures and flaky tests on the PR",
        commands=GATED,
    ),
    Option(
        "expect-shards",
        _optional_count,
        None,
        "merge: the matrix's shard count; each variant must have shards 1/N .. N/N, once each",
        commands=("merge",),
    ),
    Option(
        "expect-variants",
        _optional_count,
        None,
        "merge: the number of variants (Python x OS) the matrix runs; one missing is an error",
        commands=("merge",),
    ),
    Option(
        "history",
        _optional_text,
        None,
        "the test history file (default: history.json.gz in the reports dir)",
        commands=("run", "flaky", "merge", "gate", "history"),
    ),
    Option("history-runs", _count, 100, "the history keeps the last N runs", commands=JUDGED),
    Option(
        "history-days", _days, 90.0, "the history keeps runs no older than D days", commands=JUDGED
    ),
    Option(
        "history-flaky",
        _counts_as,
        "flaky",
        "a failure the history shows flaky counts as: flaky (toward max-flaky), failed "
        "(toward failed-tests, labelled only) or quarantined (toward neither)",
        commands=JUDGED,
    ),
)
OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Settings:
    """Everything ``testgate run`` needs to know, resolved and validated."""

    project: Path
    reports_dir: Path
    workers: str
    dist: str
    fail_under_line: float
    fail_under_branch: float
    fail_under_diff: float
    diff_base: str | None
    min_tests: int
    max_duration: float | None
    reruns: int
    max_reruns: str | None
    max_flaky: int
    quarantine: Path | None
    confidence: float
    max_fail_rate: float
    time_budget: float | None
    timeout: float
    timeouts: tuple[tuple[str, float], ...]
    timeout_run: float | None
    shard: str | None
    durations: Path | None
    sonar_host_url: str
    sonar_organization: str | None
    sonar_project_key: str | None
    sonar_wait: bool
    sonar_timeout: float
    pytest_args: tuple[str, ...]
    python_version: str | None
    sync: bool
    python: str | None
    groups: tuple[str, ...]
    extras: tuple[str, ...]
    all_groups: bool
    requirements: tuple[str, ...]
    package: str | None
    max_skipped: str | None
    services: tuple[ServiceSpec, ...]
    services_backend: str
    services_timeout: float
    service_env: dict[str, dict[str, str]] | None
    service_setup: dict[str, str] | None
    annotations: bool
    expect_shards: int | None
    expect_variants: int | None
    explicit: frozenset[str] = frozenset()  # the options set anywhere but by default
    # Where the project states the line-coverage gate's threshold (its coverage config's
    # fail_under, or --cov-fail-under), when testgate's settings do not: the gate then
    # judges coverage.py's total, as coverage.py does (runner.thresholds).
    threshold_from: str | None = None
    history: str | None = None
    history_runs: int = 100
    history_days: float = 90.0
    history_flaky: str = "flaky"


def action_inputs(environ: Mapping[str, str]) -> dict[str, str]:
    """The options the action's inputs set: ``TESTGATE_INPUTS`` read, empty inputs dropped.

    Inputs that are not options (``mode``, the tokens ...) are the action's own business.
    """
    text = environ.get(INPUTS_ENV, "").strip()
    if not text:
        return {}
    try:
        inputs = json.loads(text)
    except ValueError as error:
        raise ConfigError(
            f"{INPUTS_ENV} is not JSON ({error}): the action sets it to toJSON(inputs); "
            "unset it outside the action."
        ) from None
    if not isinstance(inputs, dict):
        raise ConfigError(f"{INPUTS_ENV} must be a JSON object of the action's inputs.")
    found: dict[str, str] = {}
    for name, value in inputs.items():
        if name not in OPTIONS_BY_NAME or value is None:  # null: not set, as ""
            continue
        if isinstance(value, dict):
            raise ConfigError(
                f"the action's input {name} is a JSON object in {INPUTS_ENV}; give it as text."
            )
        given = _toml_text(value)
        if given.strip():
            found[name] = given
    return found


def load_settings(
    *,
    project: Path,
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    extra_pytest_args: tuple[str, ...] = (),
) -> Settings:
    """Resolve every option: flags, the action's inputs, ``TESTGATE_*``, pyproject, defaults.

    ``flags`` maps kebab-case option names to the text given on the command line (None
    when absent). ``extra_pytest_args`` are the arguments after ``--``; they come after
    the ``pytest-args`` option so they win where pytest lets the last one win.
    """
    root = project.resolve()
    table = read_tool_table(root)
    given = action_inputs(environ)
    inputs = {name: text for name, text in given.items() if name not in STEP_INPUTS}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        values[option.attribute] = resolve(
            option, flag=flags.get(option.name), inputs=inputs, environ=environ, table=table
        )
    values["pytest_args"] = tuple(values["pytest_args"]) + extra_pytest_args
    # The action's step started the services its input names: the run awaits those (the
    # state file), never pyproject's or TESTGATE_SERVICES' instead, as an input wins.
    if "services" in given:
        values["services"] = ()
    explicit = frozenset(
        option.name
        for option in OPTIONS
        if flags.get(option.name) is not None or option.env in environ or option.name in table
    )
    reports = Path(values.pop("reports_dir"))
    quarantine = values.pop("quarantine")
    durations = values.pop("durations")
    return Settings(
        project=root,
        reports_dir=root / reports,
        quarantine=None if quarantine is None else root / quarantine,
        durations=None if durations is None else root / durations,
        explicit=explicit,
        **values,
    )


# Flags a user writes otherwise than the option's name: ``--service`` once per service.
FLAG_NAMES = {"services": "service"}


def resolve(
    option: Option,
    *,
    flag: str | None,
    inputs: Mapping[str, str],
    environ: Mapping[str, str],
    table: Mapping[str, Any],
    flag_name: str | None = None,
) -> Any:
    """One option's value from the first place that sets it, or its default.

    A ``pyproject_only`` option (a table such as ``timeouts``) is read from pyproject alone.
    """
    if flag is not None and not option.pyproject_only:
        name = flag_name or FLAG_NAMES.get(option.name, option.name)
        return parse_option(option, flag, source=f"--{name}")
    if option.name in inputs and not option.pyproject_only:
        return parse_option(option, inputs[option.name], source=f"the action's input {option.name}")
    # Empty: not set, as an empty action input.
    if environ.get(option.env, "").strip() and not option.pyproject_only:
        return parse_option(option, environ[option.env], source=option.env)
    if option.name in table:
        return parse_option(
            option,
            _toml_text(table[option.name], lines=option.name == "services"),
            source=f"{option.name} in [tool.testgate] of pyproject.toml",
        )
    return option.default


def parse_option(option: Option, text: str, *, source: str) -> Any:
    try:
        return option.parse(text)
    except ValueError as error:
        raise ConfigError(f"{source}: {text!r} {error} ({option.help}).") from None


def _toml_text(value: object, *, lines: bool = False) -> str:
    """TOML gives numbers, booleans and lists; every parser takes text.

    A list becomes shell words, or one item per line when ``lines`` (service specs); a
    table becomes ``KEY=VALUE`` lines.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        items = [str(item) for item in value]
        return "\n".join(items) if lines else shlex.join(items)
    if isinstance(value, dict):  # a table: KEY=VALUE lines, nested keys joined by dots
        return "\n".join(
            f"{key}.{line}" if isinstance(item, dict) else f"{key}={item}"
            for key, item in value.items()
            for line in (_toml_text(item).splitlines() if isinstance(item, dict) else [""])
        )
    return str(value)


def read_tool_table(project: Path) -> dict[str, Any]:
    """Read ``[tool.testgate]`` from the project's pyproject.toml, checking its keys."""
    pyproject = project / "pyproject.toml"
    if not project.is_dir():
        raise ConfigError(f"project directory {project} does not exist: pass --project DIR.")
    if not pyproject.is_file():
        return {}  # a project with requirements files only (runner.environment says)
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{pyproject} is not valid TOML: {error}. Fix the file.") from None
    table = data.get("tool", {}).get("testgate", {})
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.testgate] in {pyproject} must be a table of options.")
    unknown = sorted(set(table) - set(OPTIONS_BY_NAME))
    if unknown:
        close = difflib.get_close_matches(unknown[0], OPTIONS_BY_NAME, n=1)
        known = (
            f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(OPTIONS_BY_NAME)}."
        )
        raise ConfigError(f"unknown key {unknown[0]!r} in [tool.testgate] of {pyproject}; {known}")
    return table


#: The ``TESTGATE_*`` variables that are no option's: the action's, and those testgate
#: sets for the processes it starts (pytest and its plugin), which may start testgate.
OWN_VARIABLES = frozenset(
    {
        INPUTS_ENV,
        "TESTGATE_MODE",  # the action's run step
        "TESTGATE_WORKING_DIRECTORY",  # runner.cli: the project, from the action
        "TESTGATE_GITHUB_TOKEN",  # runner.github.client
        "TESTGATE_SONAR_TOKEN",  # runner.child_env: kept from children
        "TESTGATE_ARTIFACT",  # runner.github.step
        "TESTGATE_SERVICES_LOG",  # runner.services.lifecycle.UP_LOG_ENV
        "TESTGATE_RUN_MARKER",  # runner.process_group.MARKER_ENV
        # what the runner hands the plugin
        *wire.ATTEMPT_VARIABLES,
        wire.WORKER_ENV,
        wire.DJANGO_ENV,
        wire.NO_DYNAMIC_CONTEXT_ENV,
    }
)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``TESTGATE_*`` variable that sets no option (a typo, as
    ``TESTGATE_FAIL_UNDER_LNE``, would else be ignored without a word), with the
    option variable closest to it."""
    options = [option.env for option in OPTIONS if not option.pyproject_only]
    # Compared without the prefix, which every one shares.
    suffixes = [name.removeprefix(ENV_PREFIX) for name in options]
    warnings = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in options or name in OWN_VARIABLES:
            continue
        close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), suffixes, n=1)
        mean = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
        warnings.append(f"{name} sets no testgate option, it is ignored{mean}")
    return warnings
