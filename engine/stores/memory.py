"""A store in this process's memory (tests, quick experiments). Records are kept as JSON text,
so it accepts and returns exactly what the persistent stores do."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Sequence

from convoflow.messages import SessionKey
from convoflow.stores.base import Conflict, Session


class MemoryStore:
    def __init__(self) -> None:
        self._records: dict[SessionKey, str] = {}
        self._reply_logs: dict[SessionKey, dict[int, str]] = {}
        self._revisions: dict[SessionKey, int] = {}
        """Each record's revision, so a commit checks it without parsing the record."""

    async def load(self, key: SessionKey) -> Session | None:
        text = self._records.get(key)
        return None if text is None else Session.from_record(json.loads(text))

    async def commit(self, session: Session) -> None:
        if self._revisions.get(session.key, 0) != session.revision - 1:
            raise Conflict(session.key, session.revision - 1)
        self._records[session.key] = json.dumps(session.to_record())
        self._revisions[session.key] = session.revision

    async def mark_delivered(self, key: SessionKey, revision: int, through_seq: int) -> bool:
        text = self._records.get(key)
        if text is None:
            return False
        record = json.loads(text)
        record["outbox"] = [item for item in record["outbox"] if item["seq"] > through_seq]
        current = record["revision"] == revision
        if current:
            record["revision"] = revision + 1
        self._records[key] = json.dumps(record)
        self._revisions[key] = record["revision"]
        return current

    async def list_sessions(self, partition: str | None = None, limit: int = 100) -> list[Session]:
        sessions = [
            Session.from_record(json.loads(text))
            for key, text in self._records.items()
            if partition is None or key.partition == partition or key.partition.startswith(partition + ":")
        ]
        sessions.sort(key=lambda s: s.updated, reverse=True)
        return sessions[:limit]

    async def undelivered(self, app: str, since: float, until: float, limit: int = 100) -> list[Session]:
        sessions = [Session.from_record(json.loads(text)) for key, text in self._records.items() if key.app == app]
        waiting = [s for s in sessions if s.outbox and since <= s.updated < until]
        waiting.sort(key=lambda s: s.updated)
        return waiting[:limit]

    async def due(self, app: str, until: float, limit: int = 100) -> list[Session]:
        sessions = [Session.from_record(json.loads(text)) for key, text in self._records.items() if key.app == app]
        waiting = [s for s in sessions if s.due is not None and s.due <= until]
        waiting.sort(key=lambda s: (s.due, s.key))
        return waiting[:limit]

    async def close(self) -> None:
        pass

    async def scan(self, app: str, batch: int = 500) -> AsyncIterator[Session]:
        for key in sorted(key for key in self._records if key.app == app):
            text = self._records.get(key)
            if text is not None:  # not deleted meanwhile
                yield Session.from_record(json.loads(text))

    async def log_replies(self, key: SessionKey, entries: Sequence[dict[str, Any]], keep: int) -> None:
        logged = self._reply_logs.setdefault(key, {})
        for entry in entries:
            logged.setdefault(int(entry["seq"]), json.dumps(entry))
        if logged:
            oldest_kept = max(logged) - keep
            for seq in [seq for seq in logged if seq <= oldest_kept]:
                del logged[seq]

    async def logged_replies(self, key: SessionKey, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        logged = self._reply_logs.get(key, {})
        return [json.loads(logged[seq]) for seq in sorted(seq for seq in logged if seq > after)[:limit]]

    async def latest_logged(self, keys: Sequence[SessionKey]) -> dict[SessionKey, int]:
        return {key: max(self._reply_logs[key]) for key in keys if self._reply_logs.get(key)}
