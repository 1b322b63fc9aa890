"""The hostile-input suite: testgate against the code it tests (README's "Security promises").

Each case gives testgate something an attacker controls (a pull request's tests, tree,
reports or an earlier attempt's artifact) and checks what a user would see: the exit
code, the message's key words, and that nothing outside testgate's own files changed (a
snapshot of the project tree and of a decoy dir beside it, before and after).

Output is read as GitHub's runner reads it (``runner_commands``): lines end at ``\\r``,
``\\n`` or ``\\r\\n``; a line whose text, leading blanks trimmed, starts with ``::NAME`` is a
command, and so is ``##[NAME]`` anywhere in a line; ``::stop-commands::TOKEN`` suspends
commands until ``::TOKEN::``. testgate may issue only the commands it means to.

Most cases run on pure functions or a ``testgate merge`` of a hand-made shard (no pytest);
one real run of a hostile project is shared by the cases that need pytest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
from pytest_httpserver import HTTPServer
from ruamel.yaml import YAML
from werkzeug import Request, Response

from runner import output
from runner.child_env import FILE_COMMANDS, SECRET_NAMES, child_environment
from runner.cli import main
from runner.coverage_data import combine_and_report
from runner.environment import probe
from runner.errors import ConfigError, InfraError
from runner.execute import RELAY_DRAIN_S, RELAYED_LINE_LIMIT, _Relay, run_pytest
from runner.flaky import write_detection
from runner.github import client
from runner.github.step import previous_attempt, report
from runner.github.step_files import write_env, write_outputs
from runner.owned_dir import MARKER, claim, open_text, without_link, write_text
from runner.record import MESSAGE_LIMIT, TEXT_LIMIT, read_record
from runner.render import detection_markdown, detection_terminal, markdown, terminal
from runner.results import Attempt, RunInfo, RunResult, TestResult, encode
from runner.services.lifecycle import StateFile
from runner.services.probes import Endpoint, wait_ready
from runner.services.running import Running
from runner.settings import load_settings
from runner.sharding import read_durations
from runner.sonar import run_pysonar, scanner_environment
from runner.stability import Detection, TestVerdict
from tests.conftest import ROOT, Ran, copy_fixture, environment, run_in_process

REGISTERED = {
    "error",
    "warning",
    "notice",
    "debug",
    "add-mask",
    "stop-commands",
    "group",
    "endgroup",
    "echo",
    "set-output",
    "save-state",
    "set-env",
    "add-path",
    "add-matcher",
    "remove-matcher",
}
HOSTILE = [
    "boom\r::error file=evil.py,line=1::x",
    "boom\n::error::injected after LF",
    "boom\r\n::warning::injected after CRLF",
    "\r::add-mask::hide-the-log",
    "\n   ::error::after leading blanks",
    "mid-line ##[error]legacy command",
    "\r##[set-output name=passed]true",
    "vt\v::error::after VT",
    "ff\f::error::after FF",
    "nel\x85::error::after NEL",
    "ls\u2028::error::after LINE SEPARATOR",
    "ps\u2029::error::after PARAGRAPH SEPARATOR",
    "\x1b[2J\x1b]0;owned\x07 ESC, BEL and \x00 NUL",
    "\n::stop-commands::hijack\n::error::after a forged stop",
    "%0D%0A::error::already escaped",
    "| forged | row |\r\n| --- | --- |",
]
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


# -- the simulated runner, and snapshots ------------------------------------------------


def runner_commands(text: str) -> list[tuple[str, str]]:
    """The workflow commands GitHub's runner would act on in ``text``: (name, data)."""
    found: list[tuple[str, str]] = []
    stopped: str | None = None
    for line in re.split(r"\r\n|\r|\n", text):
        trimmed = line.lstrip()
        parsed: tuple[str, str] | None = None
        if trimmed.startswith("::") and "::" in trimmed[2:]:
            info, data = trimmed[2:].split("::", 1)
            parsed = (info.split(" ", 1)[0], data)
        if stopped is not None:
            if parsed is not None and parsed[0] == stopped:
                stopped = None
            continue
        if parsed is None and "##[" in line:
            legacy = line[line.index("##[") + 3 :]
            if "]" in legacy:
                info, data = legacy.split("]", 1)
                parsed = (info.split(" ", 1)[0], data)
        if parsed is None or parsed[0] not in REGISTERED:
            continue
        if parsed[0] == "stop-commands":
            stopped = parsed[1]
            continue
        found.append(parsed)
    return found


def test_the_simulated_runner_reads_as_githubs_does() -> None:
    text = "a\r::error::one\r\n  ::warning::two\nx ##[notice]three\n::stop-commands::t\n"
    text += "::error::ignored\n::t::\n::unknown::no\n::debug::four"
    assert runner_commands(text) == [
        ("error", "one"),
        ("warning", "two"),
        ("notice", "three"),
        ("debug", "four"),
    ]


def runner_file_command(text: str, *, windows: bool = False) -> dict[str, str]:
    """What GitHub's runner sets from a ``$GITHUB_ENV`` or ``$GITHUB_OUTPUT`` file.

    As actions/runner's ``FileCommandManager`` reads it: lines end at ``\\n`` (and at
    ``\\r\\n`` on Windows); a line is ``NAME=VALUE``, or ``NAME<<DELIMITER``, whichever of
    ``=`` and ``<<`` comes first; then the value is the text up to a line that is
    exactly the delimiter. Raises ValueError where the runner would fail the step.
    """
    pieces = re.split(r"(\r\n|\n)" if windows else r"(\n)", text)
    lines = list(zip(pieces[::2], [*pieces[1::2], ""], strict=True))  # (text, its line end)
    found: dict[str, str] = {}
    position = 0
    while position < len(lines):
        line = lines[position][0]
        position += 1
        equals, heredoc = line.find("="), line.find("<<")
        if not line:
            continue
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, value = line.split("=", 1)
        elif heredoc >= 0:
            name, delimiter = line.split("<<", 1)
            taken: list[tuple[str, str]] = []
            while position < len(lines) and lines[position][0] != delimiter:
                taken.append(lines[position])
                position += 1
            if not delimiter or position == len(lines):
                raise ValueError(f"matching delimiter not found {delimiter!r}")
            position += 1
            # the value lines with the line ends between them, as the runner cuts it out
            value = "".join(part + end for part, end in taken[:-1]) + taken[-1][0] if taken else ""
        else:
            raise ValueError(f"invalid format {line!r}")
        if not name:
            raise ValueError(f"invalid format {line!r}")
        found[name] = value
    return found


def test_the_simulated_file_command_reader_reads_as_githubs_does() -> None:
    text = "A=1\n\nB<<EOF\nx\ny=2\nEOF\nC=a<<b\nD<<E=F\nv\nE=F\nG<<EOF\nEOF\n"
    assert runner_file_command(text) == {"A": "1", "B": "x\ny=2", "C": "a<<b", "D": "v", "G": ""}
    assert runner_file_command("A<<EOF\r\nx\r\ny\r\nEOF", windows=True) == {"A": "x\r\ny"}
    assert runner_file_command("A<<EOF\r\nx\r\nEOF\r\n") == {"A": "x\r"}  # EOF\r: its delimiter
    for broken in ("A<<EOF\nx\n", "no equals", "<<EOF\nEOF", "=1"):
        with pytest.raises(ValueError, match=r"invalid format|delimiter not found"):
            runner_file_command(broken)


# What the project's own tools make when its tests run (uv, pytest), not testgate.
PROJECTS_OWN = (".venv", ".pytest_cache", "uv.lock")


def snapshot(*roots: Path, skip: str = "testgate-reports") -> dict[str, str]:
    """Every file and link under ``roots`` (links not followed), with its content's digest."""
    found: dict[str, str] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if relative.parts[0] in (skip, *PROJECTS_OWN) or "__pycache__" in relative.parts:
                continue
            if path.is_symlink():
                found[f"{root.name}/{relative}"] = "-> " + os.readlink(path)
            elif path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[f"{root.name}/{relative}"] = digest
    return found


