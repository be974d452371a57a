"""Round trips to a store, counted: MongoDB's on the wire (PyMongo's command monitoring), the
other stores' as calls through a wrapper (they have no wire; each call is one trip, for SQLite to
its thread)."""

from __future__ import annotations

from pymongo import monitoring

from convoflow.messages import SessionKey
from convoflow.stores import Session, Store


class MongoCommands(monitoring.CommandListener):
    """The name of every command sent, in order: every round trip to MongoDB."""

    def __init__(self) -> None:
        self.names: list[str] = []

    @property
    def count(self) -> int:
        return len(self.names)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> list[str]:
        """The commands since the last take."""
        names, self.names = self.names, []
        return names


class CountingStore:
    """Counts the calls made into the store it passes them to."""

    def __init__(self, store: Store) -> None:
        self.store, self.count = store, 0

    async def load(self, key: SessionKey) -> Session | None:
        self.count += 1
        return await self.store.load(key)

    async def commit(self, session: Session) -> None:
        self.count += 1
        await self.store.commit(session)

    async def mark_delivered(self, key: SessionKey, revision: int, through_seq: int) -> bool:
        self.count += 1
        return await self.store.mark_delivered(key, revision, through_seq)

    async def list_sessions(self, partition: str | None = None, limit: int = 100) -> list[Session]:
        self.count += 1
        return await self.store.list_sessions(partition, limit)

    async def undelivered(self, app: str, since: float, until: float, limit: int = 100) -> list[Session]:
        self.count += 1
        return await self.store.undelivered(app, since, until, limit)

    async def due(self, app: str, until: float, limit: int = 100) -> list[Session]:
        self.count += 1
        return await self.store.due(app, until, limit)

    async def close(self) -> None:
        await self.store.close()
