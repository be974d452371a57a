"""The Engine's transactional turn: de-duplication, commands, failing flows, racing engines,
delivery failures, and the in-memory suspended dialogs versus cold replays."""

from __future__ import annotations

import asyncio
import logging
import random
from itertools import count
from typing import Any, Callable

import pytest

from convoflow import (
    Incoming,
    Option,
    Reply,
    SessionKey,
    Text,
    ask,
    dialog,
    get_client_response,
    send_message,
)
from convoflow.delivery import DeliveryFailed, Undeliverable
from convoflow.turns import Engine, TurnOutcome
from convoflow.stores import MemoryStore, Session
from tests.support.flows import SCRIPTS

KEY = SessionKey("telegram:7:42", "notes")


class User:
    """One user talking to an Engine through a channel that records what it delivers."""

    def __init__(self, engine: Engine, key: SessionKey = KEY) -> None:
        self.engine = engine
        self.key = key
        self.ids = count(1)
        self.delivered: list[Reply] = []
        self.refuse: Callable[[Reply], Exception | None] = lambda reply: None

    def incoming(self, text: str, update_id: str | None = None) -> Incoming:
        kind = "command" if text.startswith("/") else "text"
        return Incoming(self.key, update_id or f"u{next(self.ids)}", kind, text, address={"chat": 42})

    async def say(self, text: str, update_id: str | None = None) -> list[str]:
        return texts(await self.engine.handle(self.incoming(text, update_id), self.deliver))

    async def press(self, value: Any) -> list[str]:
        incoming = Incoming(self.key, f"u{next(self.ids)}", "button", value=value, address={"chat": 42})
        return texts(await self.engine.handle(incoming, self.deliver))

    async def deliver(self, reply: Reply) -> None:
        problem = self.refuse(reply)
        if problem is not None:
            raise problem
        self.delivered.append(reply)


def texts(replies: list[Reply]) -> list[str]:
    return [r.message.text if isinstance(r.message, Text) else f"[{r.message.kind}]" for r in replies]


def outcomes(into: list[TurnOutcome]) -> Callable[[TurnOutcome], None]:
    return into.append


notes_started: list[int] = []


@dialog()
def stamp(text: str) -> str:
    return f"{text}#{random.randint(1000, 9999)}"


@dialog(version="1.0")
def notes():
    notes_started.append(1)  # not a step: counts how often the flow is (re)played
    yield send_message("Hi! Send me notes.")
    kept: list[str] = []
    while True:
        note = yield get_client_response()
        if note == "crash":
            yield send_message("about to fail")  # queued, then lost with the failed turn
            raise RuntimeError("flow bug on crash")
        if note == "done":
            yield send_message(f"{len(kept)} notes kept.")
            return kept
        kept.append((yield stamp(note)).split("#")[0])
        yield send_message(f"Noted: {', '.join(kept)}")


@pytest.fixture(autouse=True)
def fresh_counters() -> None:
    notes_started.clear()


async def stored_state(store: MemoryStore, key: SessionKey = KEY) -> Session:
    session = await store.load(key)
    assert session is not None
    return session


# --- a conversation, and de-duplication of redelivered updates ------------------------------------

async def test_a_conversation_delivers_numbered_replies_to_the_stored_address() -> None:
    store = MemoryStore()
    user = User(Engine(notes, store))
    assert await user.say("hello") == ["Hi! Send me notes."]
    assert await user.say("milk") == ["Noted: milk"]
    assert await user.say("eggs") == ["Noted: milk, eggs"]
    assert [r.seq for r in user.delivered] == [1, 2, 3]
    assert all(r.address == {"chat": 42} for r in user.delivered)
    session = await stored_state(store)
    assert session.outbox == () and session.seen == ("u1", "u2", "u3") and session.address == {"chat": 42}
    assert session.state is not None and session.state["frame"]["pending"] == "<input>"


