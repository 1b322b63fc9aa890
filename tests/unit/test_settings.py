"""Settings: flags beat TESTGATE_* variables beat [tool.testgate] beat defaults."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from runner.cli import main
from runner.errors import ConfigError
from runner.plugin._testgate_wire import (
    ATTEMPT_VARIABLES,
    DJANGO_ENV,
    NO_DYNAMIC_CONTEXT_ENV,
    WORKER_ENV,
)
from runner.process_group import MARKER_ENV
from runner.services.lifecycle import UP_LOG_ENV
from runner.settings import (
    COMMANDS,
    INPUTS_ENV,
    OPTIONS,
    OPTIONS_BY_NAME,
    Settings,
    load_settings,
    unknown_variables,
)
from tests.conftest import ROOT


def project_with(tmp_path: Path, tool_table: str = "") -> Path:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\n\n[tool.testgate]\n' + tool_table, "utf-8"
    )
    return tmp_path


def test_defaults_are_the_contracts(tmp_path: Path) -> None:
    settings = load_settings(project=project_with(tmp_path), flags={}, environ={})
    assert settings.fail_under_line == 100
    assert settings.fail_under_branch == 100
    assert settings.min_tests == 1
    assert settings.max_duration is None
    assert (settings.workers, settings.dist) == ("auto", "worksteal")
    assert settings.reports_dir == tmp_path.resolve() / "testgate-reports"
    assert settings.pytest_args == ()
    assert settings.sync is True


def test_each_layer_wins_over_the_ones_below(tmp_path: Path) -> None:
    project = project_with(
        tmp_path,
        "fail-under-line = 90\nfail-under-branch = 80\nmin-tests = 5\nworkers = 3\n",
    )
    settings = load_settings(
        project=project,
        flags={"fail-under-line": "95"},
        environ={"TESTGATE_FAIL_UNDER_LINE": "70", "TESTGATE_FAIL_UNDER_BRANCH": "75"},
    )
    assert settings.fail_under_line == 95  # flag over env and pyproject
    assert settings.fail_under_branch == 75  # env over pyproject
    assert settings.min_tests == 5  # pyproject over default
    assert settings.workers == "3"
    assert settings.max_duration is None  # default


def test_pyproject_values_of_every_toml_type(tmp_path: Path) -> None:
    project = project_with(
        tmp_path,
        'pytest-args = ["-m", "not slow"]\nsync = false\nmax-duration = 30\n'
        'reports-dir = "out/reports"\nworkers = "logical"\ndist = "load"\n',
    )
    settings = load_settings(project=project, flags={}, environ={}, extra_pytest_args=("-x",))
    assert settings.pytest_args == ("-m", "not slow", "-x")
    assert settings.sync is False
    assert settings.max_duration == 30
    assert settings.reports_dir == project.resolve() / "out" / "reports"
    assert (settings.workers, settings.dist) == ("logical", "load")


def test_environment_strings_are_parsed_like_flags(tmp_path: Path) -> None:
    settings = load_settings(
        project=project_with(tmp_path),
        flags={},
        environ={
            "TESTGATE_PYTEST_ARGS": "-k 'add or sign' -q",
            "TESTGATE_SYNC": "no",
            "TESTGATE_MAX_DURATION": "none",
            "TESTGATE_PYTHON_VERSION": "3.11",
        },
    )
    assert settings.pytest_args == ("-k", "add or sign", "-q")
    assert settings.sync is False
    assert settings.max_duration is None
    assert settings.python_version == "3.11"
    sharded = load_settings(project=project_with(tmp_path), flags={"shard": "02/4"}, environ={})
    assert sharded.shard == "2/4"
    assert load_settings(project=tmp_path, flags={"shard": "none"}, environ={}).shard is None


@pytest.mark.parametrize(
    ("source", "value", "expected"),
    [
        ("flag", "abc", "--fail-under-line: 'abc' must be a number"),
        ("flag", "101", "--fail-under-line: '101' must be a percentage from 0 to 100"),
        ("flag", "nan", "--fail-under-line: 'nan' must be a finite number"),
        ("env", "-5", "TESTGATE_FAIL_UNDER_LINE: '-5' must be a percentage from 0 to 100"),
        ("toml", '"lots"', "fail-under-line in [tool.testgate] of pyproject.toml: 'lots'"),
    ],
)
def test_a_bad_value_names_its_source_and_what_is_accepted(
    tmp_path: Path, source: str, value: str, expected: str
) -> None:
    table = f"fail-under-line = {value}\n" if source == "toml" else ""
    flags: dict[str, str | None] = {"fail-under-line": value} if source == "flag" else {}
    env = {"TESTGATE_FAIL_UNDER_LINE": value} if source == "env" else {}
    with pytest.raises(ConfigError) as caught:
        load_settings(project=project_with(tmp_path, table), flags=flags, environ=env)
    assert expected in caught.value.message
    assert caught.value.exit_code == 2
    assert "minimum line coverage, percent" in caught.value.message


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("workers", "-1", "must not be negative"),
        ("workers", "many", "must be a whole number"),
        ("dist", "random", "must be one of worksteal, load"),
        ("min-tests", "1.5", "must be a whole number"),
        ("max-duration", "0", "must be a number of seconds above 0"),
        ("sync", "maybe", "must be true or false"),
        ("pytest-args", "-k 'open", "cannot be split into arguments"),
        ("reports-dir", " ", "must not be empty"),
        ("shard", "3/2", "must be I/N with 1 <= I <= N"),
        ("sonar-timeout", "0", "must be a number of seconds above 0"),
        ("shard", "one/two", "must be I/N with 1 <= I <= N"),
        ("services", "postgress", "^--service: 'postgress' is not a list of services: unknown"),
        ("services-backend", "podman", "must be one of auto, docker, local, external"),
        ("service-env", "POSTGRES_SERVER={host}", "not SERVICE.VARIABLE=TEMPLATE such as"),
        ("service-env", "postgres.DB={db}", "{db} is not a field; use {host}, {port}, {user}"),
        ("service-env", "postgres.DSN=a}b", "write a literal brace as {{ or }}"),
        ("service-setup", "alembic upgrade head", "not SERVICE=COMMAND such as postgres=alembic"),
        # YAML reads python-version: 3.10 (unquoted, as in a matrix list) as the number 3.1
        (
            "python-version",
            "3.1",
            r"'3\.1' is what YAML makes of an unquoted 3\.10: quote it \(\"3\.10\"\)",
        ),
        ("python-version", "3.2", r"an unquoted 3\.20: quote it"),
    ],
)
def test_every_option_rejects_what_it_cannot_use(
    tmp_path: Path, option: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_settings(project=project_with(tmp_path), flags={option: value}, environ={})


def test_an_unknown_pyproject_key_names_the_closest_else_lists_the_known_ones(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            project=project_with(tmp_path, "fail_under_line = 90\n"), flags={}, environ={}
        )
    assert caught.value.message.endswith(
        "unknown key 'fail_under_line' in [tool.testgate] of "
        f"{tmp_path / 'pyproject.toml'}; did you mean 'fail-under-line'?"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(project=project_with(tmp_path, "colour = 1\n"), flags={}, environ={})
    assert "unknown key 'colour' in [tool.testgate]" in caught.value.message
    for option in OPTIONS:
        assert option.name in caught.value.message


def test_a_mistyped_flag_is_refused_with_the_closest_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for args, expected in (
        (["run", "--fail-under-lines", "90"], "arguments: --fail-under-lines 90 (did you mean "
         "--fail-under-line?)\n"),
        (["merge", "--max-flakey=1", "a"], "--max-flakey=1 (did you mean --max-flaky?)\n"),
        (["run", "-x", "--colour"], "unrecognized arguments: -x --colour\n"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as ended:
            main(args, environ={})
        assert ended.value.code == 2
        assert capsys.readouterr().err.endswith(expected)


def test_a_list_flag_given_twice_keeps_both_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--group test --group django52``, as uv takes it: before, only the last group was
    installed (django-mysql's tests then failed to import their database driver)."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\n[dependency-groups]\ndev = []\n', "utf-8"
    )
    args = ["run", "--project", str(tmp_path), "--group", "tset", "--group", "dev"]
    code = main(args, environ={})
    assert code == 2
    assert "no dependency group 'tset'" in capsys.readouterr().err


def test_a_testgate_variable_that_sets_no_option_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not the variables testgate sets for its children, which may run testgate again."""
    environ = {
        "TESTGATE_FAIL_UNDER_LNE": "90",
        "TESTGATE_COLOUR": "1",
        "TESTGATE_RECORD": "/tmp/record.jsonl",
        "TESTGATE_WORKERS": "2",
        "TESTGATE_TIMEOUTS": "{}",  # the plugin's, though timeouts is a pyproject option
        "OTHER_FAIL_UNDER_LNE": "90",
    }
    main(["history", "--project", str(tmp_path)], environ=environ)
    assert capsys.readouterr().err.splitlines()[:2] == [
        "testgate: warning: TESTGATE_COLOUR sets no testgate option, it is ignored",
        "testgate: warning: TESTGATE_FAIL_UNDER_LNE sets no testgate option, it is ignored; "
        "did you mean TESTGATE_FAIL_UNDER_LINE?",
    ]