@pytest.fixture
def decoy(tmp_path: Path) -> Path:
    """A dir outside the project that links committed in the project point into."""
    place = tmp_path / "decoy"
    place.mkdir()
    for name in ("summary.md", "results.json", "junit.xml", "flaky.json", "notes.txt"):
        (place / name).write_text(f"the user's own {name}\n", "utf-8")
    return place


# -- a shard whose results.json carries every hostile text ------------------------------


def hostile_result(marks: list[str]) -> RunResult:
    tests: list[TestResult] = []
    for number, text in enumerate(marks):
        mark = f"case{number:02d}"
        failed = Attempt(
            outcome="failed",
            duration_s=0.1,
            message=f"{mark} {text}",
            line=3,
            text=f"tests/{mark}.py:3: {text}",
        )
        tests.append(
            TestResult(
                id=f"tests/{mark}.py::test_{text}",
                file=f"tests/{mark}{text}.py",
                line=3,
                outcome="failed",
                attempts=(failed,),
            )
        )
        passed = Attempt(outcome="passed", duration_s=0.1, number=2, kind="rerun")
        tests.append(
            TestResult(
                id=f"tests/{mark}.py::test_flaky_{text}",
                file=f"tests/{mark}.py",
                line=5,
                outcome="flaky",
                flaky_kind="nondeterministic",
                note=f"{mark} note {text}",
                attempts=(failed, passed),
            )
        )
    info = RunInfo(
        started="2026-12-01T00:00:00+00:00",
        duration_s=1.0,
        suite_duration_s=1.0,
        commit="c0ffee",
        python="3.11.7",
        platform="linux",
        variant="py3.11-linux",
        problems=tuple(f"case{n:02d} problem {text}" for n, text in enumerate(marks)),
        warnings=tuple(f"case{n:02d} warning {text}" for n, text in enumerate(marks)),
    )
    return RunResult(run=info, tests=tuple(tests), coverage=None, gates=())


def github_mode(tmp_path: Path) -> dict[str, str]:
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "step-output.txt"),
        "GITHUB_EVENT_PATH": str(tmp_path / "no-event.json"),
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_TOKEN": "",
        "TESTGATE_GITHUB_TOKEN": "",
    }


def merge_hostile(root: Path, *, on_github: bool) -> tuple[Ran, dict[str, str], dict[str, str]]:
    project = root / "project"
    shard = project / "shard-1"
    shard.mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n', "utf-8")
    (shard / "results.json").write_bytes(b"".join(encode(hostile_result(HOSTILE))))
    extra = github_mode(root) if on_github else {"GITHUB_ACTIONS": "false"}
    before = snapshot(project, skip="testgate-reports")
    ran = run_in_process(project, "shard-1", command="merge", extra_env=extra)
    return ran, before, snapshot(project, skip="testgate-reports")


@pytest.fixture(scope="module")
def merged_on_github(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ran, Path]:
    root = tmp_path_factory.mktemp("merge-github")
    ran, before, after = merge_hostile(root, on_github=True)
    assert before == after
    return ran, root


