"""The ``local`` backend: services started from binaries installed on this machine.

For a laptop, or a CI machine without a Docker engine, this gives the same services as
containers would: each in a fresh temporary directory, on a free port of 127.0.0.1
(or the spec's fixed ``port=``),
with the credentials the container images use, stopped and deleted by ``down``. Each
kind is a recipe (the binaries it needs, how to initialise a data directory, how to
start the server), so one code path starts them all. Run as root, database servers
that refuse root run as their own system user (``postgres``, ``mysql``).

A recipe may keep what its init steps make (PostgreSQL's ``initdb``: about 1 s to ready and
0.5 s of CPU a start; ``mariadb-install-db``: 1-1.5 s and 0.3 s): the first start on a
machine keeps the initialised data directory in testgate's cache dir
(``$XDG_CACHE_HOME/testgate/services/KIND-KEY``, keyed by the server's binaries, their
version, the init commands and the account it runs as), and every later start copies it
instead. A copy is a data directory as the init steps make it (PostgreSQL's system
identifier is the same in each, which only replication compares); a template that cannot
be kept or read costs nothing but the init steps.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from runner.errors import InfraError, TestgateError
from runner.services import databases
from runner.services.probes import Endpoint
from runner.services.running import Running
from runner.services.spec import KINDS, ServiceSpec

if TYPE_CHECKING:  # pwd is POSIX only: imported where an account is looked up
    import pwd

SEARCH_PATH = (
    "/usr/lib/postgresql/*/bin",
    "/usr/lib/rabbitmq/bin",
    "/usr/sbin",
    "/usr/local/sbin",
    # macOS: Homebrew's keg-only formulae (postgresql@16) and its bin, Apple silicon and Intel
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
    "/opt/homebrew/bin",
)
LOG_NAME = "server.log"
# Written into every service dir testgate makes: ``down`` removes only a dir that holds it.
SERVICE_MARKER = ".testgate-service"


@dataclass(frozen=True)
class Recipe:
    """How to run one kind of service from its installed binaries.

    Commands are lists of words in which ``{dir}``, ``{port}``, ``{port2}`` and each
    binary's name in braces are replaced; ``files`` are written into the directory first.
    """

    kind: str
    binaries: tuple[str, ...]
    init: tuple[tuple[str, ...], ...]
    server: tuple[str, ...]
    install: str
    run_as: str | None = None
    user_flag: bool = False
    stop_signal: int = signal.SIGTERM
    files: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    version: tuple[str, ...] = ()
    prefer: tuple[str, ...] = ()
    template: str | None = None  # the dir (in {dir}) the init steps make, kept per machine


_MARIADB = Recipe(
    kind="mysql",
    binaries=("mariadb-install-db", "mariadbd"),
    init=(
        (
            "{mariadb-install-db}",
            "--no-defaults",
            "--datadir={dir}/data",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            "{user-option}",
        ),
    ),
    server=(
        "{mariadbd}",
        "--no-defaults",
        "--datadir={dir}/data",
        "--port={port}",
        "--bind-address=127.0.0.1",
        "--socket={dir}/mysqld.sock",
        "--pid-file={dir}/mysqld.pid",
        "--skip-name-resolve",
        "--innodb-buffer-pool-size=16M",
        "{user-option}",
    ),
    install="Debian: apt-get install mariadb-server",
    run_as="mysql",
    user_flag=True,  # as root, mariadbd switches to --user itself
    version=("{mariadbd}", "--version"),
    template="data",
)
RECIPES: Mapping[str, Recipe] = {
    "postgres": Recipe(
        kind="postgres",
        binaries=("initdb", "postgres"),
        init=(
            (
                "{initdb}",
                "--pgdata={dir}/data",
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ),
        ),
        server=(
            "{postgres}",
            "-D",
            "{dir}/data",
            "-p",
            "{port}",
            "-k",
            "{dir}",
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ),
        install="Debian: apt-get install postgresql",
        run_as="postgres",
        stop_signal=signal.SIGINT,  # PostgreSQL's fast shutdown: it ends open sessions
        version=("{postgres}", "--version"),
        template="data",
    ),
    "mysql": _MARIADB,
    "mariadb": _MARIADB,
    "redis": Recipe(
        kind="redis",
        binaries=("redis-server",),
        init=(),
        server=(
            "{redis-server}",
            "--port",
            "{port}",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "{dir}",
            "--daemonize",
            "no",
        ),
        install="Debian: apt-get install redis-server",
        version=("{redis-server}", "--version"),
    ),
    "rabbitmq": Recipe(
        kind="rabbitmq",
        binaries=("rabbitmq-server",),
        init=(),
        server=("{rabbitmq-server}",),
        install="Debian: apt-get install rabbitmq-server",
        # Debian's /usr/sbin/rabbitmq-server switches to the rabbitmq user; the real
        # script runs as whoever starts it, who owns the temporary directory.
        prefer=("/usr/lib/rabbitmq/bin",),
        files={
            "rabbitmq.conf": "listeners.tcp.default = 127.0.0.1:{port}\n"
            "loopback_users.guest = true\nlog.console = true\nlog.file = false\n",
            "enabled_plugins": "[].\n",
        },
        env={
            "HOME": "{dir}",
            "RABBITMQ_NODENAME": "testgate{port}@localhost",
            "RABBITMQ_CONFIG_FILE": "{dir}/rabbitmq.conf",
            "RABBITMQ_CONF_ENV_FILE": "{dir}/rabbitmq-env.conf",
            "RABBITMQ_ENABLED_PLUGINS_FILE": "{dir}/enabled_plugins",
            "RABBITMQ_MNESIA_BASE": "{dir}/mnesia",
            "RABBITMQ_LOG_BASE": "{dir}/log",
            "RABBITMQ_PID_FILE": "{dir}/rabbitmq.pid",
            "RABBITMQ_DIST_PORT": "{port2}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # No busy-waiting schedulers: an idle test broker should not spin a CI core.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+sbwt none +sbwtdcpu none +sbwtdio none",
        },
    ),
    "mongo": Recipe(
        kind="mongo",
        binaries=("mongod",),
        init=(("mkdir", "{dir}/data"),),
        server=("{mongod}", "--dbpath", "{dir}/data", "--port", "{port}", "--bind_ip", "127.0.0.1"),
        install="MongoDB's own packages (mongodb-org-server)",
        version=("{mongod}", "--version"),
    ),
}


def find_binary(name: str, environ: Mapping[str, str], prefer: tuple[str, ...] = ()) -> str | None:
    """``name`` in ``prefer``, on PATH, else where Debian or Homebrew put server binaries
    (newest first)."""
    found = shutil.which(name, path=os.pathsep.join((*prefer, environ.get("PATH", os.defpath))))
    if found is not None:
        return found
    for pattern in SEARCH_PATH:
        for directory in sorted(glob.glob(pattern), reverse=True):
            candidate = Path(directory) / name
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def missing(spec: ServiceSpec, environ: Mapping[str, str]) -> str | None:
    """What to install for this spec to run locally, or None when it can."""
    recipe = RECIPES.get(spec.kind)
    if recipe is None:
        return f"{spec.name}: a generic image ({spec.image}) has no local equivalent"
    absent = [name for name in recipe.binaries if find_binary(name, environ, recipe.prefer) is None]
    if absent:
        return f"{spec.name}: {', '.join(absent)} not found ({recipe.install})"
    return None


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalBackend:
    """Services as processes of this machine's own binaries."""

    name = "local"

    def __init__(self, environ: Mapping[str, str], *, root: Path | None = None) -> None:
        self.environ = environ
        self.root = root or environ.get("TMPDIR") or None
        self.processes: dict[int, subprocess.Popen[bytes]] = {}  # pid -> the server started

    def unavailable(self, specs: Sequence[ServiceSpec]) -> TestgateError | None:
        absent = [reason for spec in specs if (reason := missing(spec, self.environ)) is not None]
        if not absent:
            return None
        return InfraError(
            "cannot start the services: no Docker engine answers here, and locally "
            + "; ".join(absent)
            + ". Install them, start Docker, or give running services as NAME=URL."
        )

    def start(self, spec: ServiceSpec) -> Running:
        """Initialise a data directory and start the server; do not wait for it."""
        recipe = RECIPES[spec.kind]
        known = KINDS[spec.kind]
        directory = Path(tempfile.mkdtemp(prefix=f"testgate-{spec.name}-", dir=self.root))
        directory.chmod(0o755)
        (directory / SERVICE_MARKER).write_text(
            "testgate made this dir for a service; 'testgate services down' removes it\n", "utf-8"
        )
        account = self._account(recipe)
        _give(directory, account)
        port = spec.host_port or free_port()
        words = {
            "{dir}": str(directory),
            "{port}": str(port),
            "{port2}": str(free_port()),
            "{user-option}": "" if account is None else f"--user={account.pw_name}",
            **{
                f"{{{name}}}": str(find_binary(name, self.environ, recipe.prefer))
                for name in recipe.binaries
            },
        }
        run_as = None if account is None or recipe.user_flag else account.pw_name

        def fill(text: str) -> str:
            for key, value in words.items():
                text = text.replace(key, value)
            return text

        def command(template: tuple[str, ...]) -> list[str]:
            # An empty word stays where a flag takes it as its value (redis' --save "").
            return [fill(word) for word in template if word != "{user-option}" or fill(word)]

        for name, content in recipe.files.items():
            (directory / name).write_text(fill(content), "utf-8")
            _give(directory / name, account)
        env = {**self.environ, **{key: fill(value) for key, value in recipe.env.items()}}
        log = directory / LOG_NAME
        running = Running(
            name=spec.name,
            kind=spec.kind,
            backend=self.name,
            host="127.0.0.1",
            port=port,
            user=known.user,
            password=known.password,
            database=known.database,
            directory=str(directory),
            log=str(log),
            stop_signal=int(recipe.stop_signal),
            description=_version(command(recipe.version), env, known.label),
        )
        kept = None
        if recipe.template is not None:
            key = json.dumps(
                [[command(step) for step in recipe.init], running.description,
                 None if account is None else [account.pw_name, account.pw_uid]]
            ).replace(str(directory), "{dir}")  # fmt: skip
            digest = hashlib.sha256(key.encode()).hexdigest()[:16]
            kept = templates_dir(self.environ) / f"{spec.kind}-{digest}"
        try:
            process = self._run(
                recipe=recipe, command=command, directory=directory, env=env, log=log,
                run_as=run_as, running=running, kept=kept, account=account,
            )  # fmt: skip
        except OSError as error:
            stop_local(running)
            raise InfraError(
                f"{spec.name}: could not run {error.filename or recipe.binaries[0]}: "
                f"{error.strerror or error}"
                + (
                    f" (it runs as the {run_as} user, who must be able to reach it)"
                    if run_as
                    else ""
                )
            ) from None
        self.processes[process.pid] = process
        return _with_pid(running, process.pid)

    @staticmethod
    def endpoint(running: Running) -> Endpoint:
        """The server's own login, without a database: its database is made once it answers."""
        return replace(running.endpoint(), database="")

    @staticmethod
    def ready(running: Running) -> Running:
        databases.ensure(running)
        return running

    @staticmethod
    def _run(
        *,
        recipe: Recipe,
        command: Callable[[tuple[str, ...]], list[str]],
        directory: Path,
        env: Mapping[str, str],
        log: Path,
        run_as: str | None,
        running: Running,
        kept: Path | None = None,
        account: pwd.struct_passwd | None = None,
    ) -> subprocess.Popen[bytes]:
        made = directory / str(recipe.template)
        copied = kept is not None and _copy_template(kept, made, account)
        with log.open("ab") as sink:
            for step in () if copied else recipe.init:
                completed = subprocess.run(
                    command(step), cwd=directory, env=env, stdout=sink, stderr=sink,
                    user=run_as, check=False,
                )  # fmt: skip
                if completed.returncode != 0:
                    said = tail(log)
                    stop_local(running)
                    raise InfraError(
                        f"{running.name}: {Path(command(step)[0]).name} failed (exit "
                        f"{completed.returncode}) preparing {directory}:\n{said}"
                    )
            if kept is not None and not copied:
                _keep_template(made, kept)
            return subprocess.Popen(
                command(recipe.server), cwd=directory, env=env, stdout=sink, stderr=sink,
                stdin=subprocess.DEVNULL, user=run_as, start_new_session=True,
            )  # fmt: skip

    @staticmethod
    def _account(recipe: Recipe) -> pwd.struct_passwd | None:
        if recipe.run_as is None or os.name != "posix" or os.geteuid() != 0:
            return None
        import pwd  # noqa: PLC0415 (POSIX only; this module must import on Windows)

        try:
            return pwd.getpwnam(recipe.run_as)
        except KeyError:
            raise InfraError(
                f"{recipe.kind} refuses to run as root and there is no {recipe.run_as!r} "
                f"user to run it as; run testgate as another user, or create {recipe.run_as!r}."
            ) from None

    def died(self, running: Running) -> str | None:
        code = self.processes[int(running.pid or 0)].poll()  # one this backend started
        return None if code is None else f"its server exited with code {code}"

    @staticmethod
    def logs(running: Running) -> str:
        return tail(Path(str(running.log)))

    @staticmethod
    def stop(services: Sequence[Running], *, run_id: str) -> list[str]:
        """Stop each local service whose dir testgate made (``made_by_testgate``), last
        started first; any other is left alone, with a warning."""
        warnings = []
        for running in reversed(services):
            if made_by_testgate(running):
                stop_local(running)
            else:
                warnings.append(_left_alone(running))
        return warnings


