"""Group commit on SQLite: concurrent writes of many sessions share one transaction (one fsync),
each keeps its own condition and its own answer, and each is answered only once it is durable."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from convoflow import SessionKey
from convoflow.stores import Conflict, Session
from convoflow.stores.sqlite import SQLiteStore
from tests.support.flows import two_turns_each


def key(n: int) -> SessionKey:
    return SessionKey(f"telegram:7:{n}", "guessbot")


def stored_revisions(path: Path) -> dict[str, int]:
    """What another connection reads from the file (never through the store under test)."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT key, revision FROM sessions").fetchall()
    db.close()
    return dict(rows)


async def test_concurrent_commits_share_one_transaction_and_a_conflict_fails_only_its_own(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    try:
        firsts = [Session(key(n)).advanced(state={"n": n}) for n in range(20)]
        await asyncio.gather(*(store.commit(session) for session in firsts))
        before = store.transactions
        seconds = [session.advanced(state={"n": n, "turn": 2}) for n, session in enumerate(firsts)]
        stale = firsts[7].advanced(state={"lost": True})  # revision 2 too, but from the same revision 1
        outcomes = await asyncio.gather(*(store.commit(s) for s in [*seconds[:8], stale, *seconds[8:]]),
                                        return_exceptions=True)

        assert store.transactions == before + 1  # 21 writes, one transaction, one fsync
        assert [type(outcome) for outcome in outcomes] == [type(None)] * 8 + [Conflict] + [type(None)] * 12
        assert stored_revisions(store.path) == {str(key(n)): 2 for n in range(20)}
        for n, session in enumerate(seconds):
            assert await store.load(key(n)) == session  # the winner of the race for 7 kept its turn
    finally:
        await store.close()


async def test_a_write_that_fails_outright_fails_alone(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    try:
        good = [Session(key(n)).advanced(state={"n": n}) for n in range(5)]
        bad = Session(SessionKey("telegram:7:\ud800", "guessbot")).advanced()  # not storable text
        outcomes = await asyncio.gather(*(store.commit(s) for s in [*good[:2], bad, *good[2:]]), return_exceptions=True)
        assert [outcome is None for outcome in outcomes] == [True, True, False, True, True, True]
        assert isinstance(outcomes[2], Exception) and not isinstance(outcomes[2], Conflict)
        assert stored_revisions(store.path) == {str(key(n)): 1 for n in range(5)}
    finally:
        await store.close()


async def test_a_first_reply_log_write_survives_a_batch_rolled_back_by_another_write(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    try:
        bad = Session(SessionKey("telegram:7:\ud800", "guessbot")).advanced()  # not storable: its batch rolls back
        entry = {"seq": 1, "text": "hi"}
        # the first commit is a batch of its own; the log's first write and the bad one wait for the next
        first, logged, failed = await asyncio.gather(store.commit(Session(key(1)).advanced()),
                                                     store.log_replies(key(1), [entry], keep=10), store.commit(bad),
                                                     return_exceptions=True)
        assert first is None and logged is None and isinstance(failed, Exception)
        assert await store.logged_replies(key(1)) == [entry]
    finally:
        await store.close()


async def test_marks_and_commits_go_in_one_transaction_each_with_its_own_answer(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    try:
        reply = {"seq": 1, "to": {"chat_id": 1}, "message": {"text": "hi"}}
        one = Session(key(1)).advanced(outbox=(reply,), next_seq=2)
        two = Session(key(2)).advanced(outbox=(reply,), next_seq=2)
        await asyncio.gather(store.commit(one), store.commit(two))
        before = store.transactions
        marked_current, marked_stale, _ = await asyncio.gather(
            store.mark_delivered(key(1), 1, 1), store.mark_delivered(key(2), 5, 1), store.commit(Session(key(3)).advanced()),
        )
        assert (marked_current, marked_stale) == (True, False)
        assert store.transactions == before + 1
        assert stored_revisions(store.path) == {str(key(1)): 2, str(key(2)): 1, str(key(3)): 1}
        loaded = await store.load(key(2))
        assert loaded is not None and loaded.outbox == ()
    finally:
        await store.close()


async def test_concurrent_turns_of_many_sessions_share_transactions_and_all_land(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    try:
        keys = [key(n) for n in range(50)]
        before = store.transactions
        sent = await two_turns_each(store, keys)
        # 50 sessions x 2 turns x (commit + mark delivered) = 200 writes
        assert store.transactions - before < 200
        assert sent == {k: ["hi", f"you said {k.partition}"] for k in keys}
        restarted = SQLiteStore(store.path)  # what a new process finds
        try:
            for k in keys:
                session = await restarted.load(k)
                assert session is not None and session.seen == ("u1", "u2") and session.outbox == ()
        finally:
            await restarted.close()
    finally:
        await store.close()


async def test_a_closed_store_answers_every_write_queued_before_closing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    writes = [asyncio.ensure_future(store.commit(Session(key(n)).advanced())) for n in range(10)]
    await asyncio.sleep(0)
    await store.close()
    assert all(write.done() and write.exception() is None for write in writes)
    assert len(stored_revisions(store.path)) == 10
    with pytest.raises(Exception, match="closed"):
        await store.commit(Session(key(99)).advanced())
