"""Session stores: `open_store(url)` for memory://, sqlite:///path.db and mongodb:// URLs."""

from __future__ import annotations

import re

from convoflow.stores.base import Conflict, Session, SessionTooLarge, Store, StoreError
from convoflow.stores.memory import MemoryStore


def open_store(url: str, read_only: bool = False) -> Store:
    """Open the store a URL names. Raises ValueError for an unknown or malformed URL.

    `read_only` opens it for reading alone (what `convoflow sessions` does): nothing is ever
    created or written, and a SQLite file that does not exist is a StoreError naming its path."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"store URL {_shown(url)!r} has no scheme; use memory://, sqlite:///path.db or mongodb://...")
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        from convoflow.stores.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, read_only=read_only)
    if scheme in ("mongodb", "mongodb+srv"):
        from convoflow.stores.mongo import MongoStore

        return MongoStore.from_url(url, read_only=read_only)
    raise ValueError(f"unknown store scheme {scheme!r} in {_shown(url)!r}; use memory://, sqlite:///path.db or mongodb://...")


def _shown(url: str) -> str:
    """The URL as an error message may repeat it: without the user and password it may hold."""
    return re.sub(r"^([^/]*//)?[^/@]*@", lambda m: f"{m[1] or ''}***@", url)


__all__ = ["Conflict", "MemoryStore", "Session", "SessionTooLarge", "Store", "StoreError", "open_store"]
