"""`convoflow run ...` as a child process, the way an operator runs it: settings from the
environment, output to a log file, readiness polled on `/healthz?ready=1`, stopped with signals."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.mongo_server import free_port

ROOT = Path(__file__).resolve().parents[2]
SETTING_PREFIXES = ("TELEGRAM_", "SLACK_", "CONVOFLOW_")
READY_SECONDS = 90.0
"""How long a process may take to become ready on a busy two-core machine."""


def clean_environment(**settings: str) -> dict[str, str]:
    """This environment without any convoflow setting, plus `settings`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(SETTING_PREFIXES) and k not in ("MONGODB_URI", "PORT")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(settings)
    return env


class ConvoflowProcess:
    """`convoflow run BOT ARGS...` listening on its own loopback port."""

    def __init__(self, log_path: Path, *args: str, settings: dict[str, str] | None = None) -> None:
        self.args = args
        self.settings = settings or {}
        self.log_path = log_path
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> ConvoflowProcess:
        await self.launch()
        await self.wait_ready()
        return self

    async def launch(self) -> None:
        """Start the process without waiting for it to be ready."""
        with open(self.log_path, "ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "convoflow.adapters.host.cli", "run", *self.args, "--host", "127.0.0.1",
                cwd=ROOT, env=clean_environment(**{**self.settings, "PORT": str(self.port)}),
                stdout=log, stderr=asyncio.subprocess.STDOUT,
            )

    async def wait_ready(self) -> dict[str, Any]:
        """The body of the first 200 answer of `/healthz?ready=1`."""
        assert self.process is not None
        deadline = asyncio.get_running_loop().time() + READY_SECONDS
        async with aiohttp.ClientSession() as http:
            while asyncio.get_running_loop().time() < deadline:
                if self.process.returncode is not None:
                    raise AssertionError(f"convoflow exited with {self.process.returncode}:\n{self.log()}")
                try:
                    async with http.get(f"{self.url}/healthz?ready=1") as response:
                        if response.status == 200:
                            found: dict[str, Any] = await response.json()
                            return found
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"convoflow did not become ready in {READY_SECONDS:g} s:\n{self.log()}")

    def signal(self, number: signal.Signals) -> None:
        assert self.process is not None and self.process.returncode is None
        self.process.send_signal(number)

    async def stop(self, timeout: float = 40.0) -> int:
        """SIGTERM, then wait for the exit; returns the exit code."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await self.wait(timeout)

    async def wait(self, timeout: float = 40.0) -> int:
        assert self.process is not None
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"convoflow did not exit within {timeout:g} s:\n{self.log()[-3000:]}") from None

    async def kill(self) -> None:
        """Stop the process by its pid whatever state it is in (test clean-up)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


async def convoflow_command(*args: str, **settings: str) -> tuple[int, str, str]:
    """Run a short `convoflow ...` command; returns exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "convoflow.adapters.host.cli", *args, cwd=ROOT, env=clean_environment(**settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
