"""Every time and event primitive on every channel: the console, and Telegram and Slack against
their fakes, with a manual clock and the Scheduler the host runs (replies routed by their
address to the channel); and `convoflow run` on the console with a short real timer."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from convoflow import ManualClock, SessionKey
from convoflow.adapters.console.channel import ConsoleChannel
from convoflow.adapters.host.serve import scheduler_for
from convoflow.turn_runner import TurnRunner
from convoflow.turns import Engine
from convoflow.stores import MemoryStore

from tests.support.convoflow_process import ROOT, clean_environment
from tests.support.fake_slack import FakeSlack
from tests.support.fake_telegram import message, private_chat
from tests.support.slack_harness import running_slack
from tests.support.slack_payloads import dm
from tests.support.telegram_harness import start_bot
from tests.support.timed_tour import play_tour, tour

WAIT = 30.0


async def until(condition: Any, seconds: float = WAIT) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        await asyncio.sleep(0.01)


class Lines(io.StringIO):
    """A console's output, read as the lines the bot said since the last look."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def said(self) -> list[str]:
        lines = [line.removeprefix("bot> ") for line in self.getvalue().splitlines()[self.seen:]]
        self.seen += len(lines)
        return [line for line in lines if not line.startswith("you> ")]


async def test_the_tour_on_the_console() -> None:
    clock = ManualClock()
    engine = Engine(tour, MemoryStore(), clock=clock)
    read, write = os.pipe()
    out = Lines()
    with os.fdopen(read) as stdin:
        console = ConsoleChannel(TurnRunner(engine), session="tour", stdin=stdin, stdout=out)
        scheduler = scheduler_for(engine, [console], only=console.key)
        chat = asyncio.create_task(console.run())

        async def settled() -> list[str]:
            await console.runner.drain()
            await asyncio.sleep(0.05)
            return out.said()

        async def say(text: str) -> list[str]:
            before = len(out.getvalue())
            os.write(write, f"{text}\n".encode())
            await until(lambda: len(out.getvalue()) > before)  # echoed, then answered
            return await settled()

        async def advance(seconds: float) -> list[str]:
            clock.advance(seconds)
            await scheduler.fire_due()
            return await settled()

        async def signal(key: str, name: str, data: Any, event_id: str) -> list[str]:
            await engine.signal(SessionKey.parse(key), name, data, event_id, deliver=console.send)
            return await settled()

        await until(lambda: "Your key" in out.getvalue())
        await play_tour(out.said(), say, advance, signal)
        os.close(write)
        await asyncio.wait_for(chat, WAIT)


async def test_the_tour_on_telegram() -> None:
    clock = ManualClock()
    bot = await start_bot(tour, clock=clock)
    try:
        scheduler = scheduler_for(bot.engine, [bot.channel])
        chat = private_chat(4242)
        seen = 0

        def said() -> list[str]:
            nonlocal seen
            texts = [text or "" for text in bot.fake.texts(4242)]
            new, seen = texts[seen:], len(texts)
            return new

        async def settled() -> list[str]:
            await bot.runner.drain()
            await asyncio.sleep(0.05)
            return said()

        async def say(text: str) -> list[str]:
            assert await bot.post(message(chat, text=text)) == 200
            return await settled()

        async def advance(seconds: float) -> list[str]:
            clock.advance(seconds)
            await scheduler.fire_due()
            return await settled()

        async def signal(key: str, name: str, data: Any, event_id: str) -> list[str]:
            await bot.engine.signal(SessionKey.parse(key), name, data, event_id, deliver=bot.channel.send)
            return await settled()

        await play_tour(await say("/start"), say, advance, signal)
    finally:
        await bot.close()


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    slack = await FakeSlack().start()
    yield slack
    await slack.close()


async def test_the_tour_on_slack(fake_slack: FakeSlack) -> None:
    clock = ManualClock()
    engine = Engine(tour, MemoryStore(), clock=clock)
    async with running_slack(engine, fake_slack) as app:
        scheduler = scheduler_for(engine, [app.channel])
        seen = 0

        def said() -> list[str]:
            nonlocal seen
            texts = [call.params.get("text", "") for call in fake_slack.posts(channel="D111")]
            new, seen = texts[seen:], len(texts)
            return new

        async def settled() -> list[str]:
            await app.channel.runner.drain()
            await asyncio.sleep(0.05)
            return said()

        async def say(text: str) -> list[str]:
            assert (await app.send(dm(text))).status == 200
            return await settled()

        async def advance(seconds: float) -> list[str]:
            clock.advance(seconds)
            await scheduler.fire_due()
            return await settled()

        async def signal(key: str, name: str, data: Any, event_id: str) -> list[str]:
            await engine.signal(SessionKey.parse(key), name, data, event_id, deliver=app.channel.send)
            return await settled()

        await play_tour(await say("hi"), say, advance, signal)


SHORT_NAP = '''
from convoflow import ask, dialog, send_message, sleep

@dialog()
def main():
    yield send_message("Napping a moment.")
    yield sleep(0.5)
    yield send_message("Awake!")
    name = yield ask("Your name?", timeout=60, remind_after=[0.4], reminder="Still there?")
    yield send_message(f"Hi {name}")
'''


async def test_a_timer_message_appears_while_the_console_waits_for_input(tmp_path: Path) -> None:
    bot = tmp_path / "napper.py"
    bot.write_text(SHORT_NAP)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "convoflow.adapters.host.cli", "run", str(bot), "--store", f"sqlite:///{tmp_path / 'c.db'}",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT, env=clean_environment())
    assert process.stdin is not None and process.stdout is not None
    lines: list[str] = []

    async def next_line() -> str:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), WAIT)).decode().rstrip("\n")
        lines.append(line)
        return line

    try:
        assert await next_line() == "bot> Napping a moment."
        # nothing typed: the sleep ends, the question and its reminder come while input is awaited
        assert await next_line() == "bot> Awake!"
        assert await next_line() == "bot> Your name?"
        assert await next_line() == "bot> Still there?"
        process.stdin.write(b"Ada\n")
        await process.stdin.drain()
        assert await next_line() == "you> Ada"
        assert await next_line() == "bot> Hi Ada"
    finally:
        process.stdin.close()
        await asyncio.wait_for(process.wait(), WAIT)
    assert process.returncode == 0, lines
