"""Answers first: Slack requests in hand are answered before replies are posted.

A turn commits, its request is answered, and its replies are posted, all on one event loop. Posting
a reply (slack_sdk building the call, aiohttp sending it, reading Slack's answer) costs more CPU
than answering a request, and every step ready to run waits for all the steps queued before it:
with many DMs at once, a request's few steps would each wait behind the steps of dozens of posts.
So a post waits while requests are open (received, not yet answered), and once none is, the posts
waiting go one per turn of the event loop, so a request arriving meanwhile waits behind one post,
not all of them. The wait is bounded (`longest_wait`), so replies are never held up for long by a
steady stream of requests; their order is unchanged (a session's replies are posted one after
another, each waiting here in turn).
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from typing import Iterator

LONGEST_WAIT = 0.25
"""Seconds a post waits at most for the requests in hand to be answered."""


class AnswersFirst:
    def __init__(self, longest_wait: float = LONGEST_WAIT) -> None:
        self.longest_wait = longest_wait
        self.open = 0
        """Requests received and not yet answered."""
        self.waits = 0
        """Posts that waited for requests to be answered (a count for tests and metrics)."""
        self._waiting: dict[asyncio.Future[None], None] = {}
        """The posts waiting, first come first released."""
        self._releasing = False
        """A release of the next waiting post is scheduled."""

    @property
    def waiting(self) -> int:
        """Posts waiting now."""
        return len(self._waiting)

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Around the handling of one request, up to its answer."""
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1
            if self.open == 0:
                self._release_soon()

    async def before_post(self) -> None:
        """Return once no request is open and the posts that waited before this one have gone,
        or `longest_wait` has passed."""
        if self.open == 0 and not self._waiting:
            return
        self.waits += 1
        # A future and a timer per post, not a task (asyncio.wait_for's): posts are many.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiting[waiter] = None
        timer = loop.call_later(self.longest_wait, _release, waiter)
        if self.open == 0:
            self._release_soon()
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiting.pop(waiter, None)  # released by its timer (or cancelled): not kept

    def _release_soon(self) -> None:
        if self._waiting and not self._releasing:
            self._releasing = True
            asyncio.get_running_loop().call_soon(self._release_next)

    def _release_next(self) -> None:
        """Release the first post waiting, while no request is open; the next one goes at the next
        turn of the loop, after the steps this one's release has made ready."""
        self._releasing = False
        if self.open:
            return
        while self._waiting:
            waiter = next(iter(self._waiting))
            del self._waiting[waiter]
            if not waiter.done():  # not released by its timer already
                waiter.set_result(None)
                break
        self._release_soon()


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
