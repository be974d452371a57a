"""Timers across real processes, on the real clock with short timers: two processes on one store
never fire a timer twice, a process killed while firing leaves the rest to another, and a timer
that falls due while the store is down fires once it is back."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from convoflow import Incoming, ManualClock, Reply, SessionKey, dialog, send_message, sleep
from convoflow.turns import Engine
from convoflow.scheduler import Scheduler
from convoflow.stores import open_store

from tests.support.convoflow_process import clean_environment, ROOT
from tests.support.mongo_server import MongoServer, start_mongo_server
from tests.support.timer_process import seed

HANG_GUARD = 120.0


def sends(path: Path) -> dict[int, int]:
    """How many times each session's reply was sent, over the files of every process."""
    counted: dict[int, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            n = int(line.split()[0])
            counted[n] = counted.get(n, 0) + 1
    return counted


async def firing(url: str, out: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.timer_process", url, str(out), cwd=ROOT, env=clean_environment())


async def until(condition: Any, seconds: float = HANG_GUARD) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        await asyncio.sleep(0.1)


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        await process.wait()


@pytest.fixture(params=["sqlite", "mongo"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'timers.db'}"
    server: MongoServer = request.getfixturevalue("mongo_server")
    return server.uri_for(f"timers_{os.getpid()}_{time.monotonic_ns()}")


async def test_two_processes_on_one_store_fire_each_timer_once(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url)
    count = 200
    soon = time.time() + 3
    await seed(store, [soon + n / count for n in range(count)])  # all due within one second
    await store.close()
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    processes = [await firing(store_url, first), await firing(store_url, second)]
    try:
        await until(lambda: len(sends(first)) + len(sends(second)) >= count)
        await asyncio.sleep(2)  # time for a second firing, were there one
    finally:
        for process in processes:
            await stop(process)
    by_first, by_second = sends(first), sends(second)
    assert sorted([*by_first, *by_second]) == list(range(count))  # each session once, by one of them
    assert set(by_first.values()) | set(by_second.values()) == {1}


async def test_a_process_killed_while_firing_leaves_the_rest_to_another(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url)
    count = 300
    soon = time.time() + 3
    await seed(store, [soon + n / count for n in range(count)])
    await store.close()
    killed, survivor = tmp_path / "killed.txt", tmp_path / "survivor.txt"
    doomed = await firing(store_url, killed)
    await until(lambda: len(sends(killed)) >= 20)
    doomed.send_signal(signal.SIGKILL)  # mid-firing: some timers committed, some of those not sent yet
    await doomed.wait()
    fired_before = sends(killed)
    assert len(fired_before) < count, "the process fired everything before it was killed: nothing was left"
    other = await firing(store_url, survivor)
    try:
        await until(lambda: set(sends(killed)) | set(sends(survivor)) == set(range(count)))
        await asyncio.sleep(2)
    finally:
        await stop(other)
    by_survivor = sends(survivor)
    assert set(by_survivor.values()) == {1}
    # A reply goes out twice only when its process died between sending it and marking it sent
    # (the survivor takes over replies left undelivered); those were at most the turns in flight.
    twice = set(fired_before) & set(by_survivor)
    assert len(twice) <= 32


# --- a store outage ---------------------------------------------------------------------------------


@dialog()
def brief_nap() -> Any:
    yield send_message("napping")
    yield sleep(60)
    yield send_message("awake")


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[MongoServer]:
    """A server of this test's own that it may stop and restart; its data is kept on disk."""
    server = start_mongo_server(storage_path=tmp_path / "data", log_dir=tmp_path)
    yield server
    server.stop()


async def test_a_timer_due_while_the_store_is_down_fires_once_it_is_back(
    own_server: MongoServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(own_server.uri_for("outage", timeoutMS="1500", serverSelectionTimeoutMS="1000"))
    clock = ManualClock()
    engine = Engine(brief_nap, store, clock=clock)
    said: list[str] = []

    async def deliver(reply: Reply) -> None:
        said.append(getattr(reply.message, "text", ""))

    key = SessionKey("test:outage", engine.app)
    await engine.handle(Incoming(key, "u1", text="hi"), deliver)
    scheduler = Scheduler(engine, deliver, poll_seconds=0.1)
    running = asyncio.create_task(scheduler.run())
    try:
        own_server.stop()
        clock.advance(60)  # the timer falls due during the outage
        with caplog.at_level(logging.WARNING, logger="convoflow.scheduler"):
            await until(lambda: "could not look for due timers" in caplog.text)
        assert said == ["napping"]
        own_server.restart()
        await until(lambda: "awake" in said)
        await asyncio.sleep(0.5)
        assert said == ["napping", "awake"]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await store.close()


# --- `convoflow run` processes against the fake Telegram ----------------------------------------------

SLEEPER_BOT = '''
from convoflow import dialog, send_message, sleep

@dialog()
def main():
    yield send_message("Sleeping.")
    yield sleep(2)
    yield send_message("Woke up.")
'''
CHATS = 40
TELEGRAM_SECRET = "timers-Webhook_secret"


def telegram_process(name: str, telegram: Any, store_url: str, bot: Path, log_dir: Path) -> Any:
    from tests.support.convoflow_process import ConvoflowProcess
    from tests.support.fake_telegram import TOKEN

    return ConvoflowProcess(log_dir / f"{name}.log", str(bot), "--channel", "telegram", settings={
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": telegram.url_for(name), "CONVOFLOW_STORE": store_url,
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.org/telegram/webhook", "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET})


async def post_start(process: Any, chat_id: int) -> None:
    import json

    import aiohttp

    from convoflow.adapters.telegram.channel import SECRET_HEADER, WEBHOOK_PATH
    from tests.support.fake_telegram import message, private_chat

    body = json.dumps(message(private_chat(chat_id), text="/start"))
    async with aiohttp.ClientSession() as http:
        async with http.post(process.url + WEBHOOK_PATH, data=body,
                             headers={SECRET_HEADER: TELEGRAM_SECRET, "Content-Type": "application/json"}) as response:
            assert response.status == 200


def woken(telegram: Any) -> dict[int, list[str]]:
    """Who sent each chat its "Woke up." (the origin of each send)."""
    found: dict[int, list[str]] = {}
    for call in telegram.sent():
        if call.text == "Woke up.":
            found.setdefault(call.chat_id, []).append(call.origin)
    return found


@pytest.mark.parametrize("kill_one", [False, True], ids=["both-running", "one-sigkilled"])
async def test_convoflow_run_processes_on_one_store_send_each_timer_once(
    telegram: Any, tmp_path: Path, kill_one: bool
) -> None:
    bot = tmp_path / "sleeper.py"
    bot.write_text(SLEEPER_BOT)
    store_url = f"sqlite:///{tmp_path / 'bots.db'}"
    first, second = (telegram_process(name, telegram, store_url, bot, tmp_path) for name in ("p0", "p1"))
    await asyncio.gather(first.start(), second.start())
    try:
        # every chat starts its conversation on one of the two: each turn sets a timer in the store
        await asyncio.gather(*(post_start(first if n % 2 else second, 1000 + n) for n in range(CHATS)))
        if kill_one:
            first.signal(signal.SIGKILL)  # its sessions' timers fall due after it is gone
            await first.wait()
        await until(lambda: len(woken(telegram)) == CHATS)
        await asyncio.sleep(2)  # a second send, were there one, would have come by now
    finally:
        for process in (first, second):
            await process.kill()
    sends = woken(telegram)
    assert sorted(sends) == [1000 + n for n in range(CHATS)]
    assert all(len(origins) == 1 for origins in sends.values()), sends
    if kill_one:
        assert {origin for origins in sends.values() for origin in origins} == {"p1"}
