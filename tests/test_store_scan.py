"""`Store.scan`: every store streams one bot's sessions alike, page by page (the read
`convoflow check` makes), in the contract suite's style: the same tests on every backend."""

from __future__ import annotations

import pytest

from convoflow.messages import SessionKey
from convoflow.stores import Session, Store
from convoflow.stores.sqlite import SQLiteStore

from tests.support.store_backends import STORE_BACKENDS, open_backend


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    opened: Store = await open_backend(request.param, tmp_path, request)
    yield opened
    await opened.close()


async def stored(store: Store, partition: str, app: str, state: dict | None = None) -> Session:  # type: ignore[type-arg]
    session = Session(SessionKey(partition, app)).advanced(state=state or {"frame": {"name": "main", "log": []}})
    await store.commit(session)
    return session


@pytest.mark.parametrize("batch", [1, 3, 7, 500])
async def test_scan_yields_every_session_of_the_app_once_in_key_order(store: Store, batch: int) -> None:
    partitions = [f"telegram:7:{n}" for n in (5, 42, 3, 100, 7, 8)] + ["slack:-:T1:D2", "console:local"]
    for partition in partitions:
        await stored(store, partition, "guessbot")
        await stored(store, partition, "signup")  # another bot's: never in guessbot's scan
    scanned = [session async for session in store.scan("guessbot", batch=batch)]
    assert [str(s.key) for s in scanned] == sorted(f"{p}/guessbot" for p in partitions)
    assert all(s.revision == 1 and s.state == {"frame": {"name": "main", "log": []}} for s in scanned)


async def test_scan_of_an_app_without_sessions_is_empty(store: Store) -> None:
    await stored(store, "telegram:7:1", "signup")
    assert [session async for session in store.scan("guessbot")] == []


async def test_scan_writes_nothing(store: Store) -> None:
    for n in range(5):
        await stored(store, f"telegram:7:{n}", "guessbot")
    before = [await store.load(SessionKey(f"telegram:7:{n}", "guessbot")) for n in range(5)]
    assert len([session async for session in store.scan("guessbot", batch=2)]) == 5
    assert [await store.load(SessionKey(f"telegram:7:{n}", "guessbot")) for n in range(5)] == before


async def test_a_session_committed_amid_a_scan_does_not_break_it(store: Store) -> None:
    for n in range(6):
        await stored(store, f"p:{n}", "guessbot")
    seen = []
    async for session in store.scan("guessbot", batch=2):
        seen.append(str(session.key))
        if len(seen) == 1:
            await stored(store, "p:9", "guessbot")  # after the cursor: may or may not be seen
            await store.commit(session.advanced(state={"frame": {"name": "main", "log": [["x", 1]]}}))
    assert seen[:6] == [f"p:{n}/guessbot" for n in range(6)] and len(seen) == len(set(seen))


async def test_a_read_only_sqlite_store_scans(tmp_path) -> None:  # type: ignore[no-untyped-def]
    writer = SQLiteStore(tmp_path / "s.db")
    await stored(writer, "telegram:7:1", "guessbot")
    await writer.close()
    reader = SQLiteStore(tmp_path / "s.db", read_only=True)
    try:
        assert [str(s.key) async for s in reader.scan("guessbot")] == ["telegram:7:1/guessbot"]
    finally:
        await reader.close()
