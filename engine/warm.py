"""The session records this process wrote last, so that a warm turn commits without loading first.

The commit stays conditional on the revision, so a record another worker has moved on only costs
a conflict, a reload and the turn redone. The one write that changes a record without moving its
revision on is `mark_delivered` finding another revision: it drops delivered replies all the same.
So a record is only reused while every reply in its outbox is this worker's (another worker's
may be dropped under it by that worker's mark), and with every reply this worker has sent
left out (its own mark may land on a later revision, or its answer arrive after the commit it
overtook). Turns that would end without a write (a duplicate, a stale timer, nothing running)
reload before they decide: only a commit checks the revision.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

from convoflow.messages import SessionKey
from convoflow.stores.base import Session


@dataclass
class _Known:
    session: Session | None
    through: int = 0
    """The highest seq this worker has sent in the session (gone, or going, from the store)."""


class WarmSessions:
    """The latest record this worker wrote of each of its `limit` most recent sessions."""

    def __init__(self, worker: str, limit: int) -> None:
        self.worker = worker
        self.limit = limit
        self._known: OrderedDict[SessionKey, _Known] = OrderedDict()

    def get(self, key: SessionKey) -> Session | None:
        """The session as this worker last wrote it, when a turn may commit on it unread."""
        known = self._known.get(key)
        if known is None or known.session is None:
            return None
        session = _after(known.session, known.through)
        if any(item.get("by") != self.worker for item in session.outbox):
            return None
        self._known.move_to_end(key)
        return session

    def wrote(self, session: Session) -> None:
        """`session` is what the store now holds (a commit of this worker succeeded)."""
        known = self._known.get(session.key)
        if known is None:
            if self.limit <= 0:
                return
            self._known[session.key] = _Known(session)
            while len(self._known) > self.limit:
                self._known.popitem(last=False)
        else:
            known.session = session
            self._known.move_to_end(session.key)

    def marked(self, session: Session, through: int, current: bool) -> None:
        """The replies of `session` up to `through` were sent and marked delivered; `current` when
        the mark moved the session on from `session.revision` (else it dropped them alone)."""
        known = self._known.get(session.key)
        if known is None:
            return
        known.through = max(known.through, through)
        if current and known.session is not None and known.session.revision <= session.revision:
            known.session = replace(_after(session, through), revision=session.revision + 1)

    def forget(self, key: SessionKey) -> None:
        """What this worker knew of the session may be out of date (a write failed or conflicted)."""
        known = self._known.get(key)
        if known is not None:
            known.session = None


def _after(session: Session, through: int) -> Session:
    if not through or not session.outbox or session.outbox[0]["seq"] > through:
        return session
    return replace(session, outbox=tuple(item for item in session.outbox if item["seq"] > through))
