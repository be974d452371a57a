"""A MongoDB wire-protocol server for tests: SecantusDB started on a free loopback port, or the
server `MONGODB_URI` names (so the same suite runs against a real mongod)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymongo

SERVER_COMMAND = "secantusd-py"
START_SECONDS = 30.0


class MongoServerUnavailable(RuntimeError):
    """The test server could not be started or reached: Mongo tests fail with this, never skip."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MongoServer:
    """A running server. `uri` has no database path; add one per test for isolation."""

    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    external_uri: str | None = None
    storage_path: Path | None = None
    """Where the server keeps its data (None: in memory, lost on stop)."""

    @property
    def uri(self) -> str:
        if self.external_uri is not None:
            return self.external_uri
        return f"mongodb://{self.host}:{self.port}/?retryWrites=false&directConnection=true"

    def uri_for(self, database: str, **options: str) -> str:
        """The server's URI naming `database`, with extra query options."""
        base, _, query = self.uri.partition("?")
        base = base.rstrip("/")
        if base.count("/") > 2:  # an external URI that already names a database: replace it
            base = base.rsplit("/", 1)[0]
        extra = "&".join(f"{k}={v}" for k, v in options.items())
        query = "&".join(part for part in (query, extra) if part)
        return f"{base}/{database}" + (f"?{query}" if query else "")

    def stop(self) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> None:
        """Start again on the same port and storage (an in-memory server comes back empty)."""
        self.stop()
        started = start_mongo_server(self.port, storage_path=self.storage_path)
        self.process, self.log_path = started.process, started.log_path


def _command() -> list[str]:
    beside_python = Path(sys.executable).with_name(SERVER_COMMAND)
    if beside_python.exists():
        return [str(beside_python)]
    found = shutil.which(SERVER_COMMAND)
    if found is None:
        raise MongoServerUnavailable(
            f"{SERVER_COMMAND} is not installed: install the test extras (pip install -e '.[test]', "
            "which pins SecantusDB) or set MONGODB_URI to a running MongoDB"
        )
    return [found]


def start_mongo_server(
    port: int | None = None, log_dir: Path | None = None, storage_path: Path | None = None
) -> MongoServer:
    """Start SecantusDB on `port` (a free one by default) and wait until it answers. Its data is
    kept in memory, or in the directory `storage_path` (kept across restarts)."""
    port = port or free_port()
    log_path = (log_dir or Path(os.environ.get("TMPDIR", "/tmp"))) / f"secantusd-{port}.log"
    log_file = open(log_path, "wb")
    process = subprocess.Popen(
        [*_command(), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage_path or ":memory:")],
        stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log_file.close()
    server = MongoServer("127.0.0.1", port, process, log_path, storage_path=storage_path)
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            raise MongoServerUnavailable(
                f"{SERVER_COMMAND} exited with code {process.returncode} on start:\n{log_path.read_text()[-2000:]}"
            )
        try:
            _ping(server.uri, 0.5)
            return server
        except pymongo.errors.PyMongoError:
            if time.monotonic() > deadline:
                server.stop()
                raise MongoServerUnavailable(
                    f"{SERVER_COMMAND} did not answer on port {port} within {START_SECONDS:g} s:\n"
                    f"{log_path.read_text()[-2000:]}"
                ) from None
            time.sleep(0.1)


def _ping(uri: str, seconds: float) -> None:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=int(seconds * 1000))
    with client:
        client.admin.command("ping")


def mongo_server_from_environment() -> MongoServer:
    """The server of `MONGODB_URI` when set, else a SecantusDB started for this test run."""
    uri = os.environ.get("MONGODB_URI")
    if uri:
        try:
            _ping(uri, 5.0)
        except pymongo.errors.PyMongoError as error:
            raise MongoServerUnavailable(f"MONGODB_URI={uri!r} does not answer: {error}") from error
        return MongoServer("", 0, external_uri=uri)
    return start_mongo_server()
