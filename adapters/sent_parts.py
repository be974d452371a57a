"""What a channel remembers of the replies it is delivering: which parts of each are already out,
and how many replies it dropped or re-rendered, by reason.

A long reply goes out as several messages. When one part fails on a transient error, the reply
stays in the outbox and is attempted again later (the update redelivered, the session's next turn,
the sweep); that attempt skips the parts this process has already sent, so the user gets each part
once. The memory is this process's and bounded (the oldest unfinished replies are forgotten
first); a reply is forgotten as soon as it is out in full or dropped. Parts are sent in order, so
what a retry skips is always a prefix of what the user has seen. A reply is known by its address,
its number in its session and its content (a Reply carries no session key; two sessions'
replies would have to agree in all three to be taken for one).

Across processes this memory is not shared: a reply left half sent by a process that was then
killed (or that stopped delivering it, so that another worker took it over) starts again from its
first part in the worker that takes it over. That is the one repeat left, the same as for a whole
reply whose worker dies between sending it and recording it as sent.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, OrderedDict
from typing import Awaitable, Callable, Iterable, TypeVar

from convoflow.messages import Reply, message_to_dict
from convoflow.delivery import Undeliverable

Part = TypeVar("Part")

REMEMBERED_REPLIES = 10_000
"""Unfinished replies remembered per channel; each costs a digest and the labels of its sent parts."""


class Deliveries:
    """One channel's memory of parts sent (see the module) and its tallies of replies dropped and
    re-rendered, by reason (shown in /metrics as convoflow_replies_dropped/_rerendered)."""

    def __init__(self, limit: int = REMEMBERED_REPLIES) -> None:
        self.limit = limit
        self.dropped: Counter[str] = Counter()
        self.rerendered: Counter[str] = Counter()
        self._sent: OrderedDict[bytes, set[str]] = OrderedDict()

    def of(self, reply: Reply) -> Progress:
        """The delivery of one reply, with what of it this process already sent."""
        return Progress(self, reply_id(reply))

    async def send_all(self, reply: Reply, parts: Iterable[Part], send: Callable[[Part], Awaitable[None]]) -> None:
        """Send `parts` in order, skipping those already sent; an Undeliverable part drops the
        reply (counted under the kind of error that caused it), any other error leaves the rest
        for a later attempt."""
        parts = list(parts)
        if len(parts) == 1 and not self._sent:  # the common case: nothing to skip or remember
            try:
                await send(parts[0])
            except Undeliverable as error:
                self.dropped[type(error.__cause__).__name__ if error.__cause__ else "Undeliverable"] += 1
                raise
            return
        progress = self.of(reply)
        for index, part in enumerate(parts):
            label = str(index)
            if progress.sent(label):
                continue
            try:
                await send(part)
            except Undeliverable as error:
                progress.drop(type(error.__cause__).__name__ if error.__cause__ else "Undeliverable")
                raise
            progress.mark(label)
        progress.finish()

    def __len__(self) -> int:
        return len(self._sent)


class Progress:
    """Which parts of one reply are out. Labels name parts ("0", "1", "1.0" for a re-rendered part)."""

    def __init__(self, deliveries: Deliveries, reply: bytes) -> None:
        self._deliveries, self._reply = deliveries, reply

    def sent(self, label: str) -> bool:
        return label in self._deliveries._sent.get(self._reply, ())

    def mark(self, label: str) -> None:
        sent = self._deliveries._sent
        sent.setdefault(self._reply, set()).add(label)
        sent.move_to_end(self._reply)
        while len(sent) > self._deliveries.limit:
            sent.popitem(last=False)

    def finish(self) -> None:
        """The reply is out in full: nothing left to remember."""
        self._deliveries._sent.pop(self._reply, None)

    def drop(self, reason: str) -> None:
        """The reply will never be delivered: forget it and count it."""
        self.finish()
        self._deliveries.dropped[reason] += 1

    def rerendered(self, reason: str) -> None:
        self._deliveries.rerendered[reason] += 1


def reply_id(reply: Reply) -> bytes:
    """A digest of where a reply goes, its number in the session and what it says: two replies
    alike in all three are one (a session's replies are numbered, and sessions differ in address)."""
    data = json.dumps([reply.address, reply.seq, message_to_dict(reply.message)], sort_keys=True, default=repr)
    return hashlib.blake2b(data.encode("utf-8", "surrogatepass"), digest_size=16).digest()