def test_the_variables_testgate_and_its_action_set_are_its_own(tmp_path: Path) -> None:
    set_by_testgate = {
        INPUTS_ENV, MARKER_ENV, UP_LOG_ENV, *ATTEMPT_VARIABLES, WORKER_ENV, DJANGO_ENV,
        NO_DYNAMIC_CONTEXT_ENV,
    }  # fmt: skip
    action = (ROOT / "action.yml").read_text("utf-8")
    in_action = set(re.findall(r"\b(TESTGATE_[A-Z_]+):", action))
    assert in_action  # the action's steps set some
    assert not unknown_variables(dict.fromkeys(set_by_testgate | in_action, "1"))


def test_tool_testgate_must_be_a_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool]\ntestgate = 3\n", "utf-8")
    with pytest.raises(ConfigError, match=r"\[tool.testgate\] in .* must be a table"):
        load_settings(project=tmp_path, flags={}, environ={})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project\nname=", "utf-8")
    with pytest.raises(ConfigError, match=r"pyproject.toml is not valid TOML: .*line 1"):
        load_settings(project=tmp_path, flags={}, environ={})


def test_missing_project_or_pyproject_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist: pass --project DIR"):
        load_settings(project=tmp_path / "nowhere", flags={}, environ={})
    # without a pyproject.toml the defaults apply: runner.environment says what is missing
    assert load_settings(project=tmp_path, flags={}, environ={}).workers == "auto"


