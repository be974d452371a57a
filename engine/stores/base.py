"""The Store protocol every backend implements, the session record it keeps, and its errors."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Protocol, Sequence

from convoflow.messages import SessionKey
from convoflow.types import JSON, StateDict

SEEN_LIMIT = 32
"""How many recent incoming ids a session remembers for de-duplication."""


@dataclass(frozen=True)
class Session:
    """One stored conversation.

    `revision` counts committed writes (0: never stored) and guards every commit. `state` is the
    replay state (None: not started). `outbox` holds replies committed but not yet delivered, as
    `{"seq", "to", "message"}` dicts, in order. `seen` lists recent incoming ids, newest last.
    `last` keeps the replies of the latest turn, so a returning user can be reminded where they are.
    `due` is when the session next needs a turn with no user message (a timer: a sleep ends, a
    question times out, a reminder is due), as Unix seconds (UTC), or None; stores index it.

    What time and the outside world leave with a session (see convoflow.mailbox): `idle_at`, when
    the conversation ends for idleness (the bot's `idle_timeout`); `inbox`, answers sent while the
    flow waited for something else; `events`, outside events no wait took yet; `remembered`,
    event and start ids processed (id -> when it may be forgotten), so a repeat is known for a
    day or more, not only among the last `seen`; `queued`, proactive starts waiting for the
    running conversation to end.
    """

    key: SessionKey
    revision: int = 0
    state: StateDict | None = None
    outbox: tuple[dict[str, Any], ...] = ()
    seen: tuple[str, ...] = ()
    address: dict[str, JSON] = field(default_factory=dict)
    next_seq: int = 1
    last: tuple[dict[str, Any], ...] = ()
    created: float = 0.0
    updated: float = 0.0
    due: float | None = None
    idle_at: float | None = None
    inbox: tuple[dict[str, Any], ...] = ()
    events: tuple[dict[str, Any], ...] = ()
    remembered: dict[str, float] = field(default_factory=dict)
    queued: tuple[dict[str, Any], ...] = ()

    @property
    def running(self) -> bool:
        """A conversation is running: started, and neither finished (the replay state records the
        top dialog's result once it has returned) nor cancelled (no state)."""
        return self.state is not None and "result" not in self.state

    def advanced(self, **changes: Any) -> Session:
        """The next revision of this session (what a commit writes)."""
        now = time.time()
        return replace(self, **changes, revision=self.revision + 1, created=self.created or now, updated=now)

    def to_record(self) -> dict[str, Any]:
        """The session as plain JSON data (how stores keep it)."""
        return {
            "partition": self.key.partition,
            "app": self.key.app,
            "revision": self.revision,
            "state": self.state,
            "outbox": list(self.outbox),
            "seen": list(self.seen),
            "address": self.address,
            "next_seq": self.next_seq,
            "last": list(self.last),
            "created": self.created,
            "updated": self.updated,
            "due": self.due,
            # kept only when there is something to keep: most sessions never have any
            **{name: value for name, value in (
                ("idle_at", self.idle_at), ("inbox", list(self.inbox)), ("events", list(self.events)),
                ("remembered", self.remembered), ("queued", list(self.queued)),
            ) if value},
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Session:
        return cls(
            key=SessionKey(record["partition"], record["app"]),
            revision=record["revision"],
            state=record.get("state"),
            outbox=tuple(record.get("outbox", ())),
            seen=tuple(record.get("seen", ())),
            address=record.get("address") or {},
            next_seq=record.get("next_seq", 1),
            last=tuple(record.get("last", ())),
            created=record.get("created", 0.0),
            updated=record.get("updated", 0.0),
            due=record.get("due"),
            idle_at=record.get("idle_at"),
            inbox=tuple(record.get("inbox", ())),
            events=tuple(record.get("events", ())),
            remembered=dict(record.get("remembered", {})),
            queued=tuple(record.get("queued", ())),
        )


class StoreError(Exception):
    """The store could not be reached or did not answer in time; nothing was written."""


class SessionTooLarge(StoreError):
    """The session would exceed the store's size limit; nothing was written."""


class Conflict(Exception):
    """Another writer committed this session first: reload and redo the turn."""

    def __init__(self, key: SessionKey, expected_revision: int):
        self.key, self.expected_revision = key, expected_revision
        super().__init__(f"session {key} moved past revision {expected_revision}")


class Store(Protocol):
    async def load(self, key: SessionKey) -> Session | None:
        """The stored session, or None. Never writes."""
        ...

    async def commit(self, session: Session) -> None:
        """Write `session` (revision N+1) only if the stored revision is still N, else raise Conflict.

        Revision 1 means "create": it conflicts when the session already exists.
        """
        ...

    async def mark_delivered(self, key: SessionKey, revision: int, through_seq: int) -> bool:
        """Drop outbox entries with seq <= through_seq.

        When the stored revision is still `revision`, the write also bumps it to revision + 1 and
        returns True; otherwise the entries are dropped without touching the revision (False).
        """
        ...

    async def list_sessions(self, partition: str | None = None, limit: int = 100) -> list[Session]:
        """Sessions of one partition and the partitions under it (`telegram:7:-100` also lists
        `telegram:7:-100:42`), or all sessions; most recently updated first. Never writes."""
        ...

    async def undelivered(self, app: str, since: float, until: float, limit: int = 100) -> list[Session]:
        """Sessions of `app` last updated in [since, until) (Unix seconds) whose outbox still holds
        replies, least recently updated first. Never writes."""
        ...

    async def due(self, app: str, until: float, limit: int = 100) -> list[Session]:
        """Sessions of `app` whose `due` time is at or before `until` (Unix seconds), earliest
        first. Never writes; the query is indexed, so it costs the same with any number of
        sessions waiting on later timers."""
        ...

    async def close(self) -> None: ...

    def scan(self, app: str, batch: int = 500) -> AsyncIterator[Session]:
        """Every session of `app`, in key order, read `batch` at a time: a streaming read, so any
        number of sessions passes through in bounded memory (what `convoflow check` replays).
        Sessions committed meanwhile may or may not be seen. Never writes."""
        ...

    async def log_replies(self, key: SessionKey, entries: Sequence[dict[str, Any]], keep: int) -> None:
        """Add `entries` (JSON objects, each with an int `seq`) to the session's reply log: what
        the web channel delivers, for history and for streams held by any replica. An entry whose
        seq is logged already is left as it was (a reply delivered twice is logged once). Only the
        entries within the `keep` highest sequence numbers are kept. The log lives beside the
        session record, so writing it never conflicts with a commit."""
        ...

    async def logged_replies(self, key: SessionKey, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """The session's logged replies with seq > `after`, in seq order, at most `limit`. Never writes."""
        ...

    async def latest_logged(self, keys: Sequence[SessionKey]) -> dict[SessionKey, int]:
        """The highest logged seq of each of `keys` that has logged replies: one query for any
        number of sessions (what a process's streams look at to learn of other replicas' replies).
        Never writes."""
        ...
