"""The ``testgate`` command line: argument parsing only, one function per command.

Options share their names with the action's inputs and the ``[tool.testgate]`` keys;
``runner.settings`` decides which value wins. Arguments after ``--`` go to pytest.
Errors become one ``testgate: error: ...`` line and the exit code SPEC gives them.
"""

from __future__ import annotations

import argparse
import difflib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner import __version__, history_run, interrupts
from runner.errors import InfraError, TestgateError
from runner.github.commands import escape_data, on_github
from runner.github.step_files import write_env, write_outputs
from runner.merge import merge
from runner.output import emit
from runner.services import STATE_FILE
from runner.settings import (
    INPUTS_ENV,
    OPTIONS,
    OPTIONS_BY_NAME,
    Settings,
    action_inputs,
    load_settings,
    read_tool_table,
    resolve,
    unknown_variables,
)

# A command imports what only it uses (run, flaky, sonar, services): ``testgate merge``
# of a large report starts in two thirds of the time without the run's and the services'
# modules.


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose "unrecognized arguments" error names the closest flag.

    Every command's parser is one (``add_subparsers`` makes its parsers of this class),
    so a mistyped flag is refused by its command's parser, which knows the flags.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        found, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._suggestion(extras)}")
        return found, extras

    def _suggestion(self, extras: Sequence[str]) -> str:
        # Compared without the dashes, which every flag shares.
        flags = [name[2:] for name in self._option_string_actions if name.startswith("--")]
        for extra in extras:
            close = difflib.get_close_matches(extra.partition("=")[0][2:], flags, n=1)
            if extra.startswith("--") and close:
                return f" (did you mean --{close[0]}?)"
        return ""


def parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    top = _Parser(
        prog="testgate",
        description="Run a Python test suite in parallel, merge its reports, enforce gates.",
        epilog="Exit codes: 0 every gate passed, 1 a gate failed, 2 usage or configuration "
        "error, 3 infrastructure error.",
    )
    top.add_argument("--version", action="version", version=f"testgate {__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run the suite, rerun failures, write reports, evaluate gates",
        description="Run the suite; arguments after -- go to pytest.",
    )
    _add_settings(run, command="run")
    flaky = commands.add_parser(
        "flaky",
        help="repeat the suite or chosen tests until each is proven flaky or stable",
        description="Flaky detection: repeat tests in shuffled order with new seeds until each "
        "flips (flaky) or passes often enough in a row (stable). Arguments after -- go to pytest.",
    )
    _add_settings(flaky, command="flaky")
    sonar_command = commands.add_parser(
        "sonar",
        help="upload the reports to SonarQube with pysonar; optionally gate on its verdict",
        description="Upload the reports dir's run to SonarQube Cloud or a Server with pysonar "
        "(token in SONAR_TOKEN), then wait for the quality gate (sonar-wait).",
    )
    _add_settings(sonar_command, command="sonar")
    sonar_command.add_argument(
        "--dry-run",
        action="store_true",
        help="pysonar's own dry run: validate the configuration and the coverage report",
    )
    merge = commands.add_parser(
        "merge",
        help="merge the reports of several runs (matrix shards, variants), then evaluate gates",
        description="Merge reports dirs of several runs into one and evaluate the gates on it.",
    )
    _add_settings(merge, command="merge")
    merge.add_argument(
        "directories",
        nargs="+",
        metavar="DIR",
        help="reports dirs to merge (relative to the project)",
    )
    gate_command = commands.add_parser(
        "gate",
        help="judge the gates again on the results a run or a merge wrote",
        description="Judge the gates again, with the thresholds set now, on the results.json "
        "of a reports dir (a run's or a merge's), and write its reports again. Nothing runs "
        "again; diff coverage is measured again against diff-base.",
    )
    _add_settings(gate_command, command="gate")
    history = commands.add_parser(
        "history",
        help="print the test history: the runs recorded, or one test's outcome in each",
        description="Print the history testgate keeps across runs (history.json.gz in the "
        "reports dir): every run, or with ID one test's outcome, attempts and duration per run.",
    )
    _add_settings(history, command="history")
    history.add_argument("test_id", nargs="?", default=None, metavar="ID", help="a node id")
    services = commands.add_parser(
        "services",
        help="start services (containers or local processes) and wait until each answers",
        description="Start the services integration tests need, wait until each answers its "
        "own protocol, and export their connection variables; or stop them again.",
    )
    actions = services.add_subparsers(dest="action", required=True, metavar="ACTION")
    services_up = actions.add_parser(
        "up",
        help="start services and export <NAME>_HOST, <NAME>_PORT and their URL variables",
        description="Start services; SPECs such as postgres:16, redis, mysql:8, mariadb, "
        "mongo:7, rabbitmq:3, NAME=IMAGE port=PORT [env=K=V] [ready=tcp|http:/PATH|cmd:CMD], "
        "or NAME=URL for one already running (default: TESTGATE_SERVICES). Prints export "
        "lines (for eval), writes $GITHUB_ENV on GitHub Actions, or --env-file.",
    )
    services_up.add_argument("specs", nargs="*", metavar="SPEC", help="services to start")
    services_up.add_argument(
        "--backend", default=None, help="auto (default), docker, local or external"
    )
    services_up.add_argument(
        "--timeout", default=None, help="seconds to wait for every service (default 60)"
    )
    services_up.add_argument(
        "--env-file", default=None, metavar="PATH", help="also write the variables as a dotenv"
    )
    services_down = actions.add_parser(
        "down", help="stop and remove everything 'services up' started (idempotent)"
    )
    for command in (services_up, services_down):
        command.add_argument(
            "--state-file",
            default=None,
            metavar="PATH",
            help=f"the record of what was started (default: {STATE_FILE})",
        )
    flaky.add_argument("--only", nargs="+", default=[], metavar="ID", help="test ids to check")
    flaky.add_argument(
        "--from-quarantine", action="store_true", help="check the quarantine file's entries"
    )
    flaky.add_argument(
        "--from-results",
        metavar="DIR",
        default=None,
        help="check the tests that failed or flaked in the reports dir of an earlier run",
    )
    return top