def templates_dir(environ: Mapping[str, str]) -> Path:
    """Where initialised data directories are kept: in testgate's cache dir, beside the
    environments and plugin overlays (``runner.environment.cache_dir``)."""
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "testgate" / "services"


def _copy_template(kept: Path, target: Path, account: pwd.struct_passwd | None) -> bool:
    """Copy a kept data directory to ``target``, owned by ``account``; False when none is
    kept (or it cannot be read: the init steps then make one)."""
    if not (kept / ".complete").is_file():
        return False
    try:
        shutil.copytree(kept / target.name, target, symlinks=True)
    except OSError:
        shutil.rmtree(target, ignore_errors=True)
        return False
    for folder, _, files in os.walk(target):
        _give(Path(folder), account)
        for name in files:
            _give(Path(folder) / name, account)
    return True


def _keep_template(made: Path, kept: Path) -> None:
    """Keep what the init steps made, for later starts; whoever finishes first keeps
    theirs (the copy is renamed into place whole), and a failure only leaves it unkept."""
    staging = None
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{kept.name}-", dir=kept.parent))
        shutil.copytree(made, staging / made.name, symlinks=True)
        (staging / ".complete").write_text("kept by testgate's local backend\n", "utf-8")
        staging.rename(kept)
    except OSError:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _left_alone(running: Running) -> str:
    return (
        f"left alone: the recorded service {running.name!r} names {running.directory} "
        f"(process {running.pid}), which is not a service dir testgate made; stop and remove "
        "it by hand if it is yours."
    )


