"""Server-Sent Events of a session's logged replies, following the store.

A stream reads the reply log after the last seq it sent, writes what it finds, and waits: for a
reply this process logs for the session (at once), or `poll_seconds` (a reply another replica
logged). So every reply reaches every stream, wherever it was committed. Each event's id is the
reply's seq: a browser reconnecting sends it back as `Last-Event-ID` and misses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from typing import Any, Callable

from aiohttp import web

from convoflow.messages import SessionKey
from convoflow.stores.base import Store, StoreError

from convoflow.adapters.web.payloads import shown

log = logging.getLogger("convoflow.web")

KEEPALIVE_SECONDS = 15.0
"""A comment line this often keeps proxies from closing an idle stream."""
BATCH = 100


class Streams:
    """The open streams of this process, woken when a reply of their session is logged here."""

    def __init__(self, store: Store, poll_seconds: float) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self.closing = asyncio.Event()
        self._waiting: defaultdict[SessionKey, set[asyncio.Event]] = defaultdict(set)

    def wake(self, key: SessionKey) -> None:
        for event in self._waiting.get(key, ()):
            event.set()

    @property
    def open(self) -> int:
        return sum(len(events) for events in self._waiting.values())

    async def follow(self, request: web.Request, key: SessionKey, after: int, headers: dict[str, str]) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            **headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
        })
        await response.prepare(request)
        woken = asyncio.Event()
        self._waiting[key].add(woken)
        try:
            await response.write(b"retry: 1000\n\n")
            idle = 0.0
            while not self.closing.is_set() and not _gone(request):
                try:
                    entries = await self.store.logged_replies(key, after, BATCH)
                except StoreError as error:
                    log.warning("web stream of %s cannot read its replies: %s", key, error)
                    entries = []
                for entry in entries:
                    data = json.dumps(shown(entry), separators=(",", ":"))
                    await response.write(f"id: {entry['seq']}\nevent: reply\ndata: {data}\n\n".encode())
                    after = entry["seq"]
                if len(entries) == BATCH:
                    continue
                if entries:
                    idle = 0.0
                elif idle >= KEEPALIVE_SECONDS:
                    await response.write(b": keepalive\n\n")
                    idle = 0.0
                waited = await _first(woken.wait, self.closing.wait, timeout=self.poll_seconds)
                idle += 0.0 if waited else self.poll_seconds
                woken.clear()
        except ConnectionResetError:  # the visitor left
            pass
        finally:
            self._waiting[key].discard(woken)
            if not self._waiting[key]:
                del self._waiting[key]
        return response


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def _first(*waits: Callable[[], Any], timeout: float) -> bool:
    """Wait for the first of `waits` (at most `timeout` seconds); True when one came."""
    tasks = [asyncio.ensure_future(wait()) for wait in waits]
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    return bool(done)
