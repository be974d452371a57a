"""A frame: the record of one running dialog, and how its log is stored compactly.

A frame records each completed step, in order: its name, its result (in stored form, see
convoflow.values), its fingerprint when it has one (convoflow.fingerprints), its version when it
is not the default, and the error when the step raised. Sent messages are not recorded: while a
frame replays its recorded steps, its sends are suppressed. `pending` says where the frame is
suspended: at a wait (for the user's input, an event or a time; `Waiting`), or inside a running
child frame.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from convoflow.types import StateDict

DEFAULT_VERSION = "1.0"
INPUT = "<input>"
"""Log name of a client response, and the `pending` marker of a frame waiting for one."""


class Frame:
    """The record of one running dialog: one name, fingerprint and value per completed step.

    `prints` hold each step's fingerprint: None for a step without one (no arguments, or recorded
    before fingerprints existed), or for a loaded run of steps with differing fingerprints, a
    `Chain` that replay checks as a whole at the run's end. `extras` holds, sparsely by position,
    a non-default version or an error. `fingerprint` is that of the step this frame runs. `cursor`,
    `chain` and `chain_open` (amid a `Chain` not yet checked) are replay positions (not stored).
    `encoded` is the log as it is stored, kept up to date as steps are recorded, so storing a long
    record does not re-scan it.
    """

    __slots__ = ("name", "version", "fingerprint", "names", "prints", "values", "extras", "encoded",
                 "pending", "cursor", "chain", "chain_open", "plain_answers")

    def __init__(self, name: str, version: str = DEFAULT_VERSION, fingerprint: str | None = None) -> None:
        self.name = name
        self.version = version
        self.fingerprint = fingerprint
        self.names: list[str] = []
        self.prints: list[str | Chain | None] = []
        self.values: list[Any] = []
        self.extras: dict[int, dict[str, Any]] = {}
        self.encoded: list[list[Any]] = []
        self.pending: None | Waiting | Frame = None
        self.cursor = 0
        self.chain = ""
        self.chain_open = False
        self.plain_answers: dict[int, int] = {}
        """Runs of loaded answers (start -> end) with no fingerprint, version or error, each a
        JSON scalar: a replay hands them over as they are (convoflow.player)."""

    def record(self, name: str, value: Any, fingerprint: str | None = None, extras: dict[str, Any] | None = None) -> None:
        """Append a completed step, `value` in its stored form (the replay position moves past it)."""
        if extras:
            self.extras[len(self.names)] = extras
        self.names.append(name)
        self.prints.append(fingerprint)
        self.values.append(value)
        self.cursor += 1
        _append(self.encoded, name, value, fingerprint, extras or None)

    def waiting_for_input(self) -> bool:
        """Whether the dialog is suspended at a wait (for an answer, an event or a time)."""
        return isinstance(self.waiting(), Waiting)

    def waiting(self) -> Waiting | None:
        """The wait the innermost running dialog is suspended at, if any."""
        frame: Frame | Waiting | None = self
        while isinstance(frame, Frame):
            frame = frame.pending
        return frame

    def to_dict(self) -> StateDict:
        data: StateDict = {"name": self.name, "version": self.version, "log": [_stored(e) for e in self.encoded]}
        if self.fingerprint is not None:
            data["f"] = self.fingerprint
        if self.pending is not None:
            data["pending"] = self.pending.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: StateDict) -> Frame:
        frame = cls(data["name"], data.get("version", DEFAULT_VERSION), data.get("f"))
        names, prints, values, extras, encoded = frame.names, frame.prints, frame.values, frame.extras, frame.encoded
        for entry in data.get("log", ()):
            name, value = entry[0], entry[1]
            meta = dict(entry[2]) if len(entry) > 2 else {}
            each, count = meta.pop("each", False), meta.pop("n", 1)
            fingerprint, chain = meta.pop("f", None), meta.pop("fc", None)
            start = len(names)
            if each:
                values.extend(value)
                encoded.append([name, list(value), _EACH, len(value), meta or None, fingerprint, chain])
            else:
                values.extend([value] * count)
                encoded.append([name, value, _SINGLE if count == 1 else _REPEAT, count, meta or None, fingerprint, chain])
            names.extend([name] * (len(values) - start))
            if name == INPUT and not meta and fingerprint is None and chain is None and _SCALARS.issuperset(
                map(type, value if each else (value,))
            ):
                frame.plain_answers[start] = len(names)
            if chain is not None:
                prints.extend([Chain(start, len(names) - 1, chain)] * (len(names) - start))
            else:
                prints.extend([fingerprint] * (len(names) - start))
            if meta:
                for position in range(start, len(names)):
                    extras[position] = meta
        pending = data.get("pending")
        if isinstance(pending, dict):
            frame.pending = Waiting.from_dict(pending) if "wait" in pending else cls.from_dict(pending)
        elif isinstance(pending, str):
            frame.pending = Waiting(pending)
        return frame


class Waiting:
    """Where a frame waits: the wait step's log name, and its times as absolute Unix seconds (UTC),
    computed from the engine's clock when the wait began: `due` when it times out (None: never),
    `began` (kept when reminders are counted from it), `reminded` when the last reminder went out.
    A wait with none of them is stored as its bare name (`"<input>"`, as records always held)."""

    __slots__ = ("name", "due", "began", "reminded")

    def __init__(self, name: str, due: float | None = None, began: float | None = None, reminded: float | None = None):
        self.name, self.due, self.began, self.reminded = name, due, began, reminded

    def to_dict(self) -> str | StateDict:
        if self.due is None and self.began is None and self.reminded is None:
            return self.name
        data: StateDict = {"wait": self.name}
        for field in ("due", "began", "reminded"):
            value = getattr(self, field)
            if value is not None:
                data[field] = value
        return data

    @classmethod
    def from_dict(cls, data: StateDict) -> Waiting:
        return cls(data["wait"], data.get("due"), data.get("began"), data.get("reminded"))


class Chain:
    """The fingerprints of a stored run of steps (positions `start` to `end`), folded into one."""

    __slots__ = ("start", "end", "digest")

    def __init__(self, start: int, end: int, digest: str):
        self.start, self.end, self.digest = start, end, digest


def chained(chain: str, fingerprint: str | None) -> str:
    """`chain` (the fold of a run's fingerprints so far, "" at its start) with one more step's."""
    raw = hashlib.blake2b(f"{chain}|{fingerprint or ''}".encode(), digest_size=4).digest()
    return base64.urlsafe_b64encode(raw)[:6].decode("ascii")


# How the log is stored. An entry is `[name, value]` (one step), `[name, value, meta]` where meta
# has `f` (the step's fingerprint), `v` (a non-default version), `error` (the step raised) and/or
# `n` (the step repeated n times with this very value), or `[name, [value, ...], {"each": true,
# ...}]` (consecutive steps of one name with these values: a loop). The steps of a run share `f`,
# or, when their fingerprints differ (a round subdialog given its round number), store their fold
# as `fc`, so a run stays one entry however long it grows.
# In memory an entry is [name, payload, kind, count, meta, fingerprint, chain]: chain is None while
# every step of the run has the fingerprint given.
_SINGLE, _REPEAT, _EACH = 0, 1, 2
_SCALARS = frozenset((str, int, float, bool, type(None)))
"""Recorded values stored as themselves (convoflow.values)."""
_REPEAT_FROM = 4
"""Identical neighbours inside a run become a counted entry once there are this many."""


def _append(encoded: list[list[Any]], name: str, value: Any, fingerprint: str | None, meta: dict[str, Any] | None) -> None:
    if encoded:
        last = encoded[-1]
        if last[0] == name and last[4] == meta and _fits(last, fingerprint):
            kind = last[2]
            if kind == _SINGLE:
                _add_print(last, fingerprint)
                if _identical(last[1], value):
                    last[2], last[3] = _REPEAT, 2
                else:
                    last[1], last[2], last[3] = [last[1], value], _EACH, 2
                return
            if kind == _REPEAT:
                if _identical(last[1], value):
                    _add_print(last, fingerprint)
                    last[3] += 1
                    return
            else:
                items = last[1]
                tail = _REPEAT_FROM - 1
                uniform = last[6] is None and last[5] == fingerprint
                if uniform and len(items) >= tail and all(_identical(item, value) for item in items[-tail:]):
                    del items[-tail:]
                    last[3] -= tail
                    if not items:
                        last[1], last[2], last[3] = value, _REPEAT, _REPEAT_FROM
                        return
                    if len(items) == 1:
                        last[1], last[2] = items[0], _SINGLE
                    encoded.append([name, value, _REPEAT, _REPEAT_FROM, meta, fingerprint, None])
                    return
                _add_print(last, fingerprint)
                items.append(value)
                last[3] += 1
                return
    encoded.append([name, value, _SINGLE, 1, meta, fingerprint, None])


def _fits(entry: list[Any], fingerprint: str | None) -> bool:
    """Whether a step with `fingerprint` may join the run `entry`: with the run's one fingerprint,
    or with another when every step has one. A step without (no arguments, or recorded before
    fingerprints existed) never shares a run with steps that have one, so a replay can tell."""
    if entry[6] is None and entry[5] == fingerprint:
        return True
    return fingerprint is not None and (entry[5] is not None or entry[6] is not None)


def _add_print(entry: list[Any], fingerprint: str | None) -> None:
    """Count one more step's fingerprint into a run (before its count grows)."""
    chain = entry[6]
    if chain is None:
        if fingerprint == entry[5]:
            return
        chain = ""
        for _ in range(entry[3]):  # the run so far, every step with the one fingerprint
            chain = chained(chain, entry[5])
    entry[6] = chained(chain, fingerprint)


def _stored(entry: list[Any]) -> list[Any]:
    name, payload, kind, count, meta, fingerprint, chain = entry
    extra = dict(meta or {})
    if chain is not None:
        extra["fc"] = chain
    elif fingerprint is not None:
        extra["f"] = fingerprint
    if kind == _SINGLE:
        return [name, payload, extra] if extra else [name, payload]
    if kind == _REPEAT:
        return [name, payload, {**extra, "n": count}]
    return [name, list(payload), {**extra, "each": True}]


def _identical(a: Any, b: Any) -> bool:
    """Equal, and equal after a JSON round trip too (1 == True == 1.0 and 0.0 == -0.0 are not)."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b) or a != b:
        return False
    if kind is float:
        return repr(a) == repr(b)
    if kind is list or kind is dict:
        return json.dumps(a) == json.dumps(b)
    return True


def log_entries(log: list[list[Any]]) -> list[list[Any]]:
    """A stored log with its `each` runs split into one entry per step (for display)."""
    entries: list[list[Any]] = []
    for entry in log:
        meta = entry[2] if len(entry) > 2 else {}
        if meta.get("each"):
            rest = {k: v for k, v in meta.items() if k != "each"}
            entries += [[entry[0], value, rest] if rest else [entry[0], value] for value in entry[1]]
        else:
            entries.append(entry)
    return entries
