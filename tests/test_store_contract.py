"""One contract, every store: each backend must behave exactly alike."""

from __future__ import annotations

import asyncio

import pytest

from convoflow.messages import SessionKey
from convoflow.stores import Conflict, Session, Store

from tests.support.store_backends import STORE_BACKENDS, open_backend

KEY = SessionKey("telegram:7:42", "guessbot")


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    opened: Store = await open_backend(request.param, tmp_path, request)
    yield opened
    await opened.close()


def first(key: SessionKey = KEY, **changes) -> Session:  # type: ignore[no-untyped-def]
    return Session(key).advanced(**changes)


class TestStoreContract:
    async def test_missing_session_loads_as_none(self, store: Store) -> None:
        assert await store.load(KEY) is None

    async def test_commit_then_load_round_trips_every_field(self, store: Store) -> None:
        session = first(
            state={"frame": {"name": "guess", "version": "1.0", "log": [["rand", 7]], "pending": "<input>"}},
            outbox=({"seq": 1, "to": {"chat_id": 42}, "message": {"text": "Your guess?"}},),
            seen=("u1",),
            address={"chat_id": 42},
            next_seq=2,
            last=({"seq": 1, "to": {"chat_id": 42}, "message": {"text": "Your guess?"}},),
        )
        await store.commit(session)
        assert await store.load(KEY) == session

    async def test_what_time_and_events_keep_with_a_session_round_trips(self, store: Store) -> None:
        session = first(
            state={"frame": {"name": "pay", "version": "1.0", "log": [], "pending": {"wait": "<first>", "due": 1_000_900.5}}},
            due=1_000_600.25,
            idle_at=1_000_600.25,
            inbox=({"value": "hello", "at": 1_000_001.0}, {"value": {"media": "image", "source": "x"}, "at": 1_000_002.0}),
            events=({"name": "shipped", "data": {"$id": [1, None]}, "id": "ev-1", "at": 1_000_003.0, "until": 1_086_403.0},),
            remembered={"event:ev-1": 1_086_403.0, "start:campaign-7": 1_086_404.5},
            queued=({"dialog": {"dialog": "bots.x:promo", "args": [], "kwargs": {}}, "id": "campaign-8", "address": {"chat_id": 42}},),
        )
        await store.commit(session)
        assert await store.load(KEY) == session
        cleared = session.advanced(due=None, idle_at=None, inbox=(), events=(), remembered={}, queued=())
        await store.commit(cleared)
        assert await store.load(KEY) == cleared

    async def test_due_finds_the_sessions_whose_timers_are_due_earliest_first(self, store: Store) -> None:
        later = first(SessionKey("telegram:7:1", "guessbot"), due=1_000_300.25)
        sooner = first(SessionKey("telegram:7:2", "guessbot"), due=1_000_100.5)
        await store.commit(later)
        await store.commit(sooner)
        await store.commit(first(SessionKey("telegram:7:3", "guessbot")))  # no timer
        await store.commit(first(SessionKey("telegram:7:4", "menu"), due=1_000_000.0))  # another bot
        assert await store.due("guessbot", 1_000_000.0) == []
        assert await store.due("guessbot", 1_000_100.5) == [sooner]
        assert await store.due("guessbot", 1_000_300.2) == [sooner]
        assert await store.due("guessbot", 2_000_000.0) == [sooner, later]
        assert await store.due("guessbot", 2_000_000.0, limit=1) == [sooner]

    async def test_a_commit_moves_or_clears_the_due_time(self, store: Store) -> None:
        one = first(due=1_000_000.0)
        await store.commit(one)
        two = one.advanced(due=3_000_000.0)
        await store.commit(two)
        assert await store.due(KEY.app, 2_000_000.0) == []
        assert await store.due(KEY.app, 3_000_000.0) == [two]
        await store.commit(two.advanced(due=None))
        assert await store.due(KEY.app, 9_000_000.0) == []
        loaded = await store.load(KEY)
        assert loaded is not None and loaded.due is None

    async def test_stale_revision_conflicts_and_keeps_the_stored_session(self, store: Store) -> None:
        one = first(state={"n": 1})
        await store.commit(one)
        two = one.advanced(state={"n": 2})
        await store.commit(two)
        with pytest.raises(Conflict):
            await store.commit(one.advanced(state={"stale": True}))
        with pytest.raises(Conflict):
            await store.commit(first(state={"recreated": True}))
        loaded = await store.load(KEY)
        assert loaded is not None and loaded.state == {"n": 2} and loaded.revision == 2

    async def test_commit_of_a_future_revision_conflicts(self, store: Store) -> None:
        with pytest.raises(Conflict):
            await store.commit(first().advanced())
        assert await store.load(KEY) is None

    async def test_concurrent_commits_of_one_revision_let_exactly_one_win(self, store: Store) -> None:
        base = first(state={"n": 0})
        await store.commit(base)
        attempts = [base.advanced(state={"n": i}) for i in range(8)]
        results = await asyncio.gather(*(store.commit(a) for a in attempts), return_exceptions=True)
        assert sum(r is None for r in results) == 1
        assert all(isinstance(r, Conflict) for r in results if r is not None)

    async def test_mark_delivered_drops_entries_and_bumps_the_current_revision(self, store: Store) -> None:
        items = tuple({"seq": n, "to": {}, "message": {"text": f"m{n}"}} for n in (1, 2, 3))
        session = first(outbox=items, next_seq=4)
        await store.commit(session)
        assert await store.mark_delivered(KEY, 1, 2) is True
        loaded = await store.load(KEY)
        assert loaded is not None
        assert [i["seq"] for i in loaded.outbox] == [3] and loaded.revision == 2
        # a session that moved on still loses delivered entries, but keeps its revision
        assert await store.mark_delivered(KEY, 1, 3) is False
        loaded = await store.load(KEY)
        assert loaded is not None and loaded.outbox == () and loaded.revision == 2

    async def test_mark_delivered_of_unknown_session_is_false(self, store: Store) -> None:
        assert await store.mark_delivered(KEY, 1, 1) is False

    async def test_list_sessions_by_partition_newest_first(self, store: Store) -> None:
        keys = [SessionKey("p:1", "a"), SessionKey("p:1", "b"), SessionKey("p:2", "a")]
        for key in keys:
            await store.commit(first(key))
            await asyncio.sleep(0.01)
        listed = await store.list_sessions("p:1")
        assert [s.key for s in listed] == [keys[1], keys[0]]
        assert {s.key for s in await store.list_sessions()} == set(keys)
        assert len(await store.list_sessions(limit=2)) == 2
        assert await store.list_sessions("nobody") == []

    async def test_list_sessions_includes_partitions_under_the_one_named(self, store: Store) -> None:
        keys = [SessionKey("t:7:-100", "a"), SessionKey("t:7:-100:42", "a"), SessionKey("t:7:-100:5:42", "b"),
                SessionKey("t:7:-1000", "a"), SessionKey("t:7:-10", "a"), SessionKey("t:7:-100;x", "a")]
        for key in keys:
            await store.commit(first(key))
        listed = {s.key for s in await store.list_sessions("t:7:-100")}
        assert listed == set(keys[:3])
        assert {s.key for s in await store.list_sessions("t:7:-100:42")} == {keys[1]}

    async def test_user_text_round_trips_unchanged(self, store: Store) -> None:
        hostile = {
            "$set": "a.b", "key.with.dots": "$where", "": "empty key",
            "unicode": "zero\u200bwidth \U0001f600 \u202eright-to-left \x00 nul",
            "long": "x" * 200_000,
            "numbers": [0, -1, 2**53, 1.5, True, None],
        }
        key = SessionKey("slack:-:T1:C$1.x", "app.v2")
        session = first(key, state={"frame": {"log": [["<input>", hostile]]}}, seen=("$id.1",))
        await store.commit(session)
        assert await store.load(key) == session

    async def test_sessions_of_different_apps_are_separate(self, store: Store) -> None:
        await store.commit(first(SessionKey("p", "one"), state={"app": 1}))
        await store.commit(first(SessionKey("p", "two"), state={"app": 2}))
        one = await store.load(SessionKey("p", "one"))
        two = await store.load(SessionKey("p", "two"))
        assert one is not None and two is not None
        assert (one.state, two.state) == ({"app": 1}, {"app": 2})

    async def test_undelivered_finds_a_bots_sessions_with_replies_waiting_in_a_time_window(self, store: Store) -> None:
        reply = {"seq": 1, "to": {}, "message": {"text": "hi"}}
        waiting = []
        for n in range(3):
            waiting.append(first(SessionKey(f"p:{n}", "bot"), outbox=(reply,), next_seq=2))
            await store.commit(waiting[-1])
            await asyncio.sleep(0.01)
        await store.commit(first(SessionKey("p:delivered", "bot")))  # nothing waiting
        await store.commit(first(SessionKey("p:0", "other-bot"), outbox=(reply,), next_seq=2))  # another bot
        since, until = waiting[0].updated, waiting[-1].updated + 1
        found = await store.undelivered("bot", since, until)
        assert [s.key for s in found] == [s.key for s in waiting]  # least recently updated first
        assert found[0] == waiting[0]
        assert [s.key for s in await store.undelivered("bot", since, until, limit=2)] == [s.key for s in waiting[:2]]
        assert [s.key for s in await store.undelivered("bot", waiting[1].updated, until)] == [s.key for s in waiting[1:]]
        assert await store.undelivered("bot", since, waiting[0].updated) == []  # `until` is excluded
        assert await store.mark_delivered(waiting[0].key, waiting[0].revision, 1)
        assert [s.key for s in await store.undelivered("bot", 0, until + 60)] == [s.key for s in waiting[1:]]