@pytest.fixture(scope="module")
def merged_locally(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    root = tmp_path_factory.mktemp("merge-local")
    ran, before, after = merge_hostile(root, on_github=False)
    assert before == after
    return ran


def test_a_hostile_merge_issues_only_testgates_own_annotations(
    merged_on_github: tuple[Ran, Path],
) -> None:
    ran, _ = merged_on_github
    assert ran.exit_code == 3  # the shard's problems are this run's problems
    names = [name for name, _ in runner_commands(ran.output)]
    assert names == ["error"] * 10 + ["warning"] * 10  # GitHub's 10 per type, no other


@pytest.mark.parametrize("number", range(len(HOSTILE)))
def test_each_hostile_text_is_inert_in_githubs_output(
    merged_on_github: tuple[Ran, Path], number: int
) -> None:
    ran, root = merged_on_github
    mark = f"case{number:02d}"
    commands = runner_commands(ran.output)
    for name, data in commands:  # an annotation carries the text, escaped, as its data
        if mark in data:
            assert name in ("error", "warning")
            assert "%0D" in data or "%0A" in data or "\r" not in HOSTILE[number]
    lines = [line for line in re.split(r"\r\n|\r|\n", ran.output) if mark in line]
    assert lines, f"{mark} is not shown at all"
    for line in lines:  # testgate's annotations are parsed as such, before any "##["
        if not line.startswith(("::error ", "::warning ")):
            assert not line.lstrip().startswith("::")
            assert "##[" not in line
    summary = (root / "step-summary.md").read_text("utf-8")
    report = (root / "project" / "testgate-reports" / "summary.md").read_text("utf-8")
    for text in (summary, report):
        rows = [row for row in text.split("\n") if mark in row]
        assert rows
        assert not any(RAW_CONTROLS.search(row) or "\r" in row for row in rows)


@pytest.mark.parametrize("number", range(len(HOSTILE)))
def test_each_hostile_text_reaches_a_terminal_without_raw_controls(
    merged_locally: Ran, number: int
) -> None:
    mark = f"case{number:02d}"
    lines = [line for line in merged_locally.output.split("\n") if mark in line]
    assert lines
    assert not any(RAW_CONTROLS.search(line) or "\r" in line for line in lines)
    assert runner_commands(merged_locally.output) == []


@pytest.mark.parametrize("number", range(len(HOSTILE)))
def test_any_text_through_the_writer_issues_no_command(number: int) -> None:
    """As a scanner's log or a service's last log lines are passed on."""
    stream = io.StringIO()
    output.emit(HOSTILE[number] + "\n", stream=stream)
    assert runner_commands(stream.getvalue()) == []
    assert not RAW_CONTROLS.search(stream.getvalue().replace("\n", ""))


@pytest.mark.parametrize(
    "terminator", ["\r", "\n", "\r\n", "\v", "\f", "\x1c", "\x85", "\u2028", "\u2029"]
)
def test_every_line_terminator_is_shown_as_an_escape(terminator: str) -> None:
    stream = io.StringIO()
    output.emit(f"testgate: {output.clean('a' + terminator + '::error::x')}\n", stream=stream)
    printed = stream.getvalue()
    assert printed.count("\n") == 1
    assert runner_commands(printed) == []
    assert output.first_line(f"first{terminator}second") == "first"


def test_only_text_marked_as_commands_may_start_a_line_with_two_colons() -> None:
    stream = io.StringIO()
    output.emit("::error::from a report\n  ::warning::indented\nx ##[error]y\n", stream=stream)
    assert runner_commands(stream.getvalue()) == []
    stream = io.StringIO()
    output.emit("::error::meant\n", stream=stream, commands=True)
    assert runner_commands(stream.getvalue()) == [("error", "meant")]


@pytest.mark.parametrize("number", range(len(HOSTILE)))
def test_flaky_detections_output_is_inert_too(number: int) -> None:
    text = HOSTILE[number]
    verdicts = tuple(
        TestVerdict.of(
            id=f"t.py::test_{text}",
            verdict=verdict,
            runs=3,
            failures=1,
            statement="failed 1 of 3 runs",
        )
        for verdict in ("flaky", "failing", "stable")
    )
    detection = detected(verdicts, quarantine_stable=(text,), warnings=(text,), problems=(text,))
    stream = io.StringIO()
    output.emit(detection_terminal(detection), stream=stream)
    assert runner_commands(stream.getvalue()) == []
    assert not RAW_CONTROLS.search(stream.getvalue())
    rows = detection_markdown(detection).split("\n")
    assert not any("\r" in row or RAW_CONTROLS.search(row) for row in rows)


def test_an_error_naming_a_hostile_path_is_inert(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "shard\r::error::from a dir name").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n', "utf-8")
    ran = run_in_process(
        project, "shard\r::error::from a dir name", command="merge", extra_env=github_mode(tmp_path)
    )
    assert ran.exit_code == 3
    assert "holds no results.json" in ran.output
    ((name, data),) = runner_commands(ran.output)  # testgate's own error, and nothing else
    assert name == "error"
    assert "%0D::error::from a dir name" in data


def test_a_summary_cell_never_holds_a_line_break() -> None:
    rendered = markdown(hostile_result(["a\rb", "c\u2028d", "e\r\nf"]))
    for row in rendered.split("\n"):
        assert "\r" not in row
        assert not RAW_CONTROLS.search(row)
        assert not row.startswith(("::", "b", "d", "f"))


MARKDOWN_SYNTAX = [
    "assert <MagicMock id='1'> == 3",  # a repr that is an HTML tag: the browser hid it
    "assert a*b*c == __init__ and ~~x~~",  # emphasis and strikethrough
    "see [the docs](x) and ![a pixel](y)",  # a link and an image
    "&lt;tag&gt; &amp; \\*not code\\* `ticked`",  # entities, the escape itself, a code span
]


def detected(tests: tuple[TestVerdict, ...], **more: tuple[str, ...]) -> Detection:
    """A flaky-detection job's verdicts on ``tests``, as three rounds made them."""
    return Detection.of(
        confidence=0.95,
        max_fail_rate=0.05,
        runs_needed=59,
        rounds=3,
        duration_s=1.0,
        stopped_by="verdicts",
        tests=tests,
        **more,
    )


def browser_text(npm_tools: Path, summary: str) -> list[str]:
    """What a browser shows of a job summary's table cells and list items, rendered as
    GitHub renders it (GFM: marked, then jsdom)."""
    completed = subprocess.run(
        ["node", str(npm_tools / "markdown_text.mjs")],
        input=summary,
        capture_output=True,
        text=True,
        check=True,
    )
    shown: list[str] = json.loads(completed.stdout)
    return shown


def test_a_summary_shows_a_message_as_it_is_never_as_markdown(npm_tools: Path) -> None:
    """The job summary, rendered as GitHub Flavored Markdown and read as a browser would:
    each message, note, problem and warning shows every character it has; a mock's repr
    was a raw HTML tag that vanished, ``a*b*c`` turned italic. A problem or warning is a
    list item: one that starts like a heading, a quote or a list stays text."""
    empty = hostile_result(MARKDOWN_SYNTAX)
    starts = ("# heading", "> quote", "1. listed", "+ plus", "- minus")
    result = msgspec.structs.replace(
        empty,
        run=msgspec.structs.replace(empty.run, problems=(*empty.run.problems, *starts)),
    )
    shown = browser_text(npm_tools, markdown(result))
    for number, text in enumerate(MARKDOWN_SYNTAX):
        mark = f"case{number:02d}"
        for said in (f"{mark} {text}", f"{mark} note {text}", f"{mark} problem {text}"):
            assert said in shown
        assert f"{mark} warning {text}" in shown
    for start in starts:
        assert start in shown
    verdict = TestVerdict.of(
        id="t.py::test_x", verdict="flaky", runs=3, failures=1, statement=MARKDOWN_SYNTAX[0]
    )
    detection = detected((verdict,))
    shown = browser_text(npm_tools, detection_markdown(detection))
    assert MARKDOWN_SYNTAX[0] in shown


def test_a_problems_lines_stay_inside_their_code_block() -> None:
    """A setup command's output, shown as it was: no fence of its own ends the block."""
    said = ["````", "::error::from the output", "\r::warning::after a CR"]
    said += [f"line {number}" for number in range(60)]
    problem = "services: the setup command failed; its output ends:\n" + "\n".join(said)
    empty = hostile_result([])
    result = msgspec.structs.replace(
        empty, run=msgspec.structs.replace(empty.run, problems=(problem,))
    )
    rendered = markdown(result)
    block = rendered.split("  `````text\n", 1)[1].split("\n  `````\n", 1)[0].split("\n")
    assert block[:4] == ["  ````", "  ::error::from the output", "  ", "  ::warning::after a CR"]
    assert block[-1] == "  [... 15 more lines in results.json]"
    assert len(block) == 50
    stream = io.StringIO()
    output_text = terminal(result, reports_dir="r")
    output.emit(output_text, stream=stream)
    assert runner_commands(stream.getvalue()) == []
    assert "    [... 15 more lines in results.json]" in stream.getvalue()


# -- one real run of a hostile project ------------------------------------------------


HOSTILE_TESTS = """\
import os

import pytest

FILE_COMMANDS = {file_commands!r}
HOSTILE = {hostile!r}


def test_writes_to_the_runners_files():
    for name in FILE_COMMANDS:
        path = os.environ.get(name)
        if path:
            with open(path, "a") as sink:
                sink.write("LD_PRELOAD=/tmp/evil.so\\n")
    assert not FILE_COMMANDS & set(os.environ), "the runner's file commands reached a test"


def test_fails_with_a_huge_message_and_a_bare_cr():
    assert False, "boom\\r::error file=evil.py,line=1::x" + "y" * {huge}


@pytest.mark.parametrize("number", range(len(HOSTILE)))
def test_fails_with_hostile_text(number):
    print(HOSTILE[number])  # pytest's own output: inside the stop-commands guard
    raise AssertionError(HOSTILE[number])
"""


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ran, Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("hostile-run")
    project = copy_fixture("passing", root)
    (project / "tests" / "test_hostile.py").write_text(
        HOSTILE_TESTS.format(
            file_commands=set(FILE_COMMANDS), hostile=HOSTILE, huge=MESSAGE_LIMIT * 4
        ),
        "utf-8",
    )
    env = github_mode(root)
    for name in ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_STATE"):
        env[name] = str(root / name.lower())
        Path(env[name]).write_text("", "utf-8")
    decoy = root / "decoy"
    decoy.mkdir()
    (decoy / "notes.txt").write_text("mine\n", "utf-8")
    before = snapshot(project, decoy)
    ran = run_in_process(
        project,
        "--workers",
        "0",
        "--reruns",
        "0",
        "--fail-under-line",
        "0",
        "--fail-under-branch",
        "0",
        extra_env=env,
    )
    after = snapshot(project, decoy)
    assert {k: v for k, v in after.items() if "testgate-reports" not in k} == before
    return ran, root, env


def test_tests_get_none_of_the_runners_file_commands(
    hostile_run: tuple[Ran, Path, dict[str, str]],
) -> None:
    ran, root, env = hostile_run
    assert ran.exit_code == 1
    test = ran.test("tests/test_hostile.py::test_writes_to_the_runners_files")
    assert test["outcome"] == "passed"
    for name in ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_STATE"):
        assert Path(env[name]).read_text("utf-8") == ""
    assert "LD_PRELOAD" not in (root / "step-summary.md").read_text("utf-8")


def test_a_real_runs_output_issues_only_testgates_commands(
    hostile_run: tuple[Ran, Path, dict[str, str]],
) -> None:
    ran, _, _ = hostile_run
    commands = runner_commands(ran.output)
    assert [name for name, _ in commands] == ["error"] * 10  # GitHub's limit; no other
    assert any(
        data.startswith("AssertionError: boom%0D::error file=evil.py") for _, data in commands
    )
    # What testgate printed itself (outside pytest's guarded output) holds no raw control.
    unguarded = re.sub(r"::stop-commands::(\w+)\n.*?::\1::\n", "", ran.output, flags=re.S)
    shown = (
        r"FAILED tests/test_hostile.py:\d+ tests/test_hostile.py::test_fails_with_hostile_text\["
    )
    assert re.search(shown, unguarded)
    assert not RAW_CONTROLS.search(unguarded.replace("\n", ""))


def test_a_huge_failure_message_is_cut_once_saying_how_much(
    hostile_run: tuple[Ran, Path, dict[str, str]],
) -> None:
    ran, _, _ = hostile_run
    test = ran.test("tests/test_hostile.py::test_fails_with_a_huge_message_and_a_bare_cr")
    message = test["attempts"][0]["message"]
    assert len(message) < MESSAGE_LIMIT + 100
    assert "characters cut by testgate]" in message
    junit = (ran.reports / "junit.xml").stat().st_size
    assert junit < 2 * 1024 * 1024  # the 64 KiB message, bounded where it is stored
    lines = ran.output.split("\n")
    printed = [line for line in lines if re.match(r"FAILED tests/test_hostile.py:\d+ ", line)]
    assert printed
    assert all(len(line) < output.PRINTED_LIMIT + 300 for line in printed)
    # pytest's own lines, relayed on GitHub, are bounded too (its summary line is not cut).
    assert all(len(line) < RELAYED_LINE_LIMIT + 100 for line in lines)
    assert any("more bytes cut by testgate]" in line for line in lines if "- Assert" in line)


# -- the project cannot replace testgate ----------------------------------------------


SHADOW = 'import sys\nprint("HIJACKED: the project ran instead of testgate")\nsys.exit(0)\n'


@pytest.fixture
def shadowing_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    for package in ("runner", "pysonar_scanner"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text("", "utf-8")
        (project / package / "__main__.py").write_text(SHADOW, "utf-8")
    return project


def test_the_actions_testgate_command_is_not_shadowed_by_a_runner_package(
    shadowing_project: Path, tmp_path: Path
) -> None:
    action = (ROOT / "action.yml").read_text("utf-8")
    assert "-m runner" not in action.replace("-I -m runner", "")
    started = re.findall(r"^\s+TESTGATE: (.+)$", action, re.MULTILINE)
    assert started
    assert set(started) == {"${{ steps.install.outputs.testgate }}"}
    (line,) = [line.strip() for line in action.splitlines() if "-I -m runner" in line]
    assert 'echo "testgate=$scripts/testgate" >> "$GITHUB_OUTPUT"' in action
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', "utf-8")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    script = f'scripts="{venv}/bin"\npython="$scripts/python"\n{line}\n'
    script += f"chmod +x {venv}/bin/testgate\n"
    subprocess.run(["bash", "-c", script], check=True)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(shadowing_project)}
    shadowed = subprocess.run(
        [sys.executable, "-m", "runner", "--version"],
        cwd=shadowing_project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "HIJACKED" in shadowed.stdout  # how the action started testgate before
    ours = subprocess.run(
        [str(venv / "bin" / "testgate"), "--version"],
        cwd=shadowing_project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ours.returncode == 0
    assert "HIJACKED" not in ours.stdout + ours.stderr
    assert "testgate" in ours.stdout


def test_the_scanner_is_not_shadowed_by_the_project(
    shadowing_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = type("S", (), {"project": shadowing_project})()
    code = run_pysonar(["--help"], settings, {"PATH": os.environ["PATH"]}, "")
    printed = capsys.readouterr()
    assert "HIJACKED" not in printed.out + printed.err
    assert code == 0


# -- the runner's file commands: no value can add a variable of its own ----------------

# Values an attacker can put in a service's URL (decoded from %0A, %0D) or a reports dir.
FILE_COMMAND_HOSTILE = [
    "pw\nLD_PRELOAD=/tmp/evil.so",
    "pw\r\nNODE_OPTIONS=--require=/tmp/evil.js",
    "pw\rBASH_ENV=/tmp/evil.sh",
    "\nEOF\nLD_PRELOAD=/tmp/evil.so\n",
    "ghadelimiter_0\nLD_PRELOAD=/tmp/evil.so\nghadelimiter_0",
    "pw<<EOF\nLD_PRELOAD=/tmp/evil.so\nEOF",
]
INJECTED = {"LD_PRELOAD", "NODE_OPTIONS", "BASH_ENV", "EOF", "pw"}


@pytest.mark.parametrize("windows", [False, True], ids=["linux", "windows"])
@pytest.mark.parametrize("number", range(len(FILE_COMMAND_HOSTILE)))
def test_a_line_break_in_a_services_value_sets_no_other_variable(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, number: int, windows: bool
) -> None:
    password = FILE_COMMAND_HOSTILE[number]
    github_env = tmp_path / "github_env"
    github_env.write_text("EARLIER=1\n", "utf-8")
    url = f"postgresql://postgres:{quote(password, safe='')}@127.0.0.1:5432/test"
    state = str(tmp_path / "s.json")
    code = main(["services", "up", f"postgres={url}", "--state-file", state],
                environ=environment(GITHUB_ENV=str(github_env)))  # fmt: skip
    out = capfd.readouterr().out
    assert code == 0, out
    exported = runner_file_command(github_env.read_bytes().decode(), windows=windows)
    told = out.split("exported to later steps: ", 1)[1].split("\n", 1)[0].split(", ")
    assert sorted(exported) == sorted(["EARLIER", *told])  # not one variable more
    assert not INJECTED & set(exported)
    assert exported["PGPASSWORD"] == exported["POSTGRES_PASSWORD"] == password
    assert exported["DATABASE_URL"] == url
    assert main(["services", "down", "--state-file", state], environ=environment()) == 0


def test_a_dotenv_file_refuses_a_value_with_a_line_break(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A dotenv line has no form for a line break: exit 2, nothing written, nothing left up."""
    env_file, state = tmp_path / "services.env", tmp_path / "s.json"
    url = "postgresql://postgres:pw%0ALD_PRELOAD%3D%2Ftmp%2Fevil.so@127.0.0.1:5432/test"
    code = main(["services", "up", f"postgres={url}", "--state-file", str(state),
                 "--env-file", str(env_file)], environ=environment())  # fmt: skip
    err = capfd.readouterr().err
    assert code == 2
    assert "the value of POSTGRES_PASSWORD holds a line break, which a dotenv file" in err
    assert "use the export lines (no --env-file) or $GITHUB_ENV" in err
    assert (env_file.exists(), state.exists()) == (False, False)


@pytest.mark.parametrize("windows", [False, True], ids=["linux", "windows"])
def test_step_outputs_carry_any_value_and_only_their_own_names(
    tmp_path: Path, windows: bool
) -> None:
    output = tmp_path / "github_output"
    values = {f"out{number}": text for number, text in enumerate(FILE_COMMAND_HOSTILE)}
    write_outputs(output, {"passed": "true", **values, "reports-dir": "r\nx=1"})
    read = runner_file_command(output.read_bytes().decode(), windows=windows)
    assert read == {"passed": "true", **values, "reports-dir": "r\nx=1"}


def test_a_delimiter_found_in_the_value_is_drawn_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = iter(["0" * 32, "1" * 32])
    monkeypatch.setattr("secrets.token_hex", lambda _: next(drawn))
    output = tmp_path / "github_output"
    value = f"x\nghadelimiter_{'0' * 32}\nLD_PRELOAD=/tmp/evil.so"
    write_env(output, {"A": value})
    assert f"A<<ghadelimiter_{'1' * 32}\n" in output.read_bytes().decode()
    assert runner_file_command(output.read_bytes().decode()) == {"A": value}


@pytest.mark.parametrize("name", ["", "A=B", "A<<B", "A\nLD_PRELOAD", "A\rB"])
def test_a_name_the_runner_would_misread_is_refused_and_nothing_written(
    tmp_path: Path, name: str
) -> None:
    output = tmp_path / "github_env"
    with pytest.raises(ConfigError, match="cannot be written to github_env as a name"):
        write_env(output, {"FIRST": "1", name: "x"})
    assert not output.exists()


# -- the project's processes get no secret and no file command ------------------------


@pytest.mark.parametrize("name", sorted(SECRET_NAMES | FILE_COMMANDS))
def test_no_secret_and_no_file_command_reaches_the_projects_processes(name: str) -> None:
    assert child_environment({name: "x", "PATH": "/bin"}) == {"PATH": "/bin"}


@pytest.mark.parametrize("name", sorted(SECRET_NAMES | FILE_COMMANDS))
def test_the_scanner_gets_its_token_and_no_other_secret_nor_file_command(name: str) -> None:
    # pysonar runs a JRE and scanner engine it downloads, at a path the project's own
    # sonar configuration may choose (sonar.scanner.javaExePath): it needs SONAR_TOKEN only.
    environ = {name: "x", "PATH": "/bin", "SONAR_TOKEN": "t", "INPUT_SONAR-HOST-URL": "h"}
    assert scanner_environment(environ, token="t") == {"PATH": "/bin", "SONAR_TOKEN": "t"}


def test_the_actions_uv_sync_gets_no_secret_nor_file_command(tmp_path: Path) -> None:
    """uv sync builds the project with its own build backend: the project's code."""
    steps = YAML(typ="safe").load((ROOT / "action.yml").read_text("utf-8"))["runs"]["steps"]
    script = next(step["run"] for step in steps if step.get("name") == "Sync the project")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text('#!/bin/sh\nenv > "$SEEN"\n', "utf-8")
    (bin_dir / "uv").chmod(0o755)
    names = sorted(SECRET_NAMES | FILE_COMMANDS)
    env = {
        **dict.fromkeys(names, "x"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SEEN": str(tmp_path / "seen"),
        "SYNC_ARGS": "--locked",
        "PYTHON": sys.executable,  # testgate's own, which splits sync-args
        "RUNNER_TEMP": str(tmp_path),
    }
    subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, check=True)
    seen = {line.split("=", 1)[0] for line in (tmp_path / "seen").read_text().splitlines()}
    assert "SEEN" in seen
    assert not seen & set(names)


def test_the_projects_python_cannot_issue_commands_while_testgate_probes_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # A dependency's .pth file runs whenever the project's Python starts: before pytest,
    # outside the stop-commands guard.
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n', "utf-8")
    subprocess.run(["uv", "venv", "--quiet", str(project / ".venv")], check=True)
    site = next((project / ".venv").glob("lib/python*/site-packages"))
    said = "".join(HOSTILE).replace("\\", "")
    (site / "hostile.pth").write_text(f"import sys; sys.stderr.write({said!r})\n", "utf-8")
    settings = load_settings(project=project, flags={"sync": "false"}, environ={})
    capfd.readouterr()
    found = probe(settings, environment(GITHUB_ACTIONS="true"))
    printed = capfd.readouterr()
    assert found.found["pytest"] is False
    assert "add-mask" in printed.err  # shown, made inert
    assert runner_commands(printed.out + printed.err) == []
    assert not RAW_CONTROLS.search(printed.err)


def test_a_readiness_command_gets_no_file_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FILE_COMMANDS:
        monkeypatch.setenv(name, "/tmp/runner-file")
    monkeypatch.setenv("SONAR_TOKEN", "secret")
    check = 'test -z "$GITHUB_ENV$GITHUB_PATH$GITHUB_OUTPUT$GITHUB_STATE$SONAR_TOKEN"'
    endpoint = Endpoint(probe="generic", host="127.0.0.1", port=1, ready=f"cmd:{check}")
    wait_ready(endpoint, deadline=time.monotonic() + 5)  # raises NotReady while one is set


def test_pytest_itself_is_started_without_them(tmp_path: Path) -> None:
    names = sorted(FILE_COMMANDS | SECRET_NAMES)
    probe = f"import os, sys; sys.exit(len(set({names!r}) & set(os.environ)))"
    environ = {**os.environ, **dict.fromkeys(names, "x")}
    done = run_pytest(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        environ=environ,
        record=tmp_path / "r",
        coverage_file=tmp_path / "c",
    )
    assert done.exit_code == 0


def test_a_process_a_test_left_running_cannot_write_after_the_guard(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    late = f"sleep {RELAY_DRAIN_S + 0.2}; printf '::error::late\\n'"
    script = f"printf 'a\\r::error::early\\n\\033[32mgreen\\033[0m\\n'; ({late}) &"
    done = run_pytest(
        ["sh", "-c", script],
        cwd=tmp_path,
        environ=environment(GITHUB_ACTIONS="true"),
        record=tmp_path / "r",
        coverage_file=tmp_path / "c",
    )
    time.sleep(RELAY_DRAIN_S + 0.4)  # the leftover has written by now
    out = capfd.readouterr().out
    assert done.exit_code == 0
    assert runner_commands(out) == []
    assert "a\\r::error::early" in out
    assert "\x1b[32mgreen\x1b[0m" in out  # colours stay colours
    assert "late" not in out


# -- testgate writes only its own files -----------------------------------------------


SHARD_FILES = ("results.json", "junit.xml", "junit-sonar.xml", "durations.json", "summary.md")


def plain_shard(project: Path) -> None:
    shard = project / "shard-1"
    shard.mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n', "utf-8")
    (shard / "results.json").write_bytes(b"".join(encode(hostile_result(["plain"]))))


@pytest.mark.parametrize("name", SHARD_FILES)
def test_a_committed_link_at_a_reports_name_is_replaced_not_followed(
    tmp_path: Path, decoy: Path, name: str
) -> None:
    project = tmp_path / "project"
    plain_shard(project)
    reports = project / "testgate-reports"
    reports.mkdir()
    (reports / MARKER).write_text("forged by the pull request\n", "utf-8")
    target = decoy / ("notes.txt" if name == "junit-sonar.xml" else name)
    (reports / name).symlink_to(target)
    before = snapshot(decoy)
    ran = run_in_process(project, "shard-1", command="merge", extra_env={"GITHUB_ACTIONS": "x"})
    assert ran.exit_code == 3, ran.output  # the shard's problem
    assert snapshot(decoy) == before
    assert not (reports / name).is_symlink()
    assert (reports / name).stat().st_size > 0


@pytest.mark.parametrize("name", ["flaky.json", "summary.md"])
def test_flaky_detection_replaces_links_too(tmp_path: Path, decoy: Path, name: str) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / MARKER).write_text("", "utf-8")
    (reports / name).symlink_to(decoy / name)
    before = snapshot(decoy)
    detection = Detection.of(
        confidence=0.95,
        max_fail_rate=0.05,
        runs_needed=59,
        rounds=0,
        duration_s=0.0,
        stopped_by="verdicts",
        tests=(),
        quarantine_stable=(),
    )
    write_detection(detection, reports)
    assert snapshot(decoy) == before
    assert not (reports / name).is_symlink()


@pytest.mark.parametrize("name", [".coverage", "coverage.xml", "coverage.json"])
def test_coverage_reports_replace_links_too(tmp_path: Path, decoy: Path, name: str) -> None:
    from coverage import CoverageData  # noqa: PLC0415 (only this test writes data)

    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    source = project / "pkg" / "__init__.py"
    source.write_text("x = 1\n", "utf-8")
    data = CoverageData(basename=str(tmp_path / ".coverage.w"))
    data.add_arcs({str(source): {(-1, 1), (1, -1)}})
    data.write()
    reports = project / "testgate-reports"
    reports.mkdir()
    (reports / name).symlink_to(decoy / "notes.txt")
    before = snapshot(decoy)
    summary = combine_and_report(
        project=project, data_files=[tmp_path / ".coverage.w"], reports_dir=reports
    )
    assert summary is not None
    assert summary.line_percent == 100.0
    assert snapshot(decoy) == before
    assert not (reports / name).is_symlink()


@pytest.mark.parametrize("command", ["run", "merge", "flaky"])
def test_a_reports_dir_that_is_a_link_is_refused(
    tmp_path: Path, decoy: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    plain_shard(project)
    (project / "testgate-reports").symlink_to(decoy)
    before = snapshot(project, decoy)
    args = ["shard-1"] if command == "merge" else []
    code = main([command, "--project", str(project), *args], environ=environment())
    assert code == 2
    assert "is a symbolic link" in capsys.readouterr().err
    assert snapshot(project, decoy) == before


@pytest.mark.parametrize(
    ("reports", "command"),
    [(".", "run"), ("pkg", "run"), ("docs", "run"), (".", "merge"), (".", "flaky")],
)
@pytest.mark.parametrize("marked", [False, True], ids=["unmarked", "marker-committed"])
def test_a_reports_dir_holding_the_users_files_is_refused(
    tmp_path: Path, reports: str, command: str, marked: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    plain_shard(project)
    (project / "pkg").mkdir()
    (project / "pkg" / "__init__.py").write_text("", "utf-8")
    (project / "pkg" / "junit.xml").write_text("<tracked/>", "utf-8")
    (project / "docs").mkdir()
    (project / "docs" / "summary.md").write_text("# the user's", "utf-8")
    (project / "docs" / "index.md").write_text("# the user's", "utf-8")
    (project / ".testgate-work").mkdir()
    (project / ".testgate-work" / "notes.txt").write_text("mine", "utf-8")
    if marked:  # a pull request's marker does not make the user's files testgate's
        (project / reports / MARKER).write_text("committed by the pull request\n", "utf-8")
    before = snapshot(project)
    args = ["shard-1"] if command == "merge" else []
    code = main(
        [command, "--project", str(project), "--reports-dir", reports, *args], environ=environment()
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "holds files testgate did not write" in err
    assert "choose another --reports-dir" in err
    assert snapshot(project) == before


def test_the_services_state_is_written_without_following_links(tmp_path: Path, decoy: Path) -> None:
    state_dir = tmp_path / ".testgate"
    state_dir.mkdir()
    (state_dir / ".gitignore").symlink_to(decoy / "created-through-a-link.txt")
    (state_dir / "services.json").symlink_to(decoy / "notes.txt")
    before = snapshot(decoy)
    state = StateFile(state_dir / "services.json")
    state.record(Running(name="redis", kind="redis", backend="external", host="h", port=1))
    assert snapshot(decoy) == before
    assert json.loads((state_dir / "services.json").read_text("utf-8"))["services"]


def test_an_older_testgates_reports_dir_is_taken_over(tmp_path: Path) -> None:
    reports = tmp_path / "testgate-reports"
    reports.mkdir()
    for name in ("results.json", "junit.xml", ".coverage", "summary.md"):
        (reports / name).write_text("old", "utf-8")
    (reports / ".testgate-work").mkdir()
    (reports / ".testgate-work" / "notes.txt").write_text("maybe the user's", "utf-8")
    claim(reports)
    assert (reports / MARKER).is_file()
    (reports / ".testgate-work-interrupted").mkdir()
    (reports / ".testgate-new-unfinished").write_text("half", "utf-8")
    (reports / "coverage.json").mkdir()  # a dir where a report goes: replaced too
    claim(reports, fresh=("results.json", "coverage.json"))  # marked: accepted again
    assert sorted(os.listdir(reports)) == [
        ".coverage",
        MARKER,
        ".testgate-work",
        "junit.xml",
        "summary.md",
    ]
    assert (reports / ".testgate-work" / "notes.txt").is_file()  # an old name: left alone


def test_shards_reports_dirs_nested_in_the_merges_are_accepted(tmp_path: Path) -> None:
    reports = tmp_path / "testgate-reports"
    for shard in ("py3.11-1", "py3.11-2"):
        claim(reports / shard, fresh=("results.json",))
        write_text(reports / shard / "results.json", "{}")
    claim(reports, fresh=("results.json",))  # the merge writes beside its shards
    assert (reports / "py3.11-1" / "results.json").is_file()
    (reports / "py3.11-2" / MARKER).unlink()  # a dir without the marker is not a shard's
    with pytest.raises(ConfigError, match=r"holds files testgate did not write \(py3.11-2\)"):
        claim(reports)


@pytest.mark.parametrize("litter", [".DS_Store", "Thumbs.db", "desktop.ini"])
def test_a_reports_dir_the_os_put_its_litter_in_is_still_testgates(
    tmp_path: Path, litter: str
) -> None:
    reports = tmp_path / "testgate-reports"
    claim(reports, fresh=("results.json",))
    write_text(reports / "results.json", "{}")
    (reports / litter).write_bytes(b"Finder's or Explorer's")  # the user opened the folder
    claim(reports, fresh=("results.json",))
    assert (reports / litter).read_bytes() == b"Finder's or Explorer's"
    assert not (reports / "results.json").exists()


def test_a_dir_with_many_foreign_files_names_the_first_five(tmp_path: Path) -> None:
    for number in range(7):
        (tmp_path / f"user{number}.txt").write_text("mine", "utf-8")
    with pytest.raises(ConfigError) as raised:
        claim(tmp_path)
    assert "(user0.txt, user1.txt, user2.txt, user3.txt, user4.txt, ...)" in raised.value.message
    assert raised.value.exit_code == 2


def test_a_link_where_another_tool_writes_is_removed(tmp_path: Path, decoy: Path) -> None:
    (tmp_path / ".sonar").symlink_to(decoy)
    assert without_link(tmp_path / ".sonar") == tmp_path / ".sonar"
    assert not (tmp_path / ".sonar").exists()
    (tmp_path / ".sonar").mkdir()
    without_link(tmp_path / ".sonar")
    assert (tmp_path / ".sonar").is_dir()


def test_a_report_whose_writing_fails_leaves_the_old_one(tmp_path: Path) -> None:
    (tmp_path / "summary.md").write_text("the last run's", "utf-8")

    def fail_while_writing() -> None:
        with open_text(tmp_path / "summary.md") as out:
            out.write("half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fail_while_writing()
    assert os.listdir(tmp_path) == ["summary.md"]
    assert (tmp_path / "summary.md").read_text("utf-8") == "the last run's"


def test_a_full_disk_is_named_with_the_path(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():  # pragma: no cover - every Linux has it
        pytest.skip("no /dev/full")

    def write_on_a_full_disk() -> None:
        with open_text(tmp_path / "results.json") as out:
            out.write("what the disk has no room for")
            with open("/dev/full", "w", encoding="utf-8") as full:  # the write fails: ENOSPC
                full.write("x")

    with pytest.raises(InfraError) as raised:
        write_on_a_full_disk()
    assert "ENOSPC" in raised.value.message
    assert str(tmp_path / "results.json") in raised.value.message
    assert not (tmp_path / "results.json").exists()
    assert os.listdir(tmp_path) == []  # its temporary file is gone too


def test_a_record_written_around_the_plugin_is_bounded_too(tmp_path: Path) -> None:
    """The record's writer runs in the project's process: testgate bounds what it reads."""
    huge = "m" * (2 * MESSAGE_LIMIT)
    lines = [
        {"kind": "start"},
        {"kind": "logstart", "id": "t.py::t"},
        {
            "kind": "report",
            "id": "t.py::t",
            "when": "call",
            "outcome": "failed",
            "duration": 0.1,
            "message": huge,
            "text": huge * 10,
            "stdout": huge * 10,
        },
        {"kind": "finish", "exitstatus": 1},
    ]
    record = tmp_path / "record.jsonl"
    record.write_text("".join(json.dumps(line) + "\n" for line in lines), "utf-8")
    (test,) = read_record(record).tests
    assert test.attempt.message is not None
    assert len(test.attempt.message) < MESSAGE_LIMIT + 100
    assert test.attempt.message.endswith("characters cut by testgate]")
    assert all(
        len(part or "") < TEXT_LIMIT + 100 for part in (test.attempt.text, test.attempt.stdout)
    )


def test_a_report_that_cannot_be_written_costs_none_of_the_others(tmp_path: Path) -> None:
    project = tmp_path / "project"
    plain_shard(project)
    reports = project / "testgate-reports"
    (reports / "junit.xml").mkdir(parents=True)  # where the file should go: cannot replace
    (reports / "junit.xml" / "kept.txt").write_text("x", "utf-8")
    (reports / MARKER).write_text("", "utf-8")
    ran = run_in_process(project, "shard-1", command="merge", extra_env={"GITHUB_ACTIONS": "x"})
    assert ran.exit_code == 3
    assert f"could not write {reports / 'junit.xml'}: EISDIR" in ran.output
    for name in ("results.json", "durations.json", "summary.md"):
        assert (reports / name).is_file()
    assert (reports / "junit.xml" / "kept.txt").is_file()


def test_a_huge_message_in_another_tools_junit_is_bounded_too(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "shard-1").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n', "utf-8")
    huge = "m" * (4 * MESSAGE_LIMIT)
    (project / "shard-1" / "junit.xml").write_text(
        f'<testsuites><testsuite><testcase classname="t" name="t"><failure message="{huge}">'
        f"{huge * 40}</failure></testcase></testsuite></testsuites>",
        "utf-8",
    )
    ran = run_in_process(project, "shard-1", command="merge", extra_env={"GITHUB_ACTIONS": "x"})
    assert ran.exit_code == 1
    (attempt,) = ran.results()["tests"][0]["attempts"]
    assert len(attempt["message"]) < MESSAGE_LIMIT + 100
    assert len(attempt["text"]) < TEXT_LIMIT + 100
    assert "characters cut by testgate]" in attempt["text"]


def test_a_record_cut_by_a_full_disk_says_so(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    record.write_text('{"kind": "start", "pytest": "9"}\n{"kind": "logst', "utf-8")
    with pytest.raises(InfraError) as raised:
        read_record(record, full_below=2**62)
    assert "ENOSPC" in raised.value.message
    assert str(tmp_path) in raised.value.message
    with pytest.raises(InfraError, match="killed while writing"):
        read_record(record)


def test_a_marker_is_replaced_not_followed(tmp_path: Path, decoy: Path) -> None:
    reports = tmp_path / "r"
    reports.mkdir()
    (reports / MARKER).symlink_to(decoy / "notes.txt")
    before = snapshot(decoy)
    claim(reports)  # a link is no marker: the dir is taken as an older testgate's, and marked
    assert not (reports / MARKER).is_symlink()
    write_text(reports / "summary.md", "x")
    assert snapshot(decoy) == before


# -- an earlier attempt's artifact is untrusted ---------------------------------------


REPO = "acme/shop"


def artifact_env(httpserver: HTTPServer) -> dict[str, str]:
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": httpserver.url_for("").rstrip("/"),
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_SHA": "c0ffee",
        "GITHUB_RUN_ID": "555",
        "GITHUB_RUN_ATTEMPT": "2",
        "TESTGATE_ARTIFACT": "a",
        "TESTGATE_GITHUB_TOKEN": "ghs_t",
    }


def zipped(content: bytes, name: str = "results.json") -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return data.getvalue()


def understated(content: bytes) -> bytes:
    """A zip bomb's trick: its headers say results.json unpacks to 10 bytes."""
    data = bytearray(zipped(content))
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 10)
    struct.pack_into("<I", data, 22, 10)
    return bytes(data)


def serve(httpserver: HTTPServer, archive: bytes, listing: Any = None) -> None:
    httpserver.expect_request(f"/repos/{REPO}/actions/runs/555/artifacts").respond_with_json(
        listing if listing is not None else {"artifacts": [{"id": 9, "name": "a-attempt-1"}]}
    )
    httpserver.expect_request(f"/repos/{REPO}/actions/artifacts/9/zip").respond_with_data(archive)


PASSED = TestResult(
    id="t.py::t",
    file="t.py",
    line=1,
    outcome="passed",
    attempts=(Attempt(outcome="passed", duration_s=0.1),),
)


@pytest.mark.parametrize(
    ("archive", "listing", "words"),
    [
        (zipped(b"[1, 2]"), None, "Expected `object`"),
        (zipped(b'{"run": "x", "tests": []}'), None, "Expected `object`"),
        (zipped(b'{"run": {}, "tests": [{"id": 1}]}'), None, "Expected `str`"),
        (zipped(b'{"run": {}, "tests": 5}'), None, "Expected `array`"),
        (zipped(b"\xff\xfe not json"), None, "could not read artifact"),
        (zipped(b"{}", name="other.json"), None, "no item named 'results.json'"),
        (b"not a zip", None, "File is not a zip file"),
        (zipped(b" " * 300_000), None, "unpacks to"),
        (understated(b" " * 300_000), None, "Bad CRC-32"),
        (b"x" * 300_000, None, "the artifact is 300000 bytes, over 200000"),
        (b"", [1, 2], "Expected `object`"),
        (b"", {"artifacts": [{"id": 9, "name": 3}]}, "Expected `str`"),
        (b"", {"artifacts": [{"name": "a-attempt-1"}]}, "missing required field `id`"),
    ],
)
def test_a_bad_earlier_artifact_is_one_warning_and_changes_nothing(
    httpserver: HTTPServer, archive: bytes, listing: Any, words: str
) -> None:
    serve(httpserver, archive, listing)
    environ = artifact_env(httpserver)
    previous, notices = previous_attempt(environ, api=client.connect(environ), limit=200_000)
    assert previous is None
    assert len(notices) == 1
    assert notices[0].startswith("could not read artifact a-attempt-1 of attempt 1")
    assert words in notices[0]


def test_an_artifact_declared_too_large_is_not_downloaded(httpserver: HTTPServer) -> None:
    httpserver.expect_request(f"/repos/{REPO}/actions/runs/555/artifacts").respond_with_json(
        {"artifacts": [{"id": 9, "name": "a-attempt-1"}]}
    )
    httpserver.expect_request(f"/repos/{REPO}/actions/artifacts/9/zip").respond_with_response(
        Response(b"x" * 2000, headers={"Content-Length": "2000"})
    )
    environ = artifact_env(httpserver)
    _, notices = previous_attempt(environ, api=client.connect(environ), limit=1000)
    assert "the artifact is 2000 bytes, over 1000" in notices[0]


def test_a_download_is_bounded_while_it_streams(httpserver: HTTPServer) -> None:
    httpserver.expect_request(f"/repos/{REPO}/actions/runs/555/artifacts").respond_with_json(
        {"artifacts": [{"id": 9, "name": "a-attempt-1"}]}
    )
    chunks = (b"x" * 100_000 for _ in range(30))  # no Content-Length: sent chunked
    httpserver.expect_request(f"/repos/{REPO}/actions/artifacts/9/zip").respond_with_response(
        Response(chunks, direct_passthrough=True)
    )
    environ = artifact_env(httpserver)
    _, notices = previous_attempt(environ, api=client.connect(environ), limit=250_000)
    assert "the artifact's download passed 250000 bytes; not read" in notices[0]


def test_a_redirect_to_another_host_carries_no_token(httpserver: HTTPServer) -> None:
    storage = HTTPServer(host="localhost")
    storage.start()
    try:
        seen: list[str | None] = []

        def blob(request: Request) -> Response:
            seen.append(request.headers.get("Authorization"))
            return Response(
                zipped(b'{"run": {"commit": "c0ffee", "environment": "e1"}, "tests": []}')
            )

        storage.expect_request("/blob.zip").respond_with_handler(blob)
        httpserver.expect_request(f"/repos/{REPO}/actions/runs/555/artifacts").respond_with_json(
            {"artifacts": [{"id": 9, "name": "a-attempt-1"}]}
        )
        httpserver.expect_request(f"/repos/{REPO}/actions/artifacts/9/zip").respond_with_response(
            Response(status=302, headers={"Location": storage.url_for("/blob.zip")})
        )
        environ = artifact_env(httpserver)
        previous, notices = previous_attempt(environ, api=client.connect(environ), environment="e1")
        assert notices == []
        assert previous is not None
        assert previous.failed == frozenset()  # read, through the redirect
        assert seen == [None]
    finally:
        storage.stop()


# -- GitHub's REST API: the right words, and retries ---------------------------------


def failing_result() -> RunResult:
    return hostile_result(["plain"])


def check_run(httpserver: HTTPServer, tmp_path: Path) -> str:
    environ = {
        **artifact_env(httpserver),
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_EVENT_PATH": str(tmp_path / "none.json"),
    }
    return report(
        failing_result(), markdown="", reports_dir="r", environ=environ, api=client.connect(environ)
    )


def test_the_permissions_hint_is_given_only_on_a_403(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request(f"/repos/{REPO}/check-runs").respond_with_json({}, status=403)
    printed = check_run(httpserver, tmp_path)
    assert "(HTTP 403)" in printed
    assert "permissions: checks: write" in printed


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_is_retried(httpserver: HTTPServer, tmp_path: Path, status: int) -> None:
    answers = iter([Response("{}", status=status), Response('{"id": 7}', status=201)])
    httpserver.expect_request(f"/repos/{REPO}/check-runs").respond_with_handler(
        lambda request: next(answers)
    )
    printed = check_run(httpserver, tmp_path)
    assert "could not create" not in printed
    assert len(httpserver.log) == 2


def test_retries_are_bounded_and_back_off() -> None:
    from urllib3.exceptions import MaxRetryError  # noqa: PLC0415 (only this test needs it)

    retry = client._retry()
    waits = []
    for _ in range(client.API_RETRIES):
        retry = retry.increment(method="POST", url="/x")
        waits.append(retry.get_backoff_time())
    assert waits == [0, 2 * client.API_BACKOFF_S, 4 * client.API_BACKOFF_S]
    with pytest.raises(MaxRetryError):
        retry.increment(method="POST", url="/x")


def test_a_secondary_rate_limit_is_waited_out(httpserver: HTTPServer, tmp_path: Path) -> None:
    answers = iter(
        [
            Response("{}", status=403, headers={"Retry-After": "0"}),
            Response('{"id": 7}', status=201),
        ]
    )
    httpserver.expect_request(f"/repos/{REPO}/check-runs").respond_with_handler(
        lambda request: next(answers)
    )
    printed = check_run(httpserver, tmp_path)
    assert "could not create" not in printed
    assert len(httpserver.log) == 2


def test_an_unreachable_api_says_what_happened(tmp_path: Path) -> None:
    environ = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": "http://127.0.0.1:9",
        "GITHUB_REPOSITORY": REPO,
        "TESTGATE_GITHUB_TOKEN": "ghs_t",
        "GITHUB_EVENT_PATH": str(tmp_path / "none.json"),
    }
    printed = report(
        failing_result(), markdown="", reports_dir="r", environ=environ, api=client.connect(environ)
    )
    assert "could not create a check run (ConnectionError" in printed
    assert "permissions" not in printed
    assert runner_commands(printed)[0][0] == "warning"


# -- the earlier promises, kept here with the rest ------------------------------------


@pytest.mark.parametrize("seconds", ["NaN", "Infinity", "-1", '"inf"', '"nan"'])
def test_a_durations_record_with_no_real_duration_is_ignored(tmp_path: Path, seconds: str) -> None:
    # A cached or downloaded durations.json is untrusted: a NaN or negative weight would
    # make the shards' plan depend on how a sort treats it.
    path = tmp_path / "durations.json"
    path.write_text(f'{{"tests/test_a.py::test_a": {seconds}, "tests/test_b.py::test_b": 1}}')
    durations, warning = read_durations(path)
    assert durations == {}
    assert warning is not None
    assert "not a duration in seconds" in warning
    assert "planned without durations" in warning


@pytest.mark.parametrize(
    "content",
    [
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><testsuites>&a;</testsuites>',
        '<?xml version="1.0"?><!DOCTYPE x SYSTEM "file:///etc/passwd"><testsuites/>',
        "<testsuites><testsuite><testcase name='t'",
        "\udcff".encode("utf-8", "surrogateescape").decode("latin-1"),
    ],
)
def test_hostile_junit_in_a_shard_is_refused_by_name(tmp_path: Path, content: str) -> None:
    project = tmp_path / "project"
    (project / "shard-1").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n', "utf-8")
    (project / "shard-1" / "junit.xml").write_bytes(content.encode("latin-1", "replace"))
    before = snapshot(project)
    ran = run_in_process(project, "shard-1", command="merge", extra_env={"GITHUB_ACTIONS": "x"})
    assert ran.exit_code == 3
    assert "junit.xml" in ran.output
    assert snapshot(project) == before


# -- a state file names only what testgate started ------------------------------------

STATE_DOCKER = '#!/bin/sh\necho "$*" >> "$DOCKER_CALLS"\n'


def forged_state(path: Path, service: dict[str, Any]) -> None:
    """A services state file as a pull request could commit it in ``.testgate/``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"kind": "postgres", "host": "127.0.0.1", "port": 1, **service}
    data = {"version": 1, "run_id": "forged", "backend": record["backend"], "services": [record]}
    path.write_text(json.dumps(data), "utf-8")


@pytest.mark.parametrize(
    "where", ["the decoy", "a dir named as testgate's", "a link to the decoy", "no dir"]
)
def test_a_forged_state_file_cannot_make_down_delete_or_stop_anything(
    tmp_path: Path, decoy: Path, capfd: pytest.CaptureFixture[str], where: str
) -> None:
    target = {
        "the decoy": decoy,
        "a dir named as testgate's": decoy / "testgate-postgres-abc",
        "a link to the decoy": tmp_path / "testgate-postgres-link",
        "no dir": tmp_path / "none",
    }[where]
    if where == "a dir named as testgate's":
        target.mkdir()
        (target / "notes.txt").write_text("the user's own\n", "utf-8")
    if where == "a link to the decoy":
        (decoy / ".testgate-service").write_text("forged\n", "utf-8")
        target.symlink_to(decoy)
    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    state = tmp_path / "project" / ".testgate" / "services.json"
    forged_state(
        state,
        {"name": "postgres", "backend": "local", "pid": bystander.pid,
         "directory": None if where == "no dir" else str(target)},
    )  # fmt: skip
    before = snapshot(decoy)
    try:
        code = main(["services", "down", "--state-file", str(state)], environ=environment())
        assert bystander.poll() is None, "a process testgate did not start was stopped"
    finally:
        bystander.kill()
        bystander.wait()
    err = capfd.readouterr().err
    assert code == 0
    assert snapshot(decoy) == before
    assert "left alone: the recorded service 'postgres' names" in err
    assert "not a service dir testgate made" in err
    assert (str(target) if where != "no dir" else "names None") in err


def test_a_forged_state_file_cannot_make_down_remove_a_container(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(STATE_DOCKER, "utf-8")
    (bin_dir / "docker").chmod(0o755)
    calls = tmp_path / "calls"
    state = tmp_path / ".testgate" / "services.json"
    forged_state(state, {"name": "db", "backend": "docker", "container": "the-users-database"})
    env = environment(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", DOCKER_CALLS=str(calls))
    assert main(["services", "down", "--state-file", str(state)], environ=env) == 0
    called = calls.read_text("utf-8")
    assert "the-users-database" not in called
    assert "label=io.testgate.run=forged" in called  # only what carries testgate's label


def test_output_that_reaches_the_relay_after_it_stopped_is_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    read, write = os.pipe()
    relay = _Relay(os.fdopen(read, "rb"))
    relay.stop()  # pytest and its group have ended: a late writer is not shown
    with os.fdopen(write, "wb") as late:
        late.write(b"::error::written after the guard\n")
    relay.start()
    relay.join()
    assert capsys.readouterr().out == ""
