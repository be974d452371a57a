"""Long polling, at least once: an update's offset is confirmed to Telegram only after its turn
has committed.

`getUpdates(offset)` tells Telegram that every update below `offset` was handled. PTB's updater
confirms what it fetched at its next call, before the turns ran; this poller confirms a batch of
updates once each of them has committed (or was left alone by design). An update whose turn did
not commit (the store down, the process killed mid-turn) is fetched again, from it onwards, and
the ones after it that had committed are recognised by their `update_id` and not handled twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Sequence

from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, NetworkError, TelegramError

log = logging.getLogger("convoflow.telegram")

REFETCH_PAUSES = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Pauses before fetching again an update that did not commit (or after a failed getUpdates)."""

Through = Callable[[Update], Awaitable[bool]]
"""Takes one update through its turn: True once it committed (or needs nothing), False when not."""


class Poller:
    def __init__(self, bot: Bot, through: Through, timeout: float, allowed: Sequence[str]) -> None:
        self.bot, self.through, self.timeout, self.allowed = bot, through, timeout, list(allowed)
        self.offset: int | None = None
        """The next update id to fetch: every update below it has committed."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.bot.delete_webhook()  # getUpdates is refused while a webhook is set
        self._task = asyncio.create_task(self._run(), name="telegram-polling")

    async def stop(self) -> None:
        """Stop fetching; the turns of fetched updates go on (the caller drains them)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def confirm(self) -> None:
        """Tell Telegram which updates have committed (at shutdown, once the turns have drained)."""
        if self.offset is None:
            return
        try:
            await self.bot.get_updates(offset=self.offset, timeout=0, limit=1, allowed_updates=self.allowed)
        except TelegramError as error:  # they are fetched again, and recognised as done
            log.info("could not confirm updates below %s at shutdown: %s", self.offset, error)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                updates = await self.bot.get_updates(offset=self.offset, timeout=int(self.timeout),
                                                     allowed_updates=self.allowed)
            except (InvalidToken, Conflict) as error:  # another process polls, or the token was revoked
                log.error("getUpdates refused: %s", error)
                failures += 1
            except NetworkError as error:
                log.info("getUpdates failed: %s", error)
                failures += 1
            else:
                failures = 0 if not updates or await self._batch(updates) else failures + 1
            if failures:
                await asyncio.sleep(REFETCH_PAUSES[min(failures, len(REFETCH_PAUSES)) - 1])

    async def _batch(self, updates: Sequence[Update]) -> bool:
        """Take a batch through (chats concurrently; the Engine keeps each chat's order), then move
        the offset past the updates that committed, up to the first that did not."""
        done = await asyncio.gather(*(self._safely(update) for update in updates))
        failed = [update.update_id for update, ok in zip(updates, done) if not ok]
        self.offset = min(failed) if failed else max(update.update_id for update in updates) + 1
        return not failed

    async def _safely(self, update: Update) -> bool:
        try:
            return await self.through(update)
        except Exception:  # noqa: BLE001 - one update's trouble never stops the polling
            log.exception("update %s failed", update.update_id)
            return False
