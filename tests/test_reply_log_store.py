"""The reply log every store keeps beside its sessions (Store.log_replies / logged_replies): one
contract, every backend."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import pytest

from convoflow.messages import SessionKey
from convoflow.stores import Session, Store
from convoflow.stores.sqlite import SQLiteStore

from tests.support.store_backends import STORE_BACKENDS, open_backend

KEY = SessionKey("web:v1", "guessbot")
OTHER = SessionKey("web:v2", "guessbot")


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened: Store = await open_backend(request.param, tmp_path, request)
    yield opened
    await opened.close()


def entry(seq: int, text: str = "", **extra: object) -> dict[str, object]:
    return {"seq": seq, "message": {"text": text or f"reply {seq}"}, **extra}


class TestReplyLogContract:
    async def test_an_empty_log_reads_as_nothing(self, store: Store) -> None:
        assert await store.logged_replies(KEY) == []

    async def test_logged_replies_come_back_in_seq_order_after_the_seq_asked(self, store: Store) -> None:
        await store.log_replies(KEY, [entry(1), entry(2, "Higher!", turn="m1", said="5")], keep=100)
        await store.log_replies(KEY, [entry(3, "Lower!\u0000 $x.y \ud800")], keep=100)
        assert await store.logged_replies(KEY) == [entry(1), entry(2, "Higher!", turn="m1", said="5"),
                                                   entry(3, "Lower!\u0000 $x.y \ud800")]
        assert await store.logged_replies(KEY, after=1) == [entry(2, "Higher!", turn="m1", said="5"),
                                                            entry(3, "Lower!\u0000 $x.y \ud800")]
        assert await store.logged_replies(KEY, after=1, limit=1) == [entry(2, "Higher!", turn="m1", said="5")]
        assert await store.logged_replies(KEY, after=3) == []

    async def test_a_seq_logged_twice_keeps_its_first_entry(self, store: Store) -> None:
        await store.log_replies(KEY, [entry(1, "first", turn="m1")], keep=100)
        await store.log_replies(KEY, [entry(1, "again"), entry(2)], keep=100)
        assert await store.logged_replies(KEY) == [entry(1, "first", turn="m1"), entry(2)]

    async def test_only_the_latest_seq_numbers_are_kept(self, store: Store) -> None:
        for seq in range(1, 8):
            await store.log_replies(KEY, [entry(seq)], keep=3)
        assert [e["seq"] for e in await store.logged_replies(KEY)] == [5, 6, 7]
        await store.log_replies(KEY, [entry(8), entry(9), entry(10), entry(11)], keep=3)
        assert [e["seq"] for e in await store.logged_replies(KEY)] == [9, 10, 11]

    async def test_each_session_has_its_own_log(self, store: Store) -> None:
        await store.log_replies(KEY, [entry(1, "to one")], keep=100)
        await store.log_replies(OTHER, [entry(1, "to two")], keep=100)
        assert await store.logged_replies(KEY) == [entry(1, "to one")]
        assert await store.logged_replies(OTHER) == [entry(1, "to two")]
        assert await store.logged_replies(SessionKey("web:v1", "menu")) == []

    async def test_logging_never_touches_the_session_record(self, store: Store) -> None:
        session = Session(KEY).advanced(state={"frame": None}, next_seq=3)
        await store.commit(session)
        await store.log_replies(KEY, [entry(1), entry(2)], keep=100)
        assert await store.load(KEY) == session
        await store.commit(session.advanced(next_seq=4))  # the revision is still the one committed

    async def test_the_latest_logged_seq_of_many_sessions_in_one_query(self, store: Store) -> None:
        assert await store.latest_logged([KEY, OTHER]) == {}
        await store.log_replies(KEY, [entry(1), entry(2)], keep=100)
        await store.log_replies(OTHER, [entry(7)], keep=100)
        await store.log_replies(SessionKey("web:v3", "guessbot"), [entry(9)], keep=100)
        assert await store.latest_logged([KEY, OTHER, SessionKey("web:none", "guessbot")]) == {KEY: 2, OTHER: 7}
        many = [SessionKey(f"web:m{n}", "guessbot") for n in range(1200)]
        await store.log_replies(many[1100], [entry(4)], keep=100)
        assert await store.latest_logged([*many, KEY]) == {many[1100]: 4, KEY: 2}

    async def test_concurrent_loggers_of_one_session_log_each_seq_once(self, store: Store) -> None:
        await asyncio.gather(*(store.log_replies(KEY, [entry(seq), entry(seq + 1)], keep=100) for seq in range(1, 20)))
        assert [e["seq"] for e in await store.logged_replies(KEY)] == list(range(1, 21))


async def test_two_sqlite_stores_on_one_file_share_the_log(tmp_path: Path) -> None:
    """What lets a stream held by one process follow replies another process logs."""
    one, two = SQLiteStore(tmp_path / "shared.db"), SQLiteStore(tmp_path / "shared.db")
    try:
        assert await two.logged_replies(KEY) == []  # before the table exists
        await one.log_replies(KEY, [entry(1)], keep=10)
        assert await two.logged_replies(KEY) == [entry(1)]
        await two.log_replies(KEY, [entry(1, "late copy"), entry(2)], keep=10)
        assert await one.logged_replies(KEY) == [entry(1), entry(2)]
    finally:
        await one.close()
        await two.close()


async def test_a_read_only_sqlite_store_reads_the_log(tmp_path: Path) -> None:
    writer = SQLiteStore(tmp_path / "s.db")
    await writer.commit(Session(KEY).advanced())
    await writer.log_replies(KEY, [entry(1)], keep=10)
    await writer.close()
    reader = SQLiteStore(tmp_path / "s.db", read_only=True)
    try:
        assert await reader.logged_replies(KEY) == [entry(1)]
    finally:
        await reader.close()
