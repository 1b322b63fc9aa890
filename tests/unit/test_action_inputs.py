"""action.yml's inputs and outputs against the option table, and how inputs reach settings.

The action hands testgate every input as ``TESTGATE_INPUTS`` (``toJSON(inputs)``). An
option input left empty is not set, so a project's ``[tool.testgate]`` wins over the
action's documented defaults. The sync test reads ``runner.settings.OPTIONS``: an option
added without its input (or an input without its option) fails here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from runner.cli import main
from runner.errors import ConfigError
from runner.settings import OPTIONS, OPTIONS_BY_NAME, action_inputs, load_settings
from tests.conftest import ROOT

# Inputs of the action alone: what it does in its own steps, not a testgate option.
ACTION_ONLY = {
    "mode": "chooses the command (run, merge, flaky)",
    "working-directory": "the steps' working directory, the project root",
    "setup-uv": "whether the action installs uv",
    "sync-args": "the action's own uv sync step",
    "github-token": "a secret, passed on its own and masked",
    "sonar-token": "a secret, passed to the upload step alone",
}
# Options the action must not take from an input.
CLI_ONLY = {
    "sync": "the action syncs the project in a step of its own (sync-args)",
    "timeouts": "a per-marker table, set in pyproject.toml only (SPEC)",
}


def action() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load((ROOT / "action.yml").read_text("utf-8"))
    return loaded


def test_every_option_is_an_input_and_every_input_an_option_or_the_actions_own() -> None:
    inputs = set(action()["inputs"])
    options = {option.name for option in OPTIONS}
    assert sorted(options - set(CLI_ONLY) - inputs) == [], "options without an input"
    assert sorted(inputs - options - set(ACTION_ONLY)) == [], "inputs that are no option"
    assert not set(CLI_ONLY) & inputs
    assert not set(ACTION_ONLY) & options


def test_option_inputs_default_to_empty_and_document_testgates_default() -> None:
    for name, spec in action()["inputs"].items():
        if name in OPTIONS_BY_NAME:
            assert spec.get("default", "") == "", f"input {name} has a default"
            default = OPTIONS_BY_NAME[name].default
            if default not in (None, (), True) and name != "services":
                shown = (
                    f"{default:g}"
                    if isinstance(default, float)
                    else str(default).lower()
                    if isinstance(default, bool)
                    else str(default)
                )
                assert f"(default: {shown})" in spec["description"], name


def test_every_step_that_runs_testgate_gets_the_inputs() -> None:
    steps = action()["runs"]["steps"]
    for step in steps:
        if '"$TESTGATE" ' in step.get("run", "") and "services down" not in step["run"]:
            assert step["env"]["TESTGATE_INPUTS"] == "${{ toJSON(inputs) }}", step["name"]
        assert "TESTGATE_FAIL_UNDER_LINE" not in step.get("env", {})


def test_outputs_cover_every_mode() -> None:
    outputs = set(action()["outputs"])
    for name in ("passed", "tests", "failed", "flaky", "skipped", "stable", "failing"):
        assert name in outputs
    assert "undecided" in outputs


def test_the_passed_output_counts_sonarqubes_quality_gate() -> None:
    # testgate sonar judges SonarQube's gate after the run's step wrote passed=true: a
    # later step reading the run's output alone would take a failed job for a pass.
    loaded = action()
    (upload,) = [
        step for step in loaded["runs"]["steps"] if '"$TESTGATE" sonar' in step.get("run", "")
    ]
    assert loaded["outputs"]["passed"]["value"] == (
        f"${{{{ steps.{upload['id']}.outputs.passed || steps.testgate.outputs.passed }}}}"
    )


def test_the_upload_step_runs_without_a_token_when_sonarqube_is_asked_for() -> None:
    # A fork's pull request gets no secrets: sonar-token is "". With the project's key or
    # organization given, the step still runs so that testgate sonar says the upload was
    # skipped (README); a workflow that names no SonarQube input gets no step at all, nor
    # does a run that never ran or was cancelled, nor flaky detection (no results.json: the
    # upload failed with exit 2 in a weekly job given the same inputs).
    loaded = action()
    (upload,) = [step for step in loaded["runs"]["steps"] if step.get("id") == "sonar"]
    asked = [name for name in loaded["inputs"] if name.startswith("sonar-")]
    assert upload["if"] == (
        'always() && contains(fromJSON(\'["success", "failure"]\'), steps.testgate.outcome)'
        " && inputs.mode != 'flaky-detect'"
        " && (" + " || ".join(f"inputs.{name} != ''" for name in asked) + ")"
    )


def test_nested_actions_are_pinned_by_commit_with_the_version_in_a_comment() -> None:
    text = (ROOT / "action.yml").read_text("utf-8")
    uses = [line.split("uses:", 1)[1].strip() for line in text.splitlines() if "uses:" in line]
    assert uses
    for reference in uses:
        ref, _, comment = reference.partition(" # ")
        sha = ref.split("@", 1)[1]
        assert len(sha) == 40, reference
        assert all(c in "0123456789abcdef" for c in sha), reference
        assert comment.startswith("v"), reference


def project_with(tmp_path: Path, table: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "p"\nversion = "0"\n\n[tool.testgate]\n{table}', "utf-8"
    )
    return tmp_path


def inputs_json(**values: str) -> str:
    """What the action sends: every input, empty ones included."""
    everything = dict.fromkeys(action()["inputs"], "")
    everything.update({name.replace("_", "-"): value for name, value in values.items()})
    everything["github-token"] = "ghs_secret"
    return json.dumps(everything)


def test_pyproject_wins_over_empty_inputs_and_a_set_input_wins_over_pyproject(
    tmp_path: Path,
) -> None:
    project = project_with(
        tmp_path, "fail-under-line = 90\nfail-under-branch = 70\nmax-flaky = 1\nworkers = 3\n"
    )
    environ = {"TESTGATE_INPUTS": inputs_json(fail_under_branch="75", expect_variants="2")}
    settings = load_settings(project=project, flags={}, environ=environ)
    assert (settings.fail_under_line, settings.max_flaky, settings.workers) == (90, 1, "3")
    assert settings.fail_under_branch == 75
    assert settings.expect_variants == 2
    assert settings.reruns == 2  # nothing set it: testgate's default
    # an input beats the environment; a flag beats the input
    environ["TESTGATE_FAIL_UNDER_BRANCH"] = "60"
    flags = {"fail-under-branch": "50"}
    assert load_settings(project=project, flags={}, environ=environ).fail_under_branch == 75
    assert load_settings(project=project, flags=flags, environ=environ).fail_under_branch == 50


def test_the_services_input_is_left_to_the_actions_services_step(tmp_path: Path) -> None:
    environ = {"TESTGATE_INPUTS": inputs_json(services="redis:7", services_timeout="5")}
    settings = load_settings(project=project_with(tmp_path, ""), flags={}, environ=environ)
    assert (settings.services, settings.services_timeout) == ((), 5)
    assert action_inputs(environ)["services"] == "redis:7"


def test_typed_json_values_are_read_as_their_text() -> None:
    given = {"annotations": False, "reruns": 3, "x": "y", "workers": None}  # null: not set
    environ = {"TESTGATE_INPUTS": json.dumps(given)}
    assert action_inputs(environ) == {"annotations": "false", "reruns": "3"}
    assert action_inputs({}) == {}


def test_an_input_that_is_a_json_object_names_the_input() -> None:
    with pytest.raises(ConfigError, match="the action's input workers is a JSON object"):
        action_inputs({"TESTGATE_INPUTS": json.dumps({"workers": {"n": 2}})})


@pytest.mark.parametrize(
    ("text", "words"),
    [("{not json", "is not JSON"), ("[1, 2]", "JSON object")],
)
def test_a_malformed_inputs_variable_is_a_config_error(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        action_inputs({"TESTGATE_INPUTS": text})


def test_a_bad_input_names_the_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = project_with(tmp_path, "")
    environ = {"TESTGATE_INPUTS": inputs_json(fail_under_line="lots")}
    assert main(["sonar", "--project", str(project)], environ=environ) == 2
    assert "the action's input fail-under-line: 'lots' must be a number" in capsys.readouterr().err


def test_expect_counts_must_be_above_zero(tmp_path: Path) -> None:
    project = project_with(tmp_path, "")
    with pytest.raises(ConfigError, match="above 0"):
        load_settings(project=project, flags={"expect-shards": "0"}, environ={})
    settings = load_settings(project=project, flags={"expect-shards": "none"}, environ={})
    assert settings.expect_shards is None


def test_the_inputs_and_their_tokens_reach_no_process_testgate_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Readiness commands and local servers inherit testgate's own environment.
    monkeypatch.setenv("TESTGATE_INPUTS", inputs_json(sonar_token="sqp_secret"))
    assert main(["services", "down", "--state-file", str(tmp_path / "none.json")]) == 0
    assert "TESTGATE_INPUTS" not in os.environ


def test_the_services_input_wins_over_the_projects_services(tmp_path: Path) -> None:
    # The action's step starts the input's services; a run that started pyproject's
    # instead left the input's unused and the tests without them.
    project = project_with(tmp_path, 'services = ["redis:7"]\n')
    environ = {"TESTGATE_INPUTS": inputs_json(services="postgres:16")}
    assert load_settings(project=project, flags={}, environ=environ).services == ()
    alone = load_settings(project=project, flags={}, environ={"TESTGATE_INPUTS": inputs_json()})
    assert [spec.name for spec in alone.services] == ["redis"]


def test_the_actions_services_step_reads_the_projects_backend_and_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The step runs 'services up' in the project (working-directory): an input left empty
    # leaves the project's [tool.testgate] to decide, as it does for every other option.
    # Each case stops with exit 2 before anything starts, read or not.
    monkeypatch.chdir(project_with(tmp_path, "services-backend = 'nonsense'\n"))
    environ = {"TESTGATE_INPUTS": inputs_json(services="redis:7", services_timeout="0")}
    assert main(["services", "up"], environ=environ) == 2
    said = capsys.readouterr().err
    assert "services-backend in [tool.testgate] of pyproject.toml: 'nonsense'" in said
    monkeypatch.chdir(project_with(tmp_path, "services-timeout = 0\n"))
    environ = {
        "TESTGATE_INPUTS": inputs_json(services="redis:7"),
        "TESTGATE_SERVICES_BACKEND": "external",  # redis:7 is no URL for it: exit 2 too
    }
    assert main(["services", "up"], environ=environ) == 2
    assert "services-timeout in [tool.testgate] of pyproject.toml: '0'" in capsys.readouterr().err


@pytest.mark.parametrize("given", ["95.5%", "95.5 %", " 95.5"])
def test_a_threshold_may_carry_its_percent_sign(tmp_path: Path, given: str) -> None:
    environ = {"TESTGATE_INPUTS": inputs_json(fail_under_line=given, fail_under_diff="0%")}
    settings = load_settings(project=project_with(tmp_path, ""), flags={}, environ=environ)
    assert (settings.fail_under_line, settings.fail_under_diff) == (95.5, 0)
