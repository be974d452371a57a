"""The replay state of a session, the errors a replay raises, and what a record may hold.

A session's state is a frame per running dialog (convoflow.frames), plus a goto target and a
running fallback. Recorded values are kept in their stored form (convoflow.values), recorded
errors as data (convoflow.errors), so a replay hands the flow the same values and raises the
same errors at the same places.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from convoflow.errors import StepFailed, error_from_data, error_to_data
from convoflow.frames import DEFAULT_VERSION, INPUT, Frame, log_entries
from convoflow.types import StateDict
from convoflow.values import Unencodable, decode, encode, json_problem

__all__ = [
    "DEFAULT_VERSION", "INPUT", "DialogState", "DialogStateException", "Frame", "ReplayMismatch",
    "Result", "StepFailed", "UnstorableValue", "error_from_data", "error_to_data", "log_entries",
    "new_empty_state", "require_json", "state_from_dict", "storable",
]

T = TypeVar("T")


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
    """A step produced a value that cannot be stored (see convoflow.values for what can)."""

    def __init__(self, path: tuple[str, ...], step: str, detail: str, allowed: str | None = None):
        self.path, self.step, self.detail = path, step, detail
        where = " > ".join(path)
        super().__init__(
            f"dialog {where}: step {step!r} produced {detail}; "
            + (allowed or "stored values are JSON, tuple, set, frozenset, bytes, Decimal, UUID, datetime, "
               "date, time, timedelta, Enum members, dataclasses, pydantic models and registered codecs")
        )


@dataclass(frozen=True)
class Result(Generic[T]):
    return_value: T


class DialogState:
    """A session's whole replay state: the running top dialog, a goto target, a running fallback.

    Two states are equal when they would store the same data (the seed compared them by value).
    `DialogState[T]` is accepted, as the seed's was generic in its result type.
    """

    def __class_getitem__(cls, item: Any) -> type[DialogState]:
        return cls

    def __init__(self, version: str = DEFAULT_VERSION, name: str = "", *, frame: Frame | None = None):
        self.frame = frame or Frame(name, version)
        self.call: StateDict | None = None
        """The goto target running as the top dialog, as stored (its arguments encoded)."""
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
            data["result"] = {"value": encode(self.result.return_value)}
        if self.fallback is not None:
            data["fallback"] = self.fallback.to_dict()
        return data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DialogState):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return f"DialogState({self.to_dict()!r})"


def state_from_dict(raw: StateDict) -> DialogState:
    state = DialogState(frame=Frame.from_dict(raw["frame"]))
    state.call = raw.get("call")
    if "result" in raw:
        state.result = Result(decode(raw["result"]["value"]))
    if "fallback" in raw:
        state.fallback = Frame.from_dict(raw["fallback"])
    return state


def new_empty_state(dialog: Any) -> DialogState:
    return DialogState(dialog.version, dialog.name)


def storable(value: Any, path: tuple[str, ...], step: str) -> Any:
    """The stored form of a step's value (convoflow.values), refused at the step that made it when
    it cannot be stored. It is a copy: a flow changing what a step gave it leaves the record as is."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool or kind is float:
        return value
    try:
        return encode(value)
    except Unencodable as refused:
        raise UnstorableValue(path, step, refused.detail) from None


def require_json(value: Any, path: tuple[str, ...], step: str) -> None:
    """Refuse a value that is not plain JSON where only JSON will do (a button's value)."""
    problem = json_problem(value)
    if problem is not None:
        raise UnstorableValue(path, step, problem, "it must be JSON (None, bool, int, float, str, list, dict with str keys)")
