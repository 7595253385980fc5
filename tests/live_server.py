"""Serve the app with real gunicorn worker processes for tests that need real concurrency.

The in-process test client runs one request at a time; races, locks and crashes only show
with separate processes. ``live_server`` starts gunicorn (``wsgi:app`` by default) on a free
loopback port against a given ``DATABASE_URL``, waits until ``/api/v1/health`` answers, and
stops it on exit. The server runs in a process group of its own, so ``kill()`` can crash the
master and every worker at once (SIGKILL, no cleanup) and nothing else is touched.

    with live_server(database_url, tmp_path / "srv", workers=4) as server:
        requests.post(f"{server.api}/participants", json=..., headers=...)

The environment is built from scratch for the server: the database, an instance directory,
the test configuration's secrets (so data written by the test app stays readable) and cheap
password hashing; ``env`` adds or overrides variables.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from config import PROJECT_ROOT, TestConfig

LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
BOOTED = re.compile(r"Booting worker with pid: (\d+)")
# Variables of the calling environment the server inherits; everything else is set explicitly.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")


class ServerFailed(RuntimeError):
    """The server did not come up (or died); the message carries the end of its log."""


@dataclass
class LiveServer:
    process: subprocess.Popen
    port: int
    log_path: Path
    instance_path: Path
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"

    @property
    def pid(self) -> int:
        """The gunicorn master's pid (also the id of the server's process group)."""
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def worker_pids(self) -> list[int]:
        """Pids of the live workers (children of the master), read from /proc."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Field 4 is the parent pid; the command name (field 2) may hold spaces.
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == self.pid:
                pids.append(int(entry.name))
        return sorted(pids)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """Crash the server: SIGKILL to the master and all workers at once."""
        if self.is_running():
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)
        self.stopped = True

    def stop(self, timeout: float = 15.0) -> None:
        """Shut down gracefully (SIGTERM: workers finish their requests), else kill."""
        if self.stopped:
            return
        if self.is_running():
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.process.wait(timeout=timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                self.kill()
        # Workers orphaned by a master that died first must not outlive the test.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.stopped = True


def server_environment(
    database_url: str, instance_path: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = {name: os.environ[name] for name in INHERITED if name in os.environ}
    env.update(
        {
            "DATABASE_URL": database_url,
            "TRIAL_INSTANCE_DIR": str(instance_path),
            "SECRET_KEY": TestConfig.SECRET_KEY,
            "ARM_KEY": TestConfig.ARM_KEY,
            "ARGON2_TIME_COST": str(TestConfig.ARGON2_TIME_COST),
            "ARGON2_MEMORY_COST_KIB": str(TestConfig.ARGON2_MEMORY_COST_KIB),
            "ARGON2_PARALLELISM": str(TestConfig.ARGON2_PARALLELISM),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def _wait_until_ready(server: LiveServer, workers: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.is_running():
            raise ServerFailed(
                f"gunicorn exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        log = server.log()
        if not server.port:
            match = LISTENING.search(log)
            if match:
                server.port = int(match.group(1))
        if server.port and len(set(BOOTED.findall(log))) >= workers:
            try:
                if requests.get(f"{server.api}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
        time.sleep(0.1)
    raise ServerFailed(f"gunicorn not healthy after {timeout:.0f}s:\n{server.log_tail()}")


@contextmanager
def live_server(
    database_url: str,
    instance_path: Path | str,
    *,
    workers: int = 4,
    env: dict[str, str] | None = None,
    app: str = "wsgi:app",
    port: int = 0,
    timeout: float = 60.0,
    gunicorn_args: tuple[str, ...] = (),
) -> Iterator[LiveServer]:
    """Run gunicorn with ``workers`` processes on 127.0.0.1 until the block ends.

    ``app`` is a gunicorn app spec run from the project root (``module:factory()`` works, for
    a test-only app); ``port=0`` picks a free port; ``gunicorn_args`` are passed through.
    """
    instance_path = Path(instance_path)
    instance_path.mkdir(parents=True, exist_ok=True)
    log_path = instance_path / f"gunicorn-{time.time_ns()}.log"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--chdir",
        str(PROJECT_ROOT),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--graceful-timeout",
        "10",
        "--access-logfile",
        "-",
        *gunicorn_args,
        app,
    ]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=server_environment(database_url, instance_path, env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() reaches only its processes
        )
    server = LiveServer(process=process, port=port, log_path=log_path, instance_path=instance_path)
    try:
        _wait_until_ready(server, workers, timeout)
        yield server
    finally:
        server.stop()
