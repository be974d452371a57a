"""Writes that arrive while a batch of them is on its way wait, then go together in the next batch.

What group commit (SQLite: one transaction, one fsync) and bulk writes (MongoDB: one round trip)
share. A quiet store sends every write at once, alone; a busy one sends fewer, larger batches, with
no timer and no added wait. Each write gets its own answer, and only once its batch has run.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

W = TypeVar("W")


@dataclass(frozen=True)
class _Waiting(Generic[W]):
    write: W
    answer: asyncio.Future[object]


class Batches(Generic[W]):
    """Runs writes in batches with `run(writes)`, which returns one outcome per write, in order:
    its result, or the exception it failed with. An exception `run` raises fails the whole batch."""

    def __init__(self, run: Callable[[list[W]], Awaitable[list[object]]]) -> None:
        self._run = run
        self._waiting: list[_Waiting[W]] = []
        self._sender: asyncio.Task[None] | None = None

    async def send(self, write: W) -> object:
        """The outcome of `write`, once the batch holding it has run (raised when it failed). A
        caller cancelled before its batch leaves drops its write; after that, the write stands."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(write, loop.create_future())
        self._waiting.append(waiting)
        if self._sender is None or self._sender.done():
            # A context of its own: the batches it sends are every caller's, not the first one's
            # (whose timeouts, say, would otherwise bound them all).
            self._sender = loop.create_task(self._send_all(), context=contextvars.Context())
        return await waiting.answer

    async def drained(self) -> None:
        """Return once every write sent so far has run."""
        if self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    async def _send_all(self) -> None:
        while self._waiting:
            batch = [waiting for waiting in self._waiting if not waiting.answer.done()]
            self._waiting = []
            if not batch:
                continue
            try:
                outcomes = await self._run([waiting.write for waiting in batch])
            except Exception as error:
                outcomes = [error] * len(batch)
            for waiting, outcome in zip(batch, outcomes):
                if waiting.answer.done():
                    continue
                if isinstance(outcome, BaseException):
                    waiting.answer.set_exception(outcome)
                else:
                    waiting.answer.set_result(outcome)
