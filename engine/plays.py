"""The one cache of suspended plays: dialogs kept suspended between turns, so that the next turn
resumes them instead of replaying the record.

A play is kept for one version of what it was built from: the Engine keys them by session and
checks the session's revision; the seed runners keep them by the state object they play, for as
long as its caller holds it (PlaysByState). Least
recently used plays are closed beyond the limit. A replay gives the same result as a kept play,
so losing one (eviction, a restart, another server) only costs time.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Hashable, TypeVar

from convoflow.player import Play
from convoflow.replay import DialogState

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


@dataclass
class _Held:
    caller: weakref.ref[DialogState]
    play: Play


class PlaysByState:
    """The seed runners' suspended plays, each kept for as long as the caller holds the state it
    plays, and no longer.

    A kept play works on a private copy of the caller's state (its attributes copied back after
    every turn), so the cache holds the caller's state only weakly: a persister that rebuilds the
    state from JSON text every turn drops the old state, and its play, which no one can resume
    again, is closed explicitly at the start of the next `take` or `keep` (flow `finally` blocks run
    there, not in the garbage collector). A state the caller keeps resumes its play. Beyond `limit`
    kept states the least recently used plays are closed.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: OrderedDict[int, _Held] = OrderedDict()
        self._released: list[int] = []

    def __len__(self) -> int:
        return len(self._held)

    def take(self, state: DialogState) -> Play | None:
        """The play suspended at exactly this state, removed from the cache; None when there is none
        (the turn then replays, on a private copy: see convoflow.runners.prepare)."""
        self.close_released()
        held = self._held.pop(id(state), None)
        if held is None:
            return None
        private = held.play.state
        if held.caller() is state and held.play.usable and _same(private, state):
            return held.play
        close_quietly(held.play)
        return None

    def keep(self, state: DialogState, play: Play) -> None:
        self.close_released()
        if self.limit <= 0:
            close_quietly(play)
            return
        key = id(state)
        old = self._held.pop(key, None)
        if old is not None and old.play is not play:
            close_quietly(old.play)
        self._held[key] = _Held(weakref.ref(state, lambda _gone: self._released.append(key)), play)
        while len(self._held) > self.limit:
            _, evicted = self._held.popitem(last=False)
            close_quietly(evicted.play)

    def close_released(self) -> None:
        """Close the plays whose caller's state is gone (the key may since hold a newer state)."""
        while self._released:
            key = self._released.pop()
            held = self._held.get(key)
            if held is not None and held.caller() is None:
                del self._held[key]
                close_quietly(held.play)


def private_copy(state: DialogState) -> DialogState:
    """A state sharing the caller's parts, for a play to work on while the caller holds the original."""
    copy = DialogState(frame=state.frame)
    copy.call, copy.result, copy.fallback = state.call, state.result, state.fallback
    return copy


def copy_back(private: DialogState, copy_to: DialogState) -> None:
    copy_to.frame, copy_to.call, copy_to.result, copy_to.fallback = (
        private.frame, private.call, private.result, private.fallback,
    )


def _same(private: DialogState, state: DialogState) -> bool:
    """Whether the caller's state still is what the play left it (not changed behind its back)."""
    return (
        private.frame is state.frame and private.call is state.call
        and private.result is state.result and private.fallback is state.fallback
    )


def close_quietly(play: Play) -> None:
    """Close a play; flow code that misbehaves on the way out (a generator that yields on
    GeneratorExit, a `finally` that raises) is logged, never passed on."""
    try:
        play.close()
    except asyncio.CancelledError:
        raise
    except BaseException:  # noqa: BLE001 - flow code: nothing it raises may stop the process
        log.warning("closing the suspended dialog %r raised", play.top.name, exc_info=True)
