"""Who delivers a committed reply: the worker that committed it, once, in order; another worker
takes over only when it has waited too long (its worker died or its delivery failed)."""

from __future__ import annotations

import asyncio
from typing import Any

from convoflow import Incoming, Reply, SessionKey, Text, dialog, get_client_response, send_message
from convoflow.delivery import DeliveryFailed
from convoflow.turns import Engine
from convoflow.stores import MemoryStore, Store

KEY = SessionKey("test:1", "echo")


@dialog()
def echo() -> Any:
    while True:
        said = yield get_client_response()
        yield send_message(f"echo {said}")


class Outlet:
    """A channel's delivery: records what went out; can hold or fail the next send."""

    def __init__(self, name: str, sent: list[tuple[str, str]]) -> None:
        self.name, self.sent = name, sent
        self.hold: asyncio.Event | None = None
        self.failing = False

    async def __call__(self, reply: Reply) -> None:
        if self.hold is not None:
            await self.hold.wait()
        if self.failing:
            raise ConnectionError("platform unreachable")
        assert isinstance(reply.message, Text)
        self.sent.append((self.name, reply.message.text))


def worker(store: Store, handoff: float = 5.0) -> Engine:
    return Engine(echo, store, handoff_seconds=handoff)


def update(n: int, text: str) -> Incoming:
    return Incoming(KEY, f"u{n}", text=text)


async def started(store: Store) -> None:
    await worker(store).handle(update(0, "start"))


async def left_waiting(engine: Engine, incoming: Incoming) -> None:
    """A turn that commits, then cannot deliver (as if its process died before delivering)."""
    unreachable = Outlet("unreachable", [])
    unreachable.failing = True
    try:
        await engine.handle(incoming, unreachable)
    except DeliveryFailed:
        return
    raise AssertionError("the delivery was expected to fail")


async def test_a_reply_being_delivered_by_one_worker_is_not_sent_again_by_another() -> None:
    store, sent = MemoryStore(), []
    await started(store)
    a, b = worker(store), worker(store)
    slow, quick = Outlet("a", sent), Outlet("b", sent)
    slow.hold = asyncio.Event()
    first = asyncio.create_task(a.handle(update(1, "one"), slow))  # committed, delivery held
    while not (session := await store.load(KEY)) or not session.outbox:
        await asyncio.sleep(0.001)
    second = asyncio.create_task(b.handle(update(2, "two"), quick))
    await asyncio.sleep(0.1)
    assert sent == []  # b waits: "echo one" is a's to deliver, and "echo two" must come after it
    slow.hold.set()
    await asyncio.gather(first, second)
    assert sent == [("a", "echo one"), ("b", "echo two")]
    final = await store.load(KEY)
    assert final is not None and final.outbox == ()


async def test_replies_whose_worker_went_quiet_are_taken_over_after_the_handoff_time() -> None:
    store, sent = MemoryStore(), []
    await started(store)
    a, b = worker(store, handoff=0.2), worker(store, handoff=0.2)
    await left_waiting(a, update(1, "one"))
    await b.handle(update(2, "two"), Outlet("b", sent))
    assert sent == [("b", "echo one"), ("b", "echo two")]


async def test_a_worker_delivers_its_own_earlier_replies_at_once() -> None:
    store, sent = MemoryStore(), []
    await started(store)
    a = worker(store, handoff=60)
    outlet = Outlet("a", sent)
    outlet.failing = True
    try:
        await a.handle(update(1, "one"), outlet)
    except DeliveryFailed as failed:
        assert failed.pending == 1
    outlet.failing = False
    await asyncio.wait_for(a.handle(update(2, "two"), outlet), 5)  # no waiting on itself
    assert sent == [("a", "echo one"), ("a", "echo two")]


async def test_of_several_workers_resuming_one_session_only_one_delivers() -> None:
    store, sent = MemoryStore(), []
    await started(store)
    await left_waiting(worker(store), update(1, "one"))
    resumers = [worker(store) for _ in range(4)]
    results = await asyncio.gather(*(r.resume(KEY, Outlet(f"r{i}", sent)) for i, r in enumerate(resumers)))
    assert len(sent) == 1 and sent[0][1] == "echo one"
    assert sorted(len(replies) for replies in results) == [0, 0, 0, 1]


