"""The replay record: one frame per running dialog, keyed entries, typed mismatch and storage errors.

A frame records each completed step, in order, by name and result, with its version when it is
not the default and with the error when the step raised (errors are data, so a replay raises the
same error at the same place). Sent messages are not recorded: while a frame replays its recorded
steps, its sends are suppressed. `pending` says where the frame is suspended: waiting for the
user's input, or inside a running child frame. How a log is stored is described above `_append`.
"""

from __future__ import annotations

import builtins
import importlib
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from convoflow.renamed import current_path
from convoflow.types import JSON, StateDict

T = TypeVar("T")

DEFAULT_VERSION = "1.0"
INPUT = "<input>"
"""Log name of a client response, and the `pending` marker of a frame waiting for one."""


class DialogStateException(Exception):
    """A dialog's state was used in a way it cannot support (kept from the seed API)."""


class ReplayMismatch(Exception):
    """The code no longer matches the session's record.

    `reason` is "version" when a dialog's version changed, "code" when a different step now stands
    at a recorded position. Sessions that hit it are restarted (after the fallback dialog, if any).
    """

    def __init__(self, path: tuple[str, ...], position: int, recorded: str, found: str, reason: str):
        self.path, self.position, self.recorded, self.found, self.reason = (
            path, position, recorded, found, reason,
        )
        where = " > ".join(path) or "<top>"
        super().__init__(
            f"{reason} mismatch in {where} at step {position}: recorded {recorded!r}, code has {found!r}"
        )


class UnstorableValue(TypeError):
    """A step produced a value that would not survive a JSON round trip."""

    def __init__(self, path: tuple[str, ...], step: str, detail: str):
        self.path, self.step, self.detail = path, step, detail
        where = " > ".join(path)
        super().__init__(
            f"dialog {where}: step {step!r} produced {detail}; stored values must be JSON "
            "(None, bool, int, float, str, list, dict with str keys)"
        )


class StepFailed(Exception):
    """Replay of a recorded error whose exception type could not be rebuilt."""

    def __init__(self, type_name: str, args: list[Any]):
        self.type_name = type_name
        super().__init__(f"{type_name}: {', '.join(map(str, args))}")


@dataclass(frozen=True)
class Result(Generic[T]):
    return_value: T


class Frame:
    """The record of one running dialog: one name and one value per completed step, in order.

    `extras` holds, sparsely by position, what few steps need besides: a non-default version, an
    error. `cursor` is the replay position (not stored). `encoded` is the log as it is stored,
    kept up to date as steps are recorded, so storing a long record does not re-scan it.
    """

    __slots__ = ("name", "version", "names", "values", "extras", "encoded", "pending", "cursor")

    def __init__(self, name: str, version: str = DEFAULT_VERSION) -> None:
        self.name = name
        self.version = version
        self.names: list[str] = []
        self.values: list[Any] = []
        self.extras: dict[int, dict[str, Any]] = {}
        self.encoded: list[list[Any]] = []
        self.pending: None | str | Frame = None
        self.cursor = 0

    def record(self, name: str, value: Any, extras: dict[str, Any] | None = None) -> None:
        """Append a completed step (the replay position moves past it)."""
        if extras:
            self.extras[len(self.names)] = extras
        self.names.append(name)
        self.values.append(value)
        self.cursor += 1
        _append(self.encoded, name, value, extras or None)

    def waiting_for_input(self) -> bool:
        frame: Frame | str | None = self
        while isinstance(frame, Frame):
            frame = frame.pending
        return frame == INPUT

    def to_dict(self) -> StateDict:
        data: StateDict = {"name": self.name, "version": self.version, "log": [_stored(e) for e in self.encoded]}
        if isinstance(self.pending, Frame):
            data["pending"] = self.pending.to_dict()
        elif self.pending is not None:
            data["pending"] = self.pending
        return data

    @classmethod
    def from_dict(cls, data: StateDict) -> Frame:
        frame = cls(data["name"], data.get("version", DEFAULT_VERSION))
        names, values, extras, encoded = frame.names, frame.values, frame.extras, frame.encoded
        for entry in data.get("log", ()):
            name, value = entry[0], entry[1]
            meta = dict(entry[2]) if len(entry) > 2 else {}
            each, count = meta.pop("each", False), meta.pop("n", 1)
            start = len(names)
            if each:
                values.extend(value)
                encoded.append([name, list(value), _EACH, len(value), meta or None])
            else:
                values.extend([value] * count)
                encoded.append([name, value, _SINGLE if count == 1 else _REPEAT, count, meta or None])
            names.extend([name] * (len(values) - start))
            if meta:
                for position in range(start, len(names)):
                    extras[position] = meta
        pending = data.get("pending")
        frame.pending = cls.from_dict(pending) if isinstance(pending, dict) else pending
        return frame


# How the log is stored. An entry is `[name, value]` (one step), `[name, value, meta]` where meta
# has `v` (a non-default version), `error` (the step raised) and/or `n` (the step repeated n times
# with this very value), or `[name, [value, ...], {"each": true, ...}]` (consecutive steps of one
# name with these values: a loop). In memory an entry is [name, payload, kind, count, meta].
_SINGLE, _REPEAT, _EACH = 0, 1, 2
_REPEAT_FROM = 4
"""Identical neighbours inside a run become a counted entry once there are this many."""


