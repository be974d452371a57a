"""Session stores: `open_store(url)` for memory://, sqlite:///path.db and mongodb:// URLs."""

from __future__ import annotations

from engine.stores.base import Conflict, Session, SessionTooLarge, Store, StoreError
from engine.stores.memory import MemoryStore


def open_store(url: str) -> Store:
    """Open the store a URL names. Raises ValueError for an unknown or malformed URL."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"store URL {url!r} has no scheme; use memory://, sqlite:///path.db or mongodb://...")
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        from engine.stores.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if scheme in ("mongodb", "mongodb+srv"):
        from engine.stores.mongo import MongoStore

        return MongoStore.from_url(url)
    raise ValueError(f"unknown store scheme {scheme!r} in {url!r}; use memory://, sqlite:///path.db or mongodb://...")


__all__ = ["Conflict", "MemoryStore", "Session", "SessionTooLarge", "Store", "StoreError", "open_store"]