# uv's own singular flags, beside the plural names the action's inputs share.
CLI_ALIASES = {"groups": ("--group",), "extras": ("--extra",)}


def _add_settings(parser: argparse.ArgumentParser, *, command: str) -> None:
    """Every option's flag, named as the action's inputs; ``--help`` lists the command's own.

    The flags of options that do nothing for this command (those whose ``commands`` do
    not name it) are still taken, as before they were listed apart, but not shown.
    """
    parser.add_argument(
        "--project",
        "--working-directory",
        dest="project",
        default=None,
        help="the project root, with its pyproject.toml (default: the current directory)",
    )
    for option in OPTIONS:
        if option.pyproject_only:
            continue
        shown = command in option.commands
        if option.name == "services":
            parser.add_argument(
                "--service",
                "--services",
                dest=option.attribute,
                action="append",
                default=None,
                metavar="SPEC",
                help=_escaped(option.help) + " (repeat --service for several)"
                if shown
                else argparse.SUPPRESS,
            )
            continue
        repeatable = option.joined_by is not None
        parser.add_argument(
            f"--{option.name}",
            *CLI_ALIASES.get(option.name, ()),
            dest=option.attribute,
            action="append" if repeatable else "store",
            default=None,
            help=_escaped(option.help) + (" (may be repeated)" if repeatable else "")
            if shown
            else argparse.SUPPRESS,
        )


def _escaped(text: str) -> str:
    """A help text as argparse formats it: ``%`` (as in ``5%``) is doubled, else it crashes."""
    return text.replace("%", "%%")