def _give(path: Path, account: pwd.struct_passwd | None) -> None:
    """Hand a file to the account the server runs as (nothing to do when it is us)."""
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)


def _version(command: list[str], env: Mapping[str, str], label: str) -> str:
    """``local PostgreSQL 15.19``: what the binary says of its version."""
    if not command:
        return f"local {label}"
    completed = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        check=False,
    )
    match = re.search(r"\d+(\.\d+)+", completed.stdout)
    return f"local {label} {match.group(0)}" if match else f"local {label}"


def _with_pid(running: Running, pid: int) -> Running:
    return msgspec.structs.replace(running, pid=pid)


def made_by_testgate(running: Running) -> bool:
    """Whether a recorded local service's dir is one testgate made for it.

    A state file is only a file: one committed in a pull request, copied from elsewhere
    or left stale may name any dir and any process. testgate removes a dir, and signals
    the process recorded with it, only when the dir is real (no link), is named as
    ``start`` names it and holds the marker ``start`` writes.
    """
    if running.directory is None:
        return False
    directory = Path(running.directory)
    return (
        directory.name.startswith(f"testgate-{running.name}-")
        and not directory.is_symlink()
        and (directory / SERVICE_MARKER).is_file()
    )


def stop_local(running: Running, *, grace_s: float = 15.0) -> None:
    """Stop the server's whole process group and delete its directory; idempotent."""
    if running.pid is not None:
        _signal_group(running.pid, running.stop_signal)
        if not _wait_gone(running.pid, grace_s):
            _signal_group(running.pid, signal.SIGKILL)
            _wait_gone(running.pid, 5.0)
    shutil.rmtree(str(running.directory), ignore_errors=True)


def _signal_group(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, number)


def _wait_gone(pid: int, seconds: float) -> bool:
    """Wait for the process to end (reaping it when it is our child)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
            if finished:
                return True
        except ChildProcessError:
            if _gone(pid):
                return True
        time.sleep(0.02)
    return False


def _gone(pid: int) -> bool:
    """Whether the process has ended: no such process, or a zombie no one has reaped yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text("utf-8", errors="replace")
    except OSError:  # pragma: no cover  (the process ended between the two calls)
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log, for an error message."""
    try:
        text = path.read_text("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.rstrip().splitlines()[-lines:]) or "(empty log)"