async def test_a_redelivered_update_is_not_played_again() -> None:
    store = MemoryStore()
    seen: list[TurnOutcome] = []
    user = User(Engine(notes, store, on_turn=outcomes(seen), max_live=0))
    await user.say("hello")
    assert await user.say("milk", update_id="tg-100") == ["Noted: milk"]
    before = await stored_state(store)
    assert await user.say("milk", update_id="tg-100") == []  # already delivered: nothing to resend
    after = await stored_state(store)
    assert after.state == before.state and after.revision == before.revision
    assert len(notes_started) == 2 and seen[-1].outcome == "duplicate"
    assert await user.say("eggs") == ["Noted: milk, eggs"]  # milk was noted once


async def test_a_redelivered_update_redelivers_only_what_is_still_in_the_outbox() -> None:
    store = MemoryStore()
    user = User(Engine(notes, store))
    await user.say("hello")
    user.refuse = lambda reply: ConnectionError("platform down")
    with pytest.raises(DeliveryFailed) as failed:
        await user.say("milk", update_id="tg-7")
    assert failed.value.pending == 1
    user.refuse = lambda reply: None
    plays = len(notes_started)
    assert await user.say("milk", update_id="tg-7") == ["Noted: milk"]
    assert len(notes_started) == plays  # redelivered from the outbox, not played again
    assert await user.say("milk", update_id="tg-7") == []
    assert await user.say("eggs") == ["Noted: milk, eggs"]


# --- commands ------------------------------------------------------------------------------------

async def test_start_restarts_and_cancel_ends_with_a_short_reply() -> None:
    store = MemoryStore()
    user = User(Engine(notes, store))
    await user.say("hello")
    await user.say("milk")
    assert await user.say("/start") == ["Hi! Send me notes."]
    assert await user.say("tea") == ["Noted: tea"]  # milk went with the restart
    assert await user.say("/cancel") == ["Okay, stopped. Send /start to begin again."]
    assert (await stored_state(store)).state is None
    assert await user.say("anything") == ["Hi! Send me notes."]  # a new conversation
    assert await user.say("/start now please") == ["Hi! Send me notes."]  # arguments are ignored


async def test_commands_are_configurable() -> None:
    store = MemoryStore()
    user = User(Engine(notes, store, commands={"/again": "restart", "/stop": "cancel"}, cancel_reply="Bye."))
    await user.say("hello")
    assert await user.say("/start") == ["Noted: /start"]  # no longer a command: the flow gets it
    assert await user.say("/cancel") == ["Noted: /start, /cancel"]
    assert await user.say("/again") == ["Hi! Send me notes."]
    assert await user.say("/stop") == ["Bye."]


# --- a flow that raises -----------------------------------------------------------------------------

