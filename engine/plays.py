"""The one cache of suspended plays: dialogs kept suspended between turns, so that the next turn
resumes them instead of replaying the record.

A play is kept for one version of what it was built from: the Engine keys them by session and
checks the session's revision; the seed runners key them by the state object they play. Least
recently used plays are closed beyond the limit. A replay gives the same result as a kept play,
so losing one (eviction, a restart, another server) only costs time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Hashable, TypeVar

from convoflow.player import Play

log = logging.getLogger("convoflow.engine")

K = TypeVar("K", bound=Hashable)


@dataclass
class _Kept:
    version: object
    play: Play


class SuspendedPlays(Generic[K]):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: OrderedDict[K, _Kept] = OrderedDict()

    def take(self, key: K, version: object) -> Play | None:
        """The play kept for `key` at this very `version`, removed from the cache (the turn that
        takes it puts it back with `keep` once it has committed); None when there is none."""
        kept = self._kept.pop(key, None)
        if kept is None:
            return None
        if kept.version == version and kept.play.usable:
            return kept.play
        close_quietly(kept.play)
        return None

    def keep(self, key: K, version: object, play: Play) -> None:
        if self.limit <= 0:
            close_quietly(play)
            return
        old = self._kept.pop(key, None)
        if old is not None and old.play is not play:
            close_quietly(old.play)
        self._kept[key] = _Kept(version, play)
        while len(self._kept) > self.limit:
            _, evicted = self._kept.popitem(last=False)
            close_quietly(evicted.play)

    def advance(self, key: K, old: object, new: object) -> None:
        """The session moved from version `old` to `new` without its state changing (replies marked
        delivered, or claimed): a play kept at `old` still fits."""
        kept = self._kept.get(key)
        if kept is not None and kept.version == old:
            kept.version = new

    def forget(self, key: K) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None:
            close_quietly(kept.play)


def close_quietly(play: Play) -> None:
    """Close a play; flow code that misbehaves on the way out (a generator that yields on
    GeneratorExit, a `finally` that raises) is logged, never passed on."""
    try:
        play.close()
    except asyncio.CancelledError:
        raise
    except BaseException:  # noqa: BLE001 - flow code: nothing it raises may stop the process
        log.warning("closing the suspended dialog %r raised", play.top.name, exc_info=True)
