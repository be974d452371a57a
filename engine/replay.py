"""The replay record: one frame per running dialog, keyed entries, typed mismatch and storage errors.

A frame's `log` holds one entry per completed step, in order: `[name, value]`, with a third item
`{"v": version}` when the step's version is not the default, or `{"error": {...}}` when the step
raised (errors are data, so a replay raises the same error at the same place). Sent messages are
not recorded: while a frame replays its recorded steps, its sends are suppressed. `pending` says
where the frame is suspended: waiting for the user's input, or inside a running child frame.
"""

from __future__ import annotations

import builtins
import importlib
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from engine.types import JSON, StateDict

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
    """The record of one running dialog. `cursor` is the replay position (not stored)."""

    __slots__ = ("name", "version", "log", "pending", "cursor")

    def __init__(self, name: str, version: str = DEFAULT_VERSION) -> None:
        self.name = name
        self.version = version
        self.log: list[list[Any]] = []
        self.pending: None | str | Frame = None
        self.cursor = 0

    def waiting_for_input(self) -> bool:
        frame: Frame | str | None = self
        while isinstance(frame, Frame):
            frame = frame.pending
        return frame == INPUT

    def to_dict(self) -> StateDict:
        data: StateDict = {"name": self.name, "version": self.version, "log": _compress(self.log)}
        if isinstance(self.pending, Frame):
            data["pending"] = self.pending.to_dict()
        elif self.pending is not None:
            data["pending"] = self.pending
        return data

    @classmethod
    def from_dict(cls, data: StateDict) -> Frame:
        frame = cls(data["name"], data.get("version", DEFAULT_VERSION))
        frame.log = _expand(data.get("log", []))
        pending = data.get("pending")
        frame.pending = cls.from_dict(pending) if isinstance(pending, dict) else pending
        return frame


def _compress(log: list[list[Any]]) -> list[list[Any]]:
    """Run-length encode equal neighbours, so a loop that repeats a step stores it once."""
    out: list[list[Any]] = []
    count = 0
    for index, entry in enumerate(log):
        count += 1
        following = log[index + 1] if index + 1 < len(log) else None
        if following is not None and (following is entry or following == entry):
            continue
        if count == 1:
            out.append(entry)
        else:
            extras = {**entry[2], "n": count} if len(entry) > 2 else {"n": count}
            out.append([entry[0], entry[1], extras])
        count = 0
    return out


def _expand(log: list[list[Any]]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for entry in log:
        if len(entry) > 2 and "n" in entry[2]:
            extras = {k: v for k, v in entry[2].items() if k != "n"}
            single = [entry[0], entry[1], extras] if extras else [entry[0], entry[1]]
            out.extend([single] * entry[2]["n"])
        else:
            out.append(entry)
    return out


class DialogState:
    """A session's whole replay state: the running top dialog, a goto target, a running fallback."""

    def __init__(self, version: str = DEFAULT_VERSION, name: str = "", *, frame: Frame | None = None):
        self.frame = frame or Frame(name, version)
        self.call: StateDict | None = None
        self.result: Result[Any] | None = None
        self.fallback: Frame | None = None
        self.live: Any = None  # the suspended run of this very object (not stored)

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


def check_storable(value: Any, path: tuple[str, ...], step: str) -> None:
    """Refuse, at the step that made it, a value that JSON would change or reject."""
    problem = _json_problem(value)
    if problem is not None:
        raise UnstorableValue(path, step, problem)


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
    type_name: str = data["type"]
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
