"""The production store: one MongoDB document per session, shared safely by any number of replicas.

A commit is ONE conditional write on the session's revision: an insert for revision 1 (a duplicate
`_id` means someone else created the session first) and otherwise a `replace_one` whose filter
names the revision it replaces. Both are atomic on a single document, so the compare-and-set holds
across processes and hosts without transactions or locks of our own. Hot paths touch documents by
`_id` only (`find_one`, `replace_one`, `update_one`), never `find_one_and_update`.

Commits that arrive while others are on their way go together as one unordered `bulk_write`
(convoflow.stores.batches). It reports totals: when as many replacements matched as were sent,
every one won; otherwise the batch's documents are read back, and a replacement won exactly when
its document holds it (its revision and its record text). An insert's duplicate `_id` is reported
by its index.

The document of session `partition/app`:

    _id        "partition/app" (str(SessionKey))
    partition  the partition key   (indexed with `updated`, for listing)
    app        the app id         (indexed)
    revision   the compare-and-set counter
    session    the rest of the record as ASCII JSON text (replay state, seen ids, address, ...)
    outbox     [{"seq": n, "reply": "<ASCII JSON of the reply>"}, ...] in order
    created    BSON date of the first commit
    updated    BSON date of the latest commit (indexed, for listing)
    due_at     BSON date of the session's next timer, absent when it has none (sparse index with app)
    expire_at  BSON date after which MongoDB deletes the session (only with a TTL)
    format     the document layout version (1)
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Sequence, Union
from urllib.parse import parse_qsl, unquote

import bson
import pymongo
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from convoflow.messages import SessionKey
from convoflow.stores.base import Conflict, Session, SessionTooLarge, StoreError
from convoflow.stores.batches import Batches
from convoflow.stores.mongo_writes import write_conditionally

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

    Client = Union[AsyncMongoClient[Any], AsyncIOMotorClient]
    Database = Union[AsyncDatabase[Any], AsyncIOMotorDatabase]

DEFAULT_DATABASE = "convoflow"
DEFAULT_COLLECTION = "sessions"
DEFAULT_TIMEOUT = 10.0
"""Seconds any one store operation may take, server selection and retries included."""
BSON_LIMIT = 16 * 1024 * 1024
"""MongoDB refuses documents larger than this."""
DEFAULT_MAX_SESSION_BYTES = BSON_LIMIT // 4
"""Far below MongoDB's limit: a session this big is a flow keeping far too much."""
FORMAT = 1
"""The document layout this code writes; a document with a higher one is refused, never rewritten."""

CLIENT_DEFAULTS = {"serverSelectionTimeoutMS": 5000, "connectTimeoutMS": 5000, "appname": "convoflow"}
"""Client options a URL gets unless it sets them itself: an unreachable server fails fast."""
STORE_OPTIONS = ("collection", "ttlSeconds", "maxSessionBytes")
"""URL query options the store reads itself (the client never sees them)."""


