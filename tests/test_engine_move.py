"""Engine.move: a session continues under a new key (a Telegram group that became a supergroup)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from convoflow import Incoming, Reply, SessionKey, Text, ask, dialog, send_message
from convoflow.turns import Engine
from convoflow.stores import Store

from tests.support.store_backends import STORE_BACKENDS, open_backend

OLD = SessionKey("telegram:7:-100:42", "form")
NEW = SessionKey("telegram:7:-1009:42", "form")


@dialog()
def form() -> Any:
    name = yield ask("Your name?")
    city = yield ask("Your city?")
    yield send_message(f"{name} from {city}")


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    opened: Store = await open_backend(request.param, tmp_path, request)
    yield opened
    await opened.close()


async def say(engine: Engine, key: SessionKey, text: str, update: str, sent: list[Reply] | None = None) -> list[str]:
    async def deliver(reply: Reply) -> None:
        if sent is not None:
            sent.append(reply)

    replies = await engine.handle(Incoming(key, update, text=text, address={"chat_id": key.partition}), deliver)
    return [r.message.text for r in replies if isinstance(r.message, Text)]


async def test_a_moved_session_continues_under_the_new_key_and_the_old_one_ends(store: Store) -> None:
    engine = Engine(form, store)
    assert await say(engine, OLD, "/start", "u1") == ["Your name?"]
    assert await say(engine, OLD, "Ann", "u2") == ["Your city?"]

    assert await engine.move(OLD, NEW, {"chat_id": -1009}) is True

    moved = await store.load(NEW)
    assert moved is not None and moved.address == {"chat_id": -1009} and moved.seen[-1] == "u2"
    assert await say(engine, NEW, "Oslo", "u3") == ["Ann from Oslo"]
    old = await store.load(OLD)
    assert old is not None and old.state is None and old.outbox == ()
    assert await engine.move(OLD, NEW, {"chat_id": -1009}) is False  # nothing left to move


async def test_the_outbox_moves_readdressed(store: Store) -> None:
    engine = Engine(form, store)

    async def failing(reply: Reply) -> None:
        raise ConnectionError("chat unreachable")

    with pytest.raises(Exception):
        await engine.handle(Incoming(OLD, "u1", text="/start", address={"chat_id": -100}), failing)
    assert await engine.move(OLD, NEW, {"chat_id": -1009}) is True
    delivered: list[Reply] = []
    await engine.resume(NEW, lambda reply: _append(delivered, reply))
    assert [(r.message, r.address) for r in delivered] == [(Text("Your name?"), {"chat_id": -1009})]


async def _append(into: list[Reply], reply: Reply) -> None:
    into.append(reply)


async def test_an_existing_session_at_the_new_key_is_never_overwritten(store: Store) -> None:
    engine = Engine(form, store)
    await say(engine, OLD, "/start", "u1")
    await say(engine, NEW, "/start", "n1")
    await say(engine, NEW, "Bo", "n2")
    before = await store.load(NEW)
    assert await engine.move(OLD, NEW, {"chat_id": -1009}) is False
    assert await store.load(NEW) == before
    assert (await store.load(OLD)).state is not None  # type: ignore[union-attr]


async def test_moving_an_unknown_session_does_nothing(store: Store) -> None:
    engine = Engine(form, store)
    assert await engine.move(OLD, NEW, {}) is False
    assert await store.load(NEW) is None
