"""Turns no user message starts (a timer firing, an outside event, a proactive start), and what
every turn leaves for the scheduler: the session's next due time.

Each is an `Incoming` of its own kind with an id that makes it unique: `timer:<due>` (a timer due
then fires once, however many processes try), `event:<event id>` and `start:<start id>` (the
caller's ids, remembered with the session for at least `remember_ids` seconds, not only among
the last few dozen ids a session has seen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from convoflow.dialogs import BaseDialog, DialogCall
from convoflow.mailbox import KEEP_EVENTS_SECONDS, Mailbox
from convoflow.messages import Incoming, Reply, SessionKey
from convoflow.player import Play
from convoflow.replay import require_json, storable
from convoflow.stores.base import Session
from convoflow.types import JSON

IfRunning = Literal["skip", "replace", "queue"]
Outcome = Literal[
    "ok", "finished", "restarted", "cancelled", "duplicate",  # handled
    "timed_out", "idle", "stale", "kept", "started", "replaced", "queued", "skipped", "unknown",  # time, events, starts
    "failed", "store_error", "undelivered", "conflicted",  # flow raised / store down / send failed
]
"""`timed_out`: an uncaught TimedOut ended the conversation; `idle`: the idle timeout did; `stale`:
a timer fired for a time the session is no longer due at (nothing done); `kept`: an outside event
no wait took, kept for later; `unknown`: an event for a session that does not exist (nothing
stored); the rest name what a proactive start did (see StartOutcome)."""

REMEMBER_IDS_SECONDS = 86_400.0
"""How long event and start ids are remembered by default."""
REMEMBERED_LIMIT = 1000
"""Ids a session remembers at most; past it, those due to be forgotten soonest go first."""
QUEUE_LIMIT = 20
"""Starts a session queues at most behind its running conversation; past it, a start is skipped."""


@dataclass(frozen=True)
class SignalOutcome:
    """What `Engine.signal` did: "delivered" (a waiting flow took the event), "kept" (no wait for
    it yet: kept for a later one), "duplicate" (this event id was processed before) or "unknown"
    (no such session: nothing was stored) or "failed" (the flow raised on it: the user got the
    apology and the session stays as it was)."""

    status: Literal["delivered", "kept", "duplicate", "unknown", "failed"]
    replies: tuple[Reply, ...] = ()


@dataclass(frozen=True)
class StartOutcome:
    """What `Engine.start` did: "started", "replaced" (the running conversation was dropped for
    it), "queued" (it starts when the running one ends), "skipped" (a conversation was running)
    "duplicate" (this start id was processed before) or "failed" (the dialog raised at once)."""

    status: Literal["started", "replaced", "queued", "skipped", "duplicate", "failed"]
    replies: tuple[Reply, ...] = ()


def timer_incoming(key: SessionKey, due: float) -> Incoming:
    return Incoming(key, f"timer:{due!r}", "timer", value=due)


def event_incoming(key: SessionKey, name: str, data: JSON, event_id: str) -> Incoming:
    if not isinstance(name, str) or not name:
        raise ValueError(f"an event name must be a non-empty str, not {name!r}")
    _check_id(event_id, "event_id")
    require_json(data, ("signal",), f"event {name!r}")  # refused here, before anything is stored
    return Incoming(key, f"event:{event_id}", "event", text=name, value=data)


def start_incoming(
    key: SessionKey, dialog: BaseDialog[Any] | None, address: dict[str, JSON], start_id: str, if_running: IfRunning,
) -> Incoming:
    _check_id(start_id, "start_id")
    if if_running not in ("skip", "replace", "queue"):
        raise ValueError(f"if_running must be 'skip', 'replace' or 'queue', not {if_running!r}")
    if dialog is not None and not isinstance(dialog, DialogCall):
        raise TypeError(f"start() takes a @dialog call (e.g. promo(\"spring\")) or None, not {dialog!r}")
    spec = None if dialog is None else storable(dialog.spec(), (dialog.name,), "start")
    return Incoming(key, f"start:{start_id}", "start", value={"dialog": spec, "if_running": if_running},
                    address=address)


def _check_id(value: Any, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty str, not {value!r}")


def is_remembered(session: Session, incoming_id: str, now: float) -> bool:
    until = session.remembered.get(incoming_id)
    return until is not None and until > now


def remembered_with(session: Session, incoming: Incoming, now: float, keep: float) -> dict[str, float]:
    """The session's remembered ids, expired ones gone, with an event's or start's id added."""
    kept = {key: until for key, until in session.remembered.items() if until > now}
    if incoming.kind in ("event", "start"):
        kept[incoming.id] = now + keep
    if len(kept) > REMEMBERED_LIMIT:
        kept = dict(sorted(kept.items(), key=lambda item: item[1])[-REMEMBERED_LIMIT:])
    return kept


def mailbox_of(session: Session, keep_events: float = KEEP_EVENTS_SECONDS, answers: bool = True) -> Mailbox:
    """The session's kept answers and events; without `answers` the answers are dropped (the
    conversation starts afresh: what was sent for the old one is not for it)."""
    return Mailbox(session.inbox if answers else (), session.events, keep_events)


def mailbox_fields(mailbox: Mailbox) -> dict[str, Any]:
    return {"inbox": tuple(mailbox.answers), "events": tuple(mailbox.events)}


def schedule(play: Play | None, running: bool, session: Session, now: float, idle_timeout: float | None) -> dict[str, Any]:
    """The session's next due time after a turn: the soonest of its wait's timeout or reminder and
    its idle timeout. The idle timeout runs while the flow waits for the user or an event (not
    during a sleep), from the moment that wait began."""
    pending = play.pending if play is not None and running else None
    idle_at = None
    if pending is not None and idle_timeout is not None and (pending.answer or pending.events):
        idle_at = now + idle_timeout if pending.began_now or session.idle_at is None else session.idle_at
    times = [t for t in (pending.due if pending else None, idle_at) if t is not None]
    return {"due": min(times) if times else None, "idle_at": idle_at}


def idle_is_due(session: Session, due: float, now: float) -> bool:
    """Whether a timer turn at `due` is the idle timeout's (it is the session's soonest time)."""
    return session.idle_at is not None and session.due == session.idle_at and session.idle_at <= max(now, due)


def fired_due(incoming: Incoming) -> float:
    due = incoming.value
    if not isinstance(due, (int, float)) or isinstance(due, bool) or not math.isfinite(due):
        raise ValueError(f"a timer turn needs its due time, not {due!r}")
    return float(due)
