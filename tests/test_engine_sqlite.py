"""The Engine on the SQLite store: a conversation resumes where it was after a restart."""

from __future__ import annotations

from itertools import count
from pathlib import Path
from typing import Any

import pytest

from convoflow import Incoming, Reply, SessionKey, Text, ask, dialog, send_message
from convoflow.delivery import DeliveryFailed
from convoflow.turns import Engine
from convoflow.stores import open_store

KEY = SessionKey("console:ada", "pizza")
draws: list[int] = []


@dialog()
def order_number() -> int:
    """A side effect: recorded on its first run, replayed (not re-run) afterwards."""
    draws.append(1)
    return 4711


@dialog(version="1.0")
def pizza() -> Any:
    yield send_message("Welcome to Pizza Bot.")
    name = yield ask("Your name?")
    number = yield order_number()
    size = yield ask("Which size?", choices=["small", "large"])
    how_many = yield ask("How many?", parse=int, retry="Numbers only, please.")
    yield send_message(f"{name}: {how_many} {size} pizza(s), order #{number}.")
    yield ask("Anything else?")


class Chat:
    """One user typing to one Engine, collecting what it delivers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ids = count(1)

    async def say(self, text: str, update_id: str | None = None) -> list[str]:
        incoming = Incoming(KEY, update_id or f"u{next(self.ids)}", text=text, address={"chat": "ada"})
        return texts(await self.engine.handle(incoming, self.deliver))

    async def deliver(self, reply: Reply) -> None:
        pass


def texts(replies: list[Reply]) -> list[str]:
    return [r.message.text for r in replies if isinstance(r.message, Text)]


@pytest.fixture(autouse=True)
def fresh_draws() -> None:
    draws.clear()


async def test_a_new_engine_on_the_same_file_continues_the_conversation(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"

    store = open_store(url)
    chat = Chat(Engine(pizza, store))
    assert await chat.say("hi") == ["Welcome to Pizza Bot.", "Your name?"]
    assert await chat.say("Ada") == ["Which size?"]
    assert await chat.say("large") == ["How many?"]
    await store.close()  # the process goes away; its in-memory suspended dialog with it

    store = open_store(url)
    chat = Chat(Engine(pizza, store))
    chat.ids = count(4)  # the platform's update ids go on
    assert await chat.say("two") == ["Numbers only, please."]
    assert await chat.say("2") == ["Ada: 2 large pizza(s), order #4711.", "Anything else?"]
    assert draws == [1]  # the side effect ran once, before the restart, and was replayed after
    # the platform redelivering the last update gets no second answer
    assert await chat.say("2", update_id="u5") == []
    session = await store.load(KEY)
    await store.close()
    assert session is not None and session.outbox == () and session.address == {"chat": "ada"}


async def test_replies_committed_but_not_delivered_go_out_after_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"

    store = open_store(url)
    engine = Engine(pizza, store)
    await engine.handle(Incoming(KEY, "u1", text="hi"))

    async def channel_down(reply: Reply) -> None:
        raise ConnectionError("platform unreachable")

    with pytest.raises(DeliveryFailed):
        await engine.handle(Incoming(KEY, "u2", text="Ada"), channel_down)
    await store.close()

    store = open_store(url)
    engine = Engine(pizza, store)
    delivered: list[Reply] = []

    async def deliver(reply: Reply) -> None:
        delivered.append(reply)

    assert texts(await engine.resume(KEY, deliver)) == ["Which size?"] == texts(delivered)
    assert await engine.resume(KEY, deliver) == []  # delivered once, then gone from the outbox
    assert texts(await engine.handle(Incoming(KEY, "u3", text="small"), deliver)) == ["How many?"]
    await store.close()