def _append(encoded: list[list[Any]], name: str, value: Any, meta: dict[str, Any] | None) -> None:
    if encoded:
        last = encoded[-1]
        if last[0] == name and last[4] == meta:
            kind = last[2]
            if kind == _SINGLE:
                if _identical(last[1], value):
                    last[2], last[3] = _REPEAT, 2
                else:
                    last[1], last[2], last[3] = [last[1], value], _EACH, 2
                return
            if kind == _REPEAT:
                if _identical(last[1], value):
                    last[3] += 1
                    return
            else:
                items = last[1]
                tail = _REPEAT_FROM - 1
                if len(items) >= tail and all(_identical(item, value) for item in items[-tail:]):
                    del items[-tail:]
                    last[3] -= tail
                    if not items:
                        last[1], last[2], last[3] = value, _REPEAT, _REPEAT_FROM
                        return
                    if len(items) == 1:
                        last[1], last[2] = items[0], _SINGLE
                    encoded.append([name, value, _REPEAT, _REPEAT_FROM, meta])
                    return
                items.append(value)
                last[3] += 1
                return
    encoded.append([name, value, _SINGLE, 1, meta])


def _stored(entry: list[Any]) -> list[Any]:
    name, payload, kind, count, meta = entry
    if kind == _SINGLE:
        return [name, payload, dict(meta)] if meta else [name, payload]
    if kind == _REPEAT:
        return [name, payload, {**(meta or {}), "n": count}]
    return [name, list(payload), {**(meta or {}), "each": True}]


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


class DialogState:
    """A session's whole replay state: the running top dialog, a goto target, a running fallback."""

    def __init__(self, version: str = DEFAULT_VERSION, name: str = "", *, frame: Frame | None = None):
        self.frame = frame or Frame(name, version)
        self.call: StateDict | None = None
        self.result: Result[Any] | None = None
        self.fallback: Frame | None = None

    @property
    def name(self) -> str:
        return self.frame.name

    @property
    def version(self) -> str:
        return self.frame.version

    @property
    def is_done(self) -> bool:
        return self.result is not None

    @property
    def handling_fallback(self) -> bool:
        return self.fallback is not None

    @property
    def return_value(self) -> Any:
        if self.result is None:
            raise DialogStateException("Dialog not done yet")
        return self.result.return_value

    def waiting_for_input(self) -> bool:
        return (self.fallback or self.frame).waiting_for_input()

    def to_dict(self) -> StateDict:
        data: StateDict = {"frame": self.frame.to_dict()}
        if self.call is not None:
            data["call"] = self.call
        if self.result is not None:
            data["result"] = {"value": self.result.return_value}
        if self.fallback is not None:
            data["fallback"] = self.fallback.to_dict()
        return data


def state_from_dict(raw: StateDict) -> DialogState:
    state = DialogState(frame=Frame.from_dict(raw["frame"]))
    state.call = raw.get("call")
    if "result" in raw:
        state.result = Result(raw["result"]["value"])
    if "fallback" in raw:
        state.fallback = Frame.from_dict(raw["fallback"])
    return state


def new_empty_state(dialog: Any) -> DialogState:
    return DialogState(dialog.version, dialog.name)


def storable(value: Any, path: tuple[str, ...], step: str) -> Any:
    """The value to record: refused, at the step that made it, when JSON would change or reject
    it; lists and dicts are copied, so a flow changing what a step gave it leaves the record as is."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool or kind is float:
        return value
    problem = _json_problem(value)
    if problem is not None:
        raise UnstorableValue(path, step, problem)
    return fresh(value)


def fresh(value: Any) -> Any:
    """A copy of a JSON value's lists and dicts (scalars are immutable and shared)."""
    kind = type(value)
    if kind is list:
        return [fresh(item) for item in value]
    if kind is dict:
        return {key: fresh(item) for key, item in value.items()}
    return value


def _json_problem(value: Any) -> str | None:
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool or kind is float:
        return None
    if kind is list:
        for item in value:
            problem = _json_problem(item)
            if problem is not None:
                return problem
        return None
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return f"a dict key of type {type(key).__name__} ({key!r})"
            problem = _json_problem(item)
            if problem is not None:
                return problem
        return None
    if kind is tuple:
        return "a tuple (JSON would turn it into a list; return a list)"
    return f"a value of type {kind.__name__} ({value!r:.60})"


def error_to_data(error: BaseException) -> JSON:
    kind = type(error)
    args = list(error.args)
    if _json_problem(args) is not None:
        args = [str(error)]
    return {"type": f"{kind.__module__}.{kind.__qualname__}", "args": args}


def error_from_data(data: dict[str, Any]) -> Exception:
    """Rebuild a recorded error as the same type when possible, else as StepFailed."""
    type_name: str = current_path(data["type"])
    args: list[Any] = data.get("args", [])
    module_name, _, qualname = type_name.rpartition(".")
    try:
        target: Any = builtins if module_name == "builtins" else importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
        if isinstance(target, type) and issubclass(target, Exception):
            return target(*args)
    except Exception:  # noqa: BLE001 - any failure to rebuild falls back to StepFailed
        pass
    return StepFailed(type_name, args)