async def test_the_sweep_redelivers_replies_left_waiting_and_only_this_bots() -> None:
    store, sent = MemoryStore(), []
    await started(store)
    await left_waiting(worker(store), update(1, "one"))
    other_bot = Engine(echo, store, app="other")
    await other_bot.handle(Incoming(SessionKey("test:1", "other"), "o1", text="start"))
    await left_waiting(other_bot, Incoming(SessionKey("test:1", "other"), "o2", text="hi"))

    sweeper = worker(store, handoff=0.05)
    assert await sweeper.redeliver_waiting(lambda key: Outlet("sweep", sent)) == 0  # too recent
    await asyncio.sleep(0.1)
    assert await sweeper.redeliver_waiting(lambda key: None) == 0  # no channel for it here
    assert await sweeper.redeliver_waiting(lambda key: Outlet("sweep", sent)) == 1
    assert sent == [("sweep", "echo one")]
    assert await sweeper.redeliver_waiting(lambda key: Outlet("sweep", sent)) == 0
    other = await store.load(SessionKey("test:1", "other"))
    assert other is not None and len(other.outbox) == 1  # another bot's replies are its own business


async def test_interleaved_replies_of_two_workers_go_out_at_once_in_order() -> None:
    """Outbox [a's reply, b's reply]: a sends its own, b sends its own after it; nobody waits for
    the handoff time, which would mean each waited for the other."""
    store, sent = MemoryStore(), []
    await started(store)
    a, b = worker(store, handoff=30), worker(store, handoff=30)
    slow_a, b_outlet = Outlet("a", sent), Outlet("b", sent)
    slow_a.hold = asyncio.Event()
    first = asyncio.create_task(a.handle(update(1, "one"), slow_a))
    while not (session := await store.load(KEY)) or not session.outbox:
        await asyncio.sleep(0.001)
    second = asyncio.create_task(b.handle(update(2, "two"), b_outlet))
    while not (session := await store.load(KEY)) or len(session.outbox) < 2:
        await asyncio.sleep(0.001)
    slow_a.hold.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert sent == [("a", "echo one"), ("b", "echo two")]


async def test_replies_taken_over_by_two_live_workers_at_once_go_out_once() -> None:
    store, sent = MemoryStore(), []
    await started(store)
    await left_waiting(worker(store, handoff=0.2), update(1, "one"))
    b, c = worker(store, handoff=0.2), worker(store, handoff=0.2)
    slow_b, slow_c = Outlet("b", sent), Outlet("c", sent)
    # both see the dead worker's reply and take it over when the handoff time is up
    results = await asyncio.gather(b.handle(update(1, "one"), slow_b), c.handle(update(1, "one"), slow_c))
    assert [text for _, text in sent] == ["echo one"]
    assert sorted(len(replies) for replies in results) == [0, 1]


async def test_a_redelivery_is_reported_processed_while_the_first_attempt_still_delivers() -> None:
    store, sent = MemoryStore(), []
    await started(store)
    engine = worker(store)
    slow = Outlet("a", sent)
    slow.hold = asyncio.Event()
    first = asyncio.create_task(engine.handle(update(1, "one"), slow))
    while not (session := await store.load(KEY)) or not session.outbox:
        await asyncio.sleep(0.001)
    acknowledged = asyncio.Event()
    again = asyncio.create_task(engine.handle(update(1, "one"), Outlet("again", sent), acknowledged.set))
    await asyncio.wait_for(acknowledged.wait(), 5)  # while the first attempt is still delivering
    assert not first.done()
    slow.hold.set()
    await asyncio.gather(first, again)
    assert sent == [("a", "echo one")]


async def test_the_next_turn_commits_while_a_reply_is_on_its_way_and_replies_keep_their_order() -> None:
    store, sent = MemoryStore(), []
    await started(store)
    engine = worker(store)
    slow = Outlet("a", sent)
    slow.hold = asyncio.Event()
    committed: list[str] = []
    turns = [asyncio.create_task(engine.handle(update(n, text), slow, lambda text=text: committed.append(text)))
             for n, text in enumerate(["one", "two", "three"], 1)]
    while len(committed) < 3:  # each commits while "echo one" is held on its way
        await asyncio.sleep(0.001)
    session = await store.load(KEY)
    assert session is not None and [item["message"]["text"] for item in session.outbox] == ["echo one", "echo two", "echo three"]
    assert sent == []
    slow.hold.set()
    delivered = await asyncio.gather(*turns)
    assert sent == [("a", "echo one"), ("a", "echo two"), ("a", "echo three")]  # in order, each once
    assert [[r.seq for r in replies] for replies in delivered] == [[1], [2], [3]]  # each turn delivered its own
    final = await store.load(KEY)
    assert final is not None and final.outbox == ()