class MongoStore:
    """Sessions in collection `collection` of a MongoDB database.

    `target` is an `AsyncMongoClient`, an `AsyncDatabase`, or a Motor client or database. For a
    client, `database` names the database (default: the client URI's database, else "convoflow").
    A client or database passed in stays the caller's: `close()` leaves it open.

    `timeout` bounds every store operation (seconds; pymongo's client-side operation timeout), so
    an unreachable server raises StoreError instead of hanging. `ttl` (seconds, None = never)
    makes MongoDB delete sessions idle that long. `max_session_bytes` refuses larger sessions.
    `read_only` refuses every write (so no index is ever created either).
    """

    def __init__(
        self,
        target: Client | Database,
        *,
        database: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        ttl: float | None = None,
        max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
        read_only: bool = False,
    ) -> None:
        if ttl is not None and not (math.isfinite(ttl) and ttl > 0):
            raise ValueError(f"ttl must be a number of seconds > 0 (or None for no expiry), not {ttl!r}")
        if not 0 < max_session_bytes <= BSON_LIMIT:
            raise ValueError(f"max_session_bytes must be between 1 and {BSON_LIMIT} (MongoDB's limit), not {max_session_bytes!r}")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        client, given_database = _client_and_database(target)
        if given_database is not None:
            if database is not None and database != given_database.name:
                raise ValueError(f"database={database!r} contradicts the database object passed ({given_database.name!r})")
            self.database: Database = given_database
        elif database is not None:
            self.database = client.get_database(database)
        else:
            self.database = client.get_default_database(default=DEFAULT_DATABASE)
        self.collection = self.database.get_collection(collection)
        self.reply_log = self.database.get_collection(f"{collection}_replies")
        self._reply_log_indexed = False
        self.ttl = ttl
        self.max_session_bytes = max_session_bytes
        self.timeout = timeout
        self.read_only = read_only
        self._owned_client: AsyncMongoClient[Any] | None = None
        self._indexed = False
        self._indexing = asyncio.Lock()
        self._closed = False
        self._commits: Batches[dict[str, Any]] = Batches(self._write_documents)

    @classmethod
    def from_url(cls, url: str, read_only: bool = False) -> MongoStore:
        """`mongodb://[user:pass@]host[:port][,host...]/[DATABASE][?options]` or `mongodb+srv://...`.

        The database defaults to "convoflow". Besides every standard connection option, the query
        takes `collection` (default "sessions"), `ttlSeconds` (expire sessions idle that long;
        default: never) and `maxSessionBytes` (default 4 MiB). `timeoutMS` (default 10000) bounds
        each store operation; `serverSelectionTimeoutMS` and `connectTimeoutMS` default to 5000.
        """
        scheme, sep, rest = url.partition("://")
        if scheme not in ("mongodb", "mongodb+srv") or not sep:
            raise ValueError("malformed MongoDB store URL; use mongodb://host/database or mongodb+srv://...")
        rest, _, query = rest.partition("?")
        # The client's options are passed on as written (re-encoding could change values such as
        # authMechanismProperties); only the store's own are taken out. Error messages never repeat
        # the URL: it may hold a password.
        parts = [part for part in query.replace(";", "&").split("&") if part]
        ours = dict(parse_qsl("&".join(part for part in parts if _name(part) in STORE_OPTIONS), keep_blank_values=True))
        theirs = [part for part in parts if _name(part) not in STORE_OPTIONS]
        given = {_name(part).lower(): unquote(part.partition("=")[2]) for part in theirs}
        ttl = _number(ours["ttlSeconds"], "ttlSeconds") if "ttlSeconds" in ours else None
        max_bytes = DEFAULT_MAX_SESSION_BYTES
        if "maxSessionBytes" in ours:
            max_bytes = int(_number(ours["maxSessionBytes"], "maxSessionBytes"))
            if max_bytes > BSON_LIMIT:
                raise ValueError(f"maxSessionBytes in the MongoDB store URL may be at most {BSON_LIMIT} (MongoDB's limit)")
        options: dict[str, Any] = {k: v for k, v in CLIENT_DEFAULTS.items() if k.lower() not in given}
        timeout = DEFAULT_TIMEOUT
        if "timeoutms" in given:
            timeout = _number(given["timeoutms"], "timeoutMS") / 1000
        else:
            options["timeoutMS"] = int(timeout * 1000)
        try:
            with warnings.catch_warnings():
                # pymongo only warns about an unknown or malformed option and then ignores it: a
                # typo would silently run with other settings than the user wrote.
                warnings.simplefilter("error", UserWarning)
                client: AsyncMongoClient[Any] = AsyncMongoClient(
                    f"{scheme}://{rest}" + (f"?{'&'.join(theirs)}" if theirs else ""), **options
                )
            store = cls(  # the client's URL names the database, if any
                client, collection=ours.get("collection", DEFAULT_COLLECTION), ttl=ttl,
                max_session_bytes=max_bytes, timeout=timeout, read_only=read_only,
            )
        except (PyMongoError, TypeError, ValueError, UserWarning) as error:  # pymongo names the bad part
            hint = f" (the store's own options: {', '.join(STORE_OPTIONS)})" if "Unknown option" in str(error) else ""
            raise ValueError(f"invalid MongoDB store URL: {error}{hint}") from None
        store._owned_client = client
        return store

    # --- the Store protocol ----------------------------------------------------------------------

    async def load(self, key: SessionKey) -> Session | None:
        with self._operation("loading", key):
            document = await self.collection.find_one({"_id": _id_of(key)})
        return None if document is None else self._session(document)

    async def commit(self, session: Session) -> None:
        self._writable()
        document = self._document(session)
        await self._ensure_indexes()
        with self._operation("committing", session.key):
            won = await self._commits.send(document)
        if not won:
            raise Conflict(session.key, session.revision - 1)

    async def _write_documents(self, documents: list[dict[str, Any]]) -> list[object]:
        with pymongo.timeout(self.timeout):  # in the batch's own task: its own bound
            return await write_conditionally(self.collection, documents)

    async def mark_delivered(self, key: SessionKey, revision: int, through_seq: int) -> bool:
        self._writable()
        delivered = {"$pull": {"outbox": {"seq": {"$lte": through_seq}}}}
        with self._operation("marking replies delivered", key):
            # The common case, one round trip: the session is still at the revision just committed.
            result = await self.collection.update_one(
                {"_id": _id_of(key), "revision": revision}, {**delivered, "$inc": {"revision": 1}}
            )
            if result.matched_count:
                return True
            # Another writer moved it on (or it is gone): drop the delivered entries all the same.
            await self.collection.update_one({"_id": _id_of(key)}, delivered)
        return False

    async def list_sessions(self, partition: str | None = None, limit: int = 100) -> list[Session]:
        query: dict[str, Any] = {}
        if partition is not None:
            # The partition itself and every partition under it ("p:..." sorts between "p:" and "p;").
            query = {"$or": [{"partition": partition}, {"partition": {"$gt": partition + ":", "$lt": partition + ";"}}]}
        return await self._find(query, pymongo.DESCENDING, limit, "listing sessions")

    async def undelivered(self, app: str, since: float, until: float, limit: int = 100) -> list[Session]:
        # BSON dates hold milliseconds: compare at that precision, as the stored dates were cut to it.
        window = {"$gte": _date(math.floor(since * 1000) / 1000), "$lt": _date(math.floor(until * 1000) / 1000)}
        query = {"app": app, "updated": window, "outbox.0": {"$exists": True}}
        return await self._find(query, pymongo.ASCENDING, limit, "finding undelivered replies")

    async def due(self, app: str, until: float, limit: int = 100) -> list[Session]:
        # `due_at` is cut to milliseconds like every BSON date: round `until` up to match, and
        # check the exact time (kept in the record) here.
        query = {"app": app, "due_at": {"$lte": _date(math.ceil(until * 1000) / 1000)}}
        found = await self._find(query, pymongo.ASCENDING, limit, "finding due timers", by="due_at")
        return [session for session in found if session.due is not None and session.due <= until]

    async def _find(
        self, query: dict[str, Any], order: int, limit: int, doing: str, by: str = "updated"
    ) -> list[Session]:
        with self._operation(doing, None):
            cursor = self.collection.find(query).sort(by, order).limit(limit)
            documents = [document async for document in cursor]
        return [self._session(document) for document in documents]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._commits.drained()
        if self._owned_client is not None:
            await self._owned_client.close()

    # --- documents -------------------------------------------------------------------------------

    def _document(self, session: Session) -> dict[str, Any]:
        record = session.to_record()
        # The state holds whatever users typed and flows recorded: dict keys with `$` or `.`, empty
        # keys, NUL, lone surrogates. MongoDB field names cannot safely hold the first ones and BSON
        # strings must be valid UTF-8, so the record is kept as ASCII JSON text, which stores any
        # JSON value exactly (as the SQLite store does). Nothing queries inside it; the fields that
        # are queried or updated in place (partition, revision, outbox seqs, dates) are real fields.
        rest = {name: value for name, value in record.items() if name not in ("partition", "app", "revision", "outbox")}
        updated = _date(session.updated)
        document: dict[str, Any] = {
            "_id": _id_of(session.key),
            "partition": session.key.partition,
            "app": session.key.app,
            "revision": session.revision,
            "session": _dumps(rest),
            "outbox": [{"seq": item["seq"], "reply": _dumps(item)} for item in session.outbox],
            "created": _date(session.created),
            "updated": updated,
            "format": FORMAT,
        }
        if session.due is not None:
            document["due_at"] = _date(session.due)
        if self.ttl is not None:
            document["expire_at"] = updated + timedelta(seconds=self.ttl)
        size = len(bson.encode(document))
        if size > self.max_session_bytes:
            raise SessionTooLarge(
                f"session {session.key} would take {size:,} bytes in MongoDB, over the limit of "
                f"{self.max_session_bytes:,} (MongoDB refuses documents over 16 MiB); nothing was written. "
                "Keep large data out of the dialog state (store an id, not the content)."
            )
        return document

    def _session(self, document: dict[str, Any]) -> Session:
        if document.get("format", 0) > FORMAT or "session" not in document:
            raise StoreError(
                f"{self._where()}: document {document.get('_id')!r} is not a session this convoflow "
                f"can read (format {document.get('format')!r}; this one knows up to {FORMAT})"
            )
        return Session.from_record(
            {
                **json.loads(document["session"]),
                "partition": document["partition"],
                "app": document["app"],
                "revision": document["revision"],
                "outbox": [json.loads(item["reply"]) for item in document["outbox"]],
            }
        )

    # --- indexes, errors -------------------------------------------------------------------------

    async def _ensure_indexes(self) -> None:
        """Create the indexes once per store, before its first write (reads never create anything).

        `create_index` does nothing when an identical index exists, so every replica may run it.
        """
        if self._indexed:
            return
        async with self._indexing:
            if self._indexed:
                return
            with self._operation("creating indexes", None):
                await self.collection.create_index(
                    [("partition", pymongo.ASCENDING), ("updated", pymongo.DESCENDING)], name="partition_updated"
                )
                await self.collection.create_index([("updated", pymongo.DESCENDING)], name="updated")
                # Per-bot queries: a bot's sessions with replies left undelivered, by last update.
                await self.collection.create_index(
                    [("app", pymongo.ASCENDING), ("updated", pymongo.ASCENDING)], name="app_updated"
                )
                # Sessions without a timer have no `due_at`: a sparse index leaves them out.
                await self.collection.create_index(
                    [("app", pymongo.ASCENDING), ("due_at", pymongo.ASCENDING)], name="app_due", sparse=True
                )
                if self.ttl is not None:
                    # Each document carries its own expiry date, so changing the TTL needs no index change.
                    await self.collection.create_index("expire_at", name="expire_at", expireAfterSeconds=0)
            self._indexed = True

    @contextmanager
    def _operation(self, doing: str, key: SessionKey | None) -> Iterator[None]:
        """Bound the operation by `timeout` and turn driver errors into StoreError."""
        if self._closed:
            raise StoreError(f"{self._where()}: the store is closed")
        try:
            with pymongo.timeout(self.timeout):
                yield
        except PyMongoError as error:
            session = "" if key is None else f" session {key}"
            if error.timeout:
                reason = f"no answer within {self.timeout:g} s"
            elif isinstance(error, (pymongo.errors.ConnectionFailure, pymongo.errors.ServerSelectionTimeoutError)):
                reason = "server unreachable"
            else:
                reason = "the server refused the operation"
            raise StoreError(f"{self._where()}: {reason} while {doing}{session}: {error}") from error

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{self._where()} is open read-only; nothing was written")

    def _where(self) -> str:
        return f"MongoDB store {self.database.name}.{self.collection.name}"

    async def scan(self, app: str, batch: int = 500) -> AsyncIterator[Session]:
        # One cursor walking the _id index (hinted: no sort in memory, and an _id never moves, so
        # a session updated meanwhile is not met twice), fetched `batch` documents at a time, each
        # fetch bounded by `timeout` on its own rather than the whole scan.
        cursor = self.collection.find({"app": app}).sort("_id", pymongo.ASCENDING).hint([("_id", pymongo.ASCENDING)])
        cursor = cursor.batch_size(batch)
        try:
            while True:
                with self._operation("reading sessions", None):
                    documents = await cursor.to_list(batch)
                if not documents:
                    return
                for document in documents:
                    yield self._session(document)
        finally:
            await cursor.close()

    # --- the reply log (the web channel's delivered replies) -------------------------------------

    async def log_replies(self, key: SessionKey, entries: Sequence[dict[str, Any]], keep: int) -> None:
        """One document per logged reply in `<collection>_replies`, `_id` "<key>#<seq>": an upsert
        that only sets fields on insert logs each seq once, whoever delivers it."""
        self._writable()
        if not entries:
            return
        name = _id_of(key)
        with self._operation("logging replies", key):
            if not self._reply_log_indexed:
                await self.reply_log.create_index([("key", pymongo.ASCENDING), ("seq", pymongo.ASCENDING)], name="key_seq")
                self._reply_log_indexed = True
            for entry in entries:
                seq = int(entry["seq"])
                await self.reply_log.update_one(
                    {"_id": f"{name}#{seq}"}, {"$setOnInsert": {"key": name, "seq": seq, "entry": _dumps(entry)}}, upsert=True
                )
            top = max(int(entry["seq"]) for entry in entries)
            await self.reply_log.delete_many({"key": name, "seq": {"$lte": top - keep}})

    async def logged_replies(self, key: SessionKey, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        with self._operation("reading logged replies", key):
            cursor = self.reply_log.find({"key": _id_of(key), "seq": {"$gt": after}}).sort("seq", pymongo.ASCENDING).limit(limit)
            documents = [document async for document in cursor]
        return [json.loads(document["entry"]) for document in documents]


    async def latest_logged(self, keys: Sequence[SessionKey]) -> dict[SessionKey, int]:
        by_id = {_id_of(key): key for key in keys}
        found: dict[SessionKey, int] = {}
        with self._operation("looking at logged replies", None):
            pipeline: list[dict[str, Any]] = [{"$match": {"key": {"$in": list(by_id)}}}, {"$group": {"_id": "$key", "seq": {"$max": "$seq"}}}]
            cursor = self.reply_log.aggregate(pipeline)
            if inspect.isawaitable(cursor):  # PyMongo's async client; Motor hands the cursor at once
                cursor = await cursor
            async for row in cursor:
                found[by_id[row["_id"]]] = int(row["seq"])
        return found


def _client_and_database(target: Any) -> tuple[Any, Any]:
    """(client, None) for a client, (None, database) for a database; TypeError for anything else."""
    if isinstance(target, AsyncMongoClient):
        return target, None
    if isinstance(target, AsyncDatabase):
        return None, target
    try:
        from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
    except ImportError:
        pass
    else:
        if isinstance(target, AsyncIOMotorClient):
            return target, None
        if isinstance(target, AsyncIOMotorDatabase):
            return None, target
    if isinstance(target, (pymongo.MongoClient, pymongo.database.Database)):
        raise TypeError("MongoStore needs an async client: pymongo.AsyncMongoClient (or Motor), not pymongo.MongoClient")
    raise TypeError(
        f"MongoStore needs a pymongo.AsyncMongoClient, an AsyncDatabase or a Motor client/database, "
        f"not {type(target).__name__}"
    )


def _id_of(key: SessionKey) -> str:
    text = str(key)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"session key {text!r} is not valid Unicode text and cannot be stored") from None
    return text


def _date(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))  # ensure_ascii: surrogates and NUL become escapes


def _name(option: str) -> str:
    return unquote(option.partition("=")[0])


def _number(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} in the MongoDB store URL must be a number > 0, not {raw!r}")
    return value
