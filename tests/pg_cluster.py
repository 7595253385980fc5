"""A throwaway PostgreSQL cluster for tests that must crash the database server itself.

``PgCluster`` runs ``initdb`` into a fresh temporary directory and ``pg_ctl start`` on a free
port, listening on 127.0.0.1 only (no Unix socket), so the shared
server on 127.0.0.1:5432 is never touched. ``crash()`` SIGKILLs the postmaster's whole
process group at once (``pg_ctl`` makes the postmaster a session leader and every backend,
the WAL writer and the checkpointer are its children in that group): shared memory, and with
it any WAL not yet written to the kernel, is gone, as in a power cut for everything PostgreSQL
has not handed to the OS. ``start()`` afterwards runs crash recovery.

initdb refuses to run as root, so as root the cluster runs as the ``postgres`` OS user
(``runuser``); as anyone else it runs as that user. ``find_pg_bin()`` returns None when the
server binaries are not installed, for tests to skip on.

    with PgCluster(settings={"synchronous_commit": "off"}) as cluster:
        url = cluster.create_database("trial")
        cluster.crash(); cluster.start()
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")


def find_pg_bin() -> Path | None:
    """The newest PostgreSQL server bin directory (``$PG_BIN`` first), or None."""
    candidates = [os.environ["PG_BIN"]] if os.environ.get("PG_BIN") else []

    def major(directory: str) -> int:
        name = Path(directory).parent.name
        return int(name) if name.isdigit() else 0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True)
    for directory in candidates:
        if all((Path(directory) / program).is_file() for program in SERVER_PROGRAMS):
            return Path(directory)
    return None


def unavailable_reason() -> str | None:
    """Why a throwaway cluster cannot be started here, or None if it can."""
    if find_pg_bin() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' OS user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is not available"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _process_group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process in the group? PID 1 here does not reap, so zombies stay."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            return True
    return False


class PgCluster:
    def __init__(self, settings: dict[str, str] | None = None, superuser: str = "postgres"):
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self.bin = find_pg_bin()
        self.settings = dict(settings or {})
        self.superuser = superuser
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="trial-pg-"))
        self.data = self.base / "data"
        self.log_path = self.base / "server.log"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.base, "postgres", "postgres")
        self.crashes = 0
        self.started = False

    # --- running programs as the cluster's owner ----------------------------------------

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bin / program), *args]
        return ["runuser", "-u", "postgres", "--", *command] if self.as_root else command

    def _run(self, program: str, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            self._command(program, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.base,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{self.log_tail()}"
            )
        return result.stdout

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # --- lifecycle ---------------------------------------------------------------------

    def init(self) -> None:
        # --no-sync only skips syncing initdb's own files; the tests crash processes, not the
        # machine, and the server's own fsync/commit settings are what is under test.
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "''",  # TCP on 127.0.0.1 only: no socket lock file
            "shared_buffers": "'64MB'",
            "max_connections": "60",
            "logging_collector": "off",
            **{name: self._quote(value) for name, value in self.settings.items()},
        }
        with open(self.data / "postgresql.conf", "a") as handle:
            handle.write("\n# throwaway test cluster\n")
            for name, value in conf.items():
                handle.write(f"{name} = {value}\n")

    @staticmethod
    def _quote(value: str) -> str:
        return value if value.replace(".", "").isdigit() else f"'{value}'"

    def start(self, timeout: int = 60) -> None:
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(timeout),
            timeout=timeout + 30,
        )
        self.started = True

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def crash(self) -> None:
        """SIGKILL the postmaster and all its children at once; wait until all are gone."""
        pid = self.postmaster_pid()
        if pid is None:
            raise RuntimeError("no postmaster to crash")
        if os.getpgid(pid) != pid:
            raise RuntimeError(f"postmaster {pid} does not lead its process group")
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _process_group_alive(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of postmaster {pid} survived SIGKILL")
            time.sleep(0.02)
        # The dead postmaster stays a zombie where PID 1 does not reap orphans, and PostgreSQL
        # takes a zombie's pid in postmaster.pid for a running server. Every process of the
        # cluster is gone (checked above), so the lock file is stale: remove it, as an
        # operator would after a crash.
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        self.crashes += 1
        self.started = False

    def stop(self) -> None:
        if not self.started:
            return
        try:
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        except RuntimeError:
            pid = self.postmaster_pid()
            if pid:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.started = False

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        try:
            self.init()
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # --- databases ---------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def show(self, setting: str, database: str = "postgres") -> str:
        engine = create_engine(self.url(database), poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return connection.execute(text(f"SHOW {setting}")).scalar_one()
        finally:
            engine.dispose()