def _attached(args: list[str], flag: str) -> list[str]:
    """``flag VALUE`` as ``flag=VALUE``: argparse takes a lone ``-s`` or ``--lf`` after the
    flag for an option of its own and stops (``expected one argument``); pytest's arguments
    always start with a dash."""
    out: list[str] = []
    pending = False
    for arg in args:
        if pending:
            out[-1] = f"{flag}={arg}"
            pending = False
        else:
            out.append(arg)
            pending = arg == flag
    return out


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    noted: Sequence[int] = (),
) -> int:
    """The command line's entry; returns the exit code.

    ``noted`` holds the signals that reached the process before testgate handled them
    (``runner.entry``, as Python imported testgate): the first one ends the command before
    it starts anything, exit 3. A signal that lands once the command's work is done (its
    reports written, the services it started stopped) did not cut it short, yet the
    command was asked to stop: it exits 3 and says so (``ended``), so that a script's next
    step does not run after a cancel.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    given = dict(os.environ if environ is None else environ)
    # The action's inputs hold its tokens: they are read for the settings, and kept from
    # every process testgate starts (servers, readiness commands, pytest).
    env = {name: value for name, value in given.items() if name != INPUTS_ENV}
    os.environ.pop(INPUTS_ENV, None)
    pytest_args: tuple[str, ...] = ()
    if "--" in args:
        split = args.index("--")
        args, pytest_args = args[:split], tuple(args[split + 1 :])
    namespace = parser().parse_args(_attached(args, "--pytest-args"))
    try:
        with interrupts.handling_signals():
            if noted:
                return _interrupted(signal.Signals(noted[0]).name)
            code = _command(namespace, env=env, given=given, pytest_args=pytest_args)
            interrupts.hold()
            return ended(code, interrupts.reason())
    except interrupts.Interrupted as stop:  # as the command returned, before hold
        return ended(None, stop.reason)


def _interrupted(reason: str) -> int:
    sys.stdout.flush()
    emit(
        f"testgate: error: interrupted by {reason} before anything could be reported; what "
        "testgate had started is stopped\n",
        stream=sys.stderr,
    )
    return InfraError.exit_code


def ended(code: int | None, reason: str | None) -> int:
    """The exit code of a command that ``reason`` reached after its work was done (None:
    the signal cut the return of its code short). A deadline (``timeout-run``, a flaky
    budget) is no such stop: the command said what it did with it."""
    if code is not None and (reason not in interrupts.SIGNALS or code == InfraError.exit_code):
        return code  # no signal, or one the command reported itself
    sys.stdout.flush()
    would = "" if code is None else f", and it would have exited {code}"
    emit(
        f"testgate: {reason} arrived as the command ended, after its work was done (what it "
        f"wrote is whole{would}); exit 3, as interrupted\n",
        stream=sys.stderr,
    )
    return InfraError.exit_code


def _command(
    namespace: argparse.Namespace,
    *,
    env: Mapping[str, str],
    given: Mapping[str, str],
    pytest_args: tuple[str, ...],
) -> int:
    """Run one command; errors and interruptions become a message and an exit code.

    ``given`` is the environment as testgate got it, the action's inputs included (read
    for the settings only); ``env`` is what it hands on.
    """
    for warning in unknown_variables(given):
        emit(f"testgate: warning: {warning}\n", stream=sys.stderr)
    try:
        if namespace.command == "services":
            return _services(namespace, environ=env, inputs=action_inputs(given))
        settings = _settings(namespace, environ=given, pytest_args=pytest_args)
        if namespace.command == "flaky":
            from runner.flaky import detect  # noqa: PLC0415 (lazy, see top)
            from runner.services.served import project_services  # noqa: PLC0415 (lazy)

            with project_services(settings, environ=env) as services:
                return detect(
                    settings,
                    environ=env,
                    services=services,
                    only=tuple(namespace.only),
                    from_quarantine=namespace.from_quarantine,
                    from_results=(
                        None
                        if namespace.from_results is None
                        else settings.project / namespace.from_results
                    ),
                )
        if namespace.command == "history":
            past = history_run.prepare(settings, commit=None, environ={**env, "GITHUB_ACTIONS": ""})
            emit(history_run.show(past, test_id=namespace.test_id))
            return 0
        if namespace.command == "sonar":
            from runner.sonar import sonar  # noqa: PLC0415 (lazy, see top)

            return sonar(settings, environ=env, dry_run=namespace.dry_run)
        if namespace.command == "gate":
            from runner.regate import gate  # noqa: PLC0415 (lazy, see top)

            return gate(settings, environ=env).exit_code
        if namespace.command == "merge":
            return merge(
                settings,
                environ=env,
                directories=[settings.project / directory for directory in namespace.directories],
                expect_shards=settings.expect_shards,
                expect_variants=settings.expect_variants,
            ).exit_code
        from runner import run as run_command  # noqa: PLC0415 (lazy, see top)

        return run_command.run(settings, environ=env).exit_code
    except TestgateError as error:
        sys.stdout.flush()
        emit(f"testgate: error: {error.message}\n", stream=sys.stderr)
        if on_github(env):  # a workflow's next steps can see that nothing passed
            emit(f"::error title=testgate::{escape_data(error.message)}\n", commands=True)
            if env.get("GITHUB_OUTPUT"):
                write_outputs(Path(env["GITHUB_OUTPUT"]), {"passed": "false"})
        return error.exit_code
    except interrupts.Interrupted as stop:
        return _interrupted(stop.reason)


def _settings(
    namespace: argparse.Namespace, *, environ: Mapping[str, str], pytest_args: tuple[str, ...]
) -> Settings:
    project = Path(namespace.project or environ.get("TESTGATE_WORKING_DIRECTORY") or ".")
    flags = {option.name: getattr(namespace, option.attribute, None) for option in OPTIONS}
    if flags["services"] is not None:
        flags["services"] = "\n".join(flags["services"])
    for option in OPTIONS:  # a flag given twice: both values count (see Option.joined_by)
        given = flags[option.name]
        if option.joined_by is not None and given is not None:
            flags[option.name] = option.joined_by.join(given)
    return load_settings(
        project=project, flags=flags, environ=environ, extra_pytest_args=pytest_args
    )


def _services(
    namespace: argparse.Namespace, *, environ: Mapping[str, str], inputs: Mapping[str, str]
) -> int:
    """``testgate services up|down``: no project needed.

    ``up`` takes its backend and timeout as a run does: flag, the action's input,
    ``TESTGATE_*``, then the current directory's ``[tool.testgate]`` (the action's
    services step runs in the project, so an input left empty leaves the project's).
    """
    from runner.services import lifecycle  # noqa: PLC0415 (lazy, see top)
    from runner.services.spec import parse_specs  # noqa: PLC0415 (lazy, see top)

    state_file = Path(namespace.state_file or STATE_FILE)
    if namespace.action == "down":
        lifecycle.down(state_file=state_file, environ=environ)
        return 0
    texts = namespace.specs or [inputs.get("services") or environ.get("TESTGATE_SERVICES", "")]
    specs = parse_specs(texts)
    table = read_tool_table(Path.cwd())
    backend = _option("services-backend", namespace.backend, inputs, environ, table)
    timeout = _option("services-timeout", namespace.timeout, inputs, environ, table)
    started = lifecycle.up(
        specs, backend=backend, timeout=timeout, state_file=state_file, environ=environ
    )
    found = lifecycle.variables(started)
    github_env = environ.get("GITHUB_ENV")
    try:  # the variables on GitHub's $GITHUB_ENV, in --env-file, else as export lines
        if namespace.env_file is not None:
            lifecycle.write_env_file(Path(namespace.env_file), found)
        if github_env:
            write_env(Path(github_env), found)
            emit("testgate: exported to later steps: " + ", ".join(found) + "\n")
        elif namespace.env_file is None:
            lifecycle.print_exports(found, out=sys.stdout)
    except TestgateError:  # services nobody can reach are stopped again
        lifecycle.down(state_file=state_file, environ=environ)
        raise
    return 0


def _option(
    name: str,
    flag: str | None,
    inputs: Mapping[str, str],
    environ: Mapping[str, str],
    table: Mapping[str, Any],
) -> Any:
    """One option from its flag, input, ``TESTGATE_*`` variable or ``table``, else its
    default."""
    return resolve(
        OPTIONS_BY_NAME[name],
        flag=flag,
        inputs=inputs,
        environ=environ,
        table=table,
        flag_name=name.removeprefix("services-"),
    )