@pytest.mark.parametrize("max_live", [10, 0], ids=["kept-in-memory", "replayed"])
async def test_a_failing_flow_keeps_the_last_committed_state_apologises_and_logs_the_key(
    max_live: int, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    seen: list[TurnOutcome] = []
    user = User(Engine(notes, store, max_live=max_live, on_turn=outcomes(seen)))
    await user.say("hello")
    await user.say("milk")
    before = await stored_state(store)

    with caplog.at_level(logging.ERROR, "convoflow"):
        reply = await user.say("crash")
    assert reply == ["Sorry, something went wrong on our side. Please try again."]  # not "about to fail"
    assert seen[-1].outcome == "failed"
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert str(KEY) in record.getMessage()
    assert record.exc_info is not None and "flow bug on crash" in str(record.exc_info[1])

    after = await stored_state(store)
    assert after.state == before.state and after.outbox == ()
    assert "u3" in after.seen  # the failed update is not played again when redelivered
    assert await user.say("crash", update_id="u3") == []
    assert await user.say("eggs") == ["Noted: milk, eggs"]
    assert await user.say("done") == ["2 notes kept."]


async def test_a_failing_first_turn_leaves_no_state_behind() -> None:
    @dialog(name="broken")
    def broken():
        raise ValueError("typo in the flow")
        yield

    store = MemoryStore()
    user = User(Engine(broken, store))
    assert await user.say("hi") == ["Sorry, something went wrong on our side. Please try again."]
    assert (await stored_state(store)).state is None


# --- two engines on one store -------------------------------------------------------------------

@dialog()
async def save_remotely(item: str) -> str:
    await asyncio.sleep(0.02)  # I/O: the other engine gets to run meanwhile
    return item.upper()


@dialog()
def shared_list():
    items: list[str] = []
    while True:
        item = yield get_client_response()
        items.append((yield save_remotely(item)))
        yield send_message(", ".join(items))


async def test_two_engines_racing_on_one_session_lose_nothing() -> None:
    store = MemoryStore()
    seen: list[TurnOutcome] = []
    first = User(Engine(shared_list, store, on_turn=outcomes(seen)))
    second = User(Engine(shared_list, store, on_turn=outcomes(seen)))
    second.ids = count(100)
    await first.say("start")
    await first.say("bread")

    tea, milk = await asyncio.gather(first.say("tea"), second.say("milk"))
    assert sorted([tea, milk]) == [["BREAD, TEA"], ["BREAD, TEA, MILK"]]
    assert sum(outcome.conflicts for outcome in seen) == 1  # the loser reloaded and played again

    # the first engine's in-memory dialog is stale now: it must replay the stored record
    assert await first.say("jam") == ["BREAD, TEA, MILK, JAM"]
    session = await stored_state(store)
    assert session.outbox == () and len(session.seen) == 5
    seqs = sorted(r.seq for r in first.delivered + second.delivered)
    assert seqs == [1, 2, 3, 4]  # every reply delivered exactly once


# --- delivery failures ------------------------------------------------------------------------------

@dialog()
def chatty():
    yield send_message("one")
    yield send_message("two")
    yield send_message("three")
    yield get_client_response()


async def test_a_delivery_failure_keeps_the_rest_of_the_outbox_for_later() -> None:
    store = MemoryStore()
    engine = Engine(chatty, store)
    user = User(engine)
    user.refuse = lambda reply: ConnectionError("timeout") if reply.message == Text("two") else None
    with pytest.raises(DeliveryFailed) as failed:
        await user.say("hi")
    assert failed.value.pending == 2 and isinstance(failed.value.error, ConnectionError)
    assert texts(user.delivered) == ["one"]
    assert [o["message"] for o in (await stored_state(store)).outbox] == [{"text": "two"}, {"text": "three"}]

    user.refuse = lambda reply: None
    assert texts(await engine.resume(KEY, user.deliver)) == ["two", "three"]
    assert (await stored_state(store)).outbox == ()
    assert texts(await engine.resume(KEY, user.deliver)) == []
    assert [r.seq for r in user.delivered] == [1, 2, 3]


async def test_undelivered_replies_go_out_first_on_the_next_turn() -> None:
    store = MemoryStore()
    user = User(Engine(notes, store))
    await user.say("hello")
    user.refuse = lambda reply: ConnectionError("platform down")
    with pytest.raises(DeliveryFailed):
        await user.say("milk")
    user.refuse = lambda reply: None
    assert await user.say("eggs") == ["Noted: milk", "Noted: milk, eggs"]
    assert [r.seq for r in user.delivered] == [1, 2, 3]


async def test_an_undeliverable_reply_is_dropped_and_delivery_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    user = User(Engine(chatty, store))
    user.refuse = lambda reply: Undeliverable("user blocked the bot") if reply.message == Text("two") else None
    with caplog.at_level(logging.WARNING, "convoflow"):
        assert await user.say("hi") == ["one", "three"]
    assert "user blocked the bot" in caplog.text and str(KEY) in caplog.text
    assert (await stored_state(store)).outbox == ()


# --- versions through the Engine ---------------------------------------------------------------------

async def test_a_new_release_restarts_old_sessions_after_the_fallback() -> None:
    store = MemoryStore()
    user = User(Engine(notes, store))
    await user.say("hello")
    await user.say("milk")

    @dialog(version="2.0", name="notes")
    def notes_v2():
        yield send_message("Notes 2.0! What shall I keep?")
        while True:
            yield send_message(f"Kept {(yield get_client_response())}")

    @dialog()
    def sorry():
        yield send_message("We upgraded; your old notes are gone.")

    seen: list[TurnOutcome] = []
    user.engine = Engine(notes_v2, store, fallback=sorry, on_turn=outcomes(seen))
    assert await user.say("eggs") == ["We upgraded; your old notes are gone.", "Notes 2.0! What shall I keep?"]
    assert seen[-1].outcome == "restarted"
    assert await user.say("tea") == ["Kept tea"]


async def test_buttons_answer_questions_with_their_values() -> None:
    @dialog()
    def pick():
        size = yield ask("Size?", choices=[Option("Small", "s"), Option("Large", "l")])
        yield send_message(f"size {size}")

    user = User(Engine(pick, MemoryStore()))
    await user.say("hi")
    assert await user.press("l") == ["size l"]
    assert texts(user.delivered[:1]) == ["Size?"] and user.delivered[0].message == Text("Size?", (Option("Small", "s"), Option("Large", "l")))


# --- kept in memory or replayed: the same conversation -------------------------------------------

async def converse(engine: Engine, store: MemoryStore, inputs: list[str]) -> tuple[list[list[str]], list[dict[str, Any]]]:
    random.seed(99)
    user = User(engine)
    replies, states = [], []
    for text in inputs:
        replies.append(await user.say(text))
        record = (await stored_state(store)).to_record()
        states.append({k: v for k, v in record.items() if k not in ("created", "updated")})
    return replies, states


@pytest.mark.parametrize("script", sorted(SCRIPTS))
async def test_an_engine_that_keeps_nothing_in_memory_has_the_same_conversations(script: str) -> None:
    make, inputs = SCRIPTS[script]
    warm_store, cold_store = MemoryStore(), MemoryStore()
    warm = await converse(Engine(make, warm_store), warm_store, inputs)
    cold = await converse(Engine(make, cold_store, max_live=0), cold_store, inputs)
    assert warm == cold
    assert any(warm[0])  # the script really talked


async def test_only_the_most_recent_sessions_stay_in_memory() -> None:
    store = MemoryStore()
    engine = Engine(notes, store, max_live=2)
    users = [User(engine, SessionKey(f"telegram:7:{n}", "notes")) for n in range(3)]
    for user in users:
        await user.say("hello")
    for user in users:
        assert await user.say("tea") == ["Noted: tea"]
    # three sessions, room for two: each new one evicted the oldest, which then had to replay
    assert len(notes_started) == 6



# --- what a channel may ask: is a conversation running, and can its question still be answered ---


@dialog(version="1")
def survey_v1() -> Any:
    yield ask("Your name?")
    yield ask("Your colour?")


@dialog(version="2", name="survey_v1")
def survey_v2() -> Any:
    yield ask("Your name?")


@dialog()
def apology() -> Any:
    yield send_message("We changed; tell us anything to start over")
    yield get_client_response()


async def test_the_engine_says_whether_a_conversation_runs_and_still_matches_the_code() -> None:
    store = MemoryStore()
    old = Engine(survey_v1, store, app="survey")
    user = User(old, SessionKey("console:ann", "survey"))
    assert await old.conversation(user.key) is None
    await user.say("hi")
    assert await status(old, user.key) == "running"
    new = Engine(survey_v2, store, apology, app="survey")
    assert await status(new, user.key) == "outdated"  # its question went with version 1
    returning = User(new, user.key)
    returning.ids = count(10)  # ids of its own, as a new process's updates have
    assert await returning.say("x") == ["We changed; tell us anything to start over"]
    assert await status(new, user.key) == "running"  # in the fallback, which is this code's
    assert await status(old, user.key) == "outdated"  # an engine without that fallback
    await returning.say("/cancel")
    cancelled = await new.conversation(user.key)
    assert cancelled is not None and not cancelled.running and not cancelled.outdated


async def status(engine: Engine, key: SessionKey) -> str:
    conversation = await engine.conversation(key)
    assert conversation is not None and conversation.running
    return "outdated" if conversation.outdated else "running"
