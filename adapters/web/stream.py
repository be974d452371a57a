"""Server-Sent Events of a session's logged replies, following the store.

A stream reads the reply log after the last seq it sent, writes what it finds, and waits to be
woken: at once by a reply this process logs for its session (written as it was logged, with no
read when it follows on what the stream sent), or by the process's one poller, which
asks the store every `poll_seconds` for the latest seq of every session with a stream open here
(one query for all of them) and wakes those that moved (a reply another replica logged). So every
reply reaches every stream, wherever it was committed. Each event's id is the reply's seq: a
browser reconnecting sends it back as `Last-Event-ID` and misses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from convoflow.messages import SessionKey
from convoflow.stores.base import Store, StoreError

from convoflow.adapters.web.payloads import shown

log = logging.getLogger("convoflow.web")

KEEPALIVE_SECONDS = 15.0
"""A comment line this often keeps proxies from closing an idle stream (and finds departed visitors)."""
BATCH = 100


@dataclass
class Waiter:
    """One open stream's wake-up: `pushed` holds the replies this process logged for its session
    since it last looked (written without reading the store when they follow on what it sent);
    `look` says to read the store (a reply another replica logged, or a gap)."""

    woken: asyncio.Event = field(default_factory=asyncio.Event)
    pushed: list[dict[str, Any]] = field(default_factory=list)
    look: bool = True

    def take(self, after: int) -> list[dict[str, Any]] | None:
        """The pushed replies to send after seq `after`, or None when the store must be read."""
        pushed = [entry for entry in self.pushed if entry["seq"] > after]
        self.pushed = []
        look, self.look = self.look, False
        if look or any(entry["seq"] != after + n for n, entry in enumerate(pushed, 1)):
            return None
        return pushed


class Streams:
    """The open streams of this process, and the poller that wakes them for other replicas' replies."""

    def __init__(self, store: Store, poll_seconds: float) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self.closing = asyncio.Event()
        self._waiting: defaultdict[SessionKey, list[Waiter]] = defaultdict(list)
        self._latest: dict[SessionKey, int] = {}
        """The latest seq each watched session is known to have logged."""
        self._poller: asyncio.Task[None] | None = None

    def pushed(self, key: SessionKey, entry: dict[str, Any]) -> None:
        """This process logged `entry` for `key`: its streams send it at once."""
        if key not in self._waiting:
            return
        self._latest[key] = max(entry["seq"], self._latest.get(key, 0))
        for waiter in self._waiting[key]:
            waiter.pushed.append(entry)
            waiter.woken.set()

    @property
    def open(self) -> int:
        return sum(len(waiters) for waiters in self._waiting.values())

    async def follow(self, request: web.Request, key: SessionKey, after: int, headers: dict[str, str]) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            **headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
        })
        await response.prepare(request)
        waiter = self._watch(key)
        try:
            await response.write(b"retry: 1000\n\n")
            while not self.closing.is_set():
                waiter.woken.clear()  # before reading: a reply logged meanwhile wakes the next round
                entries = waiter.take(after)
                if entries is None:
                    try:
                        entries = await self.store.logged_replies(key, after, BATCH)
                    except StoreError as error:
                        log.warning("web stream of %s cannot read its replies: %s", key, error)
                        waiter.look, entries = True, []
                for entry in entries:
                    data = json.dumps(shown(entry), separators=(",", ":"))
                    await response.write(f"id: {entry['seq']}\nevent: reply\ndata: {data}\n\n".encode())
                    after = entry["seq"]
                if len(entries) == BATCH:
                    continue
                if not await _first(waiter.woken, self.closing, timeout=KEEPALIVE_SECONDS):
                    await response.write(b": keepalive\n\n")
        except ConnectionResetError:  # the visitor left
            pass
        finally:
            self._unwatch(key, waiter)
        return response

    def _watch(self, key: SessionKey) -> Waiter:
        waiter = Waiter()
        self._waiting[key].append(waiter)
        self._latest.pop(key, None)  # unknown yet: the poller's first look wakes it, closing any gap
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="web-streams-poller")
        return waiter

    def _unwatch(self, key: SessionKey, waiter: Waiter) -> None:
        self._waiting[key].remove(waiter)
        if not self._waiting[key]:
            del self._waiting[key]
            self._latest.pop(key, None)

    async def _poll(self) -> None:
        while self._waiting and not self.closing.is_set():
            await _first(self.closing, timeout=self.poll_seconds)
            keys = list(self._waiting)
            if not keys or self.closing.is_set():
                continue
            try:
                latest = await self.store.latest_logged(keys)
            except StoreError as error:
                log.warning("web streams cannot look for new replies: %s", error)
                continue
            except Exception:  # noqa: BLE001 - the poller must outlive any one failure
                log.exception("web streams poller failed")
                continue
            for key in keys:
                seq = latest.get(key, 0)
                if key in self._waiting and seq != self._latest.get(key):
                    self._latest[key] = seq
                    for waiter in self._waiting[key]:
                        waiter.look = True
                        waiter.woken.set()


async def _first(*events: asyncio.Event, timeout: float) -> bool:
    """Wait for the first of `events` to be set (at most `timeout` seconds); True when one was."""
    tasks = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    return bool(done)
