"""Replies are sent once even when the store falters after a send, or a send is slow: a worker
remembers what it has sent and retries marking it until the store takes it; a worker still
delivering renews its lease, so another takes its replies over only once it has stopped."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from convoflow import Incoming, Reply, SessionKey, Text, dialog, get_client_response, send_message
from convoflow.adapters.host.metrics import Takeovers
from convoflow.stores import StoreError
from convoflow.stores.sqlite import SQLiteStore
from convoflow.turns import Engine
from tests.support.fake_telegram import BOT_ID, message, private_chat
from tests.support.telegram_harness import start_bot

KEY = SessionKey("test:1", "echo")


@dialog()
def echo() -> Any:
    while True:
        said = yield get_client_response()
        yield send_message(f"echo {said}")


class MarkFailing(SQLiteStore):
    """A real SQLite store whose next `failing` marks of replies delivered fail, as with a disk
    that is full or a file another writer holds locked past the timeout."""

    failing = 0
    refused = 0

    async def mark_delivered(self, key: SessionKey, revision: int, through_seq: int) -> bool:
        if self.failing:
            self.failing -= 1
            self.refused += 1
            raise StoreError("database or disk is full")
        return await super().mark_delivered(key, revision, through_seq)


async def test_a_reply_sent_before_its_mark_failed_is_not_sent_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "randint", lambda low, high: 7)
    store = MarkFailing(tmp_path / "bot.db")
    bot = await start_bot("bots/guessbot.py", store=store)
    try:
        store.failing = 4
        start = message(private_chat(42), text="/start")
        assert await bot.post(start, settle=False) == 200  # committed
        await bot.fake.wait_for(lambda: len(bot.fake.texts(42)) == 2)
        assert await bot.post(start, settle=False) == 200  # Telegram's redelivery, while the mark still fails
        await bot.runner.drain()
        assert store.refused == 4 and store.failing == 0
        assert bot.fake.texts(42) == ["Guess a number between 1 and 10.", "Your guess?"]  # each once
        key = SessionKey(f"telegram:{BOT_ID}:42", "guessbot")
        session = await store.load(key)
        assert session is not None and session.outbox == ()  # the mark landed once the store took it
        assert await bot.post(start) == 200  # a later redelivery sends nothing either
        assert await bot.post(message(private_chat(42), text="5")) == 200  # and the conversation goes on
        assert bot.fake.texts(42) == ["Guess a number between 1 and 10.", "Your guess?", "Higher!", "Your guess?"]
    finally:
        await bot.close()


class Slow:
    """A channel's send that can be held (a flood limit waited out), recording what went out."""

    def __init__(self, name: str, sent: list[tuple[str, str]]) -> None:
        self.name, self.sent = name, sent
        self.hold: asyncio.Event | None = None

    async def __call__(self, reply: Reply) -> None:
        if self.hold is not None:
            await self.hold.wait()
        assert isinstance(reply.message, Text)
        self.sent.append((self.name, reply.message.text))


async def test_a_slow_reply_is_not_taken_over_by_another_replica(tmp_path: Path) -> None:
    handoff = 0.3
    a = Engine(echo, SQLiteStore(tmp_path / "bot.db"), handoff_seconds=handoff)
    b = Engine(echo, SQLiteStore(tmp_path / "bot.db"), handoff_seconds=handoff)
    sent: list[tuple[str, str]] = []
    try:
        await a.handle(Incoming(KEY, "u0", text="hi"), Slow("a", sent))
        slow = Slow("a", sent)
        slow.hold = asyncio.Event()
        first = asyncio.create_task(a.handle(Incoming(KEY, "u1", text="first"), slow))
        while not (session := await b.store.load(KEY)) or not session.outbox:
            await asyncio.sleep(0.01)
        await asyncio.sleep(handoff * 2)  # "echo first" is older than the handoff time, and still on its way
        second = asyncio.create_task(b.handle(Incoming(KEY, "u2", text="second"), Slow("b", sent)))
        await asyncio.sleep(handoff * 3)  # b goes on waiting for it: a renews its lease
        assert sent == []
        slow.hold.set()
        await asyncio.gather(first, second)
        assert sent == [("a", "echo first"), ("b", "echo second")]  # each once, in order
        assert a.delivery.takeovers == b.delivery.takeovers == 0
        final = await a.store.load(KEY)
        assert final is not None and final.outbox == ()
    finally:
        await a.store.close()
        await b.store.close()


async def test_replies_of_a_worker_that_stopped_renewing_are_taken_over_and_counted(tmp_path: Path) -> None:
    a = Engine(echo, SQLiteStore(tmp_path / "bot.db"), handoff_seconds=0.2)
    b = Engine(echo, SQLiteStore(tmp_path / "bot.db"), handoff_seconds=0.2)
    registry = CollectorRegistry()
    registry.register(Takeovers(b))
    sent: list[tuple[str, str]] = []
    try:
        await a.handle(Incoming(KEY, "u0", text="hi"), Slow("a", sent))
        slow = Slow("a", sent)
        slow.hold = asyncio.Event()
        first = asyncio.create_task(a.handle(Incoming(KEY, "u1", text="first"), slow))
        while not (session := await b.store.load(KEY)) or not session.outbox:
            await asyncio.sleep(0.01)
        first.cancel()  # a dies with "echo first" undelivered: nothing renews its lease
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.sleep(0.3)
        await b.handle(Incoming(KEY, "u2", text="second"), Slow("b", sent))
        assert sent == [("b", "echo first"), ("b", "echo second")]
        assert registry.get_sample_value("convoflow_reply_takeovers_total") == 1
    finally:
        await a.store.close()
        await b.store.close()