def test_services_come_from_pyproject_as_a_list(tmp_path: Path) -> None:
    table = 'services = ["postgres:16", "cache=redis"]\nservices-timeout = 30\n'
    settings = load_settings(project=project_with(tmp_path, table), flags={}, environ={})
    assert [(spec.name, spec.kind) for spec in settings.services] == [
        ("postgres", "postgres"), ("cache", "redis"),
    ]  # fmt: skip
    assert (settings.services_backend, settings.services_timeout) == ("auto", 30.0)


def test_service_env_maps_the_projects_own_names_per_service(tmp_path: Path) -> None:
    table = (
        '[tool.testgate.service-env.postgres]\nPOSTGRES_SERVER = "{host}"\n'
        'POSTGRES_DB = "{database}"\n'
        '[tool.testgate.service-env.cache]\nCELERY_BROKER_URL = "{url}"\n'
    )
    settings = load_settings(project=project_with(tmp_path, table), flags={}, environ={})
    assert settings.service_env == {
        "postgres": {"POSTGRES_SERVER": "{host}", "POSTGRES_DB": "{database}"},
        "cache": {"CELERY_BROKER_URL": "{url}"},
    }
    flags = {"service-env": "Postgres.APP_DB = {database}\n\n", "service-setup": "\nDB = a=b\n"}
    settings = load_settings(project=project_with(tmp_path, ""), flags=flags, environ={})
    assert settings.service_env == {"postgres": {"APP_DB": "{database}"}}
    assert settings.service_setup == {"db": "a=b"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_commands_help_lists_its_options_and_only_those(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        main([command, "--help"], environ={})
    assert ended.value.code == 0
    shown = capsys.readouterr().out
    flags = {option.name for option in OPTIONS if not option.pyproject_only}
    listed = {name for name in flags if f"--{name} " in shown or f"--{name}=" in shown}
    listed |= {"services"} if "--service SPEC, --services SPEC" in shown else set()
    assert listed == {name for name in flags if command in OPTIONS_BY_NAME[name].commands}
    assert "--reports-dir" in shown


def test_run_lists_no_sonar_merge_or_detection_only_option_but_still_reads_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"], environ={})
    shown = capsys.readouterr().out
    for name in ("--sonar-host-url", "--sonar-wait", "--time-budget", "--expect-shards"):
        assert name not in shown
    assert "--max-skipped" in shown
    assert "5%" in shown  # a '%' in a help text is shown as is
    assert "--groups GROUPS, --group GROUPS" in shown
    project = str(project_with(tmp_path))
    assert main(["run", "--project", project, "--sonar-wait", "maybe"], environ={}) == 2
    assert "--sonar-wait: 'maybe' must be true or false" in capsys.readouterr().err


def test_settings_has_one_field_per_option_and_commands_are_known() -> None:
    """OPTIONS is the one declaration: Settings, the flags and action.yml follow it."""
    fields = [field.name for field in dataclasses.fields(Settings)]
    derived = {"project", "explicit", "threshold_from"}  # no option of their own
    assert set(fields) - derived == {option.attribute for option in OPTIONS}
    assert len(fields) == len(set(fields))
    for option in OPTIONS:
        assert option.commands, option.name
        assert set(option.commands) <= set(COMMANDS), option.name
