"""Conditional session writes on MongoDB, several in one round trip.

A batch of commits is one unordered `bulk_write`: inserts for new sessions, and replacements whose
filter names the revision they replace. A collection's `bulk_write` reports totals, not which
replacement matched: when as many matched as were sent, every one won. Otherwise the batch's
documents are read back (one more round trip), and a replacement won exactly when the collection
holds it as written (its revision and its record text, which carries its update time and seen
ids). A duplicate `_id` of an insert is reported by its index: that session was created first by
another writer.
"""

from __future__ import annotations

from typing import Any

from pymongo import InsertOne, ReplaceOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError

DUPLICATE_KEY = 11000


async def write_conditionally(collection: Any, documents: list[dict[str, Any]]) -> list[object]:
    """Write each document if the stored revision is the one before its own (revision 1: if
    there is none). Per document: True when it was written, False on a conflict, or the error
    it failed with."""
    if len(documents) == 1:
        return [await _write_one(collection, documents[0])]
    requests = [InsertOne(document) if document["revision"] == 1 else ReplaceOne(_replacing(document), document)
                for document in documents]
    try:
        matched = (await collection.bulk_write(requests, ordered=False)).matched_count
        errors: dict[int, dict[str, Any]] = {}
    except BulkWriteError as error:
        matched = error.details.get("nMatched", 0)
        errors = {item["index"]: item for item in error.details.get("writeErrors", ())}
    outcomes: list[object] = [True] * len(documents)
    for n, item in errors.items():
        duplicate = item.get("code") == DUPLICATE_KEY and documents[n]["revision"] == 1
        outcomes[n] = False if duplicate else WriteError(item.get("errmsg", "write refused"), item.get("code"), item)
    replaced = [n for n, document in enumerate(documents) if document["revision"] != 1 and n not in errors]
    if matched < len(replaced):
        await _read_back(collection, documents, replaced, outcomes)
    return outcomes


async def _write_one(collection: Any, document: dict[str, Any]) -> bool:
    if document["revision"] == 1:
        try:
            await collection.insert_one(document)
        except DuplicateKeyError:
            return False
        return True
    return bool((await collection.replace_one(_replacing(document), document)).matched_count == 1)


def _replacing(document: dict[str, Any]) -> dict[str, Any]:
    return {"_id": document["_id"], "revision": document["revision"] - 1}


async def _read_back(collection: Any, documents: list[dict[str, Any]], replaced: list[int], outcomes: list[object]) -> None:
    """Which of the `replaced` documents of a batch won: those the collection holds as written.
    One that won and was at once moved on by another writer counts as lost: its turn then reloads
    and finds its update processed, a duplicate, and delivers what it committed."""
    ids = [documents[n]["_id"] for n in replaced]
    stored = {found["_id"]: found async for found in collection.find({"_id": {"$in": ids}}, {"revision": 1, "session": 1})}
    for n in replaced:
        found = stored.get(documents[n]["_id"], {})
        outcomes[n] = (found.get("revision"), found.get("session")) == (documents[n]["revision"], documents[n]["session"])
