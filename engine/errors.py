"""Recorded errors: a step's exception is stored with its session and raised again on replay.

A replay must raise what the first run raised, so the flow's `except` clauses take the same
branch: the same class, the same args, the same attributes. The class is found again by its path;
it is called with the recorded args when it accepts them, or else made without calling its
constructor (`json.JSONDecodeError(msg, doc, pos)` stores only the formatted message as args);
either way the recorded args and attributes are then put back. Only when the class is gone from
the code does the error come back as a StepFailed naming the original type and message.
"""

from __future__ import annotations

import builtins
import importlib
from typing import Any

from convoflow.renamed import current_path
from convoflow.types import JSON
from convoflow.values import Undecodable, Unencodable, decode, encode


class StepFailed(Exception):
    """Replay of a recorded error whose exception class no longer exists."""

    def __init__(self, type_name: str, args: list[Any], message: str | None = None):
        self.type_name = type_name
        text = message if message is not None else ", ".join(map(str, args))
        super().__init__(f"{type_name}: {text}")


def error_to_data(error: BaseException) -> JSON:
    kind = type(error)
    data: dict[str, Any] = {"type": f"{kind.__module__}.{kind.__qualname__}"}
    try:
        data["args"] = encode(list(error.args))
    except Unencodable:
        data["args"] = [str(error)]
    attributes = {}
    for name, value in getattr(error, "__dict__", {}).items():
        try:
            attributes[name] = encode(value)
        except Unencodable:
            continue  # an attribute that cannot be stored (a socket, a callback) is left out
    if attributes:
        data["attrs"] = attributes
    message = str(error)
    if message != str(BaseException(*error.args)):  # the class words its message itself
        data["message"] = message
    return data


def error_from_data(data: dict[str, Any]) -> BaseException:
    """The recorded error rebuilt as its own class when that still exists, else a StepFailed."""
    type_name: str = current_path(data["type"])
    try:
        args = decode(data.get("args", []))
        attributes = {name: decode(value) for name, value in data.get("attrs", {}).items()}
    except Undecodable:
        return StepFailed(type_name, [], data.get("message"))
    kind = _exception_class(type_name)
    if kind is None:
        return StepFailed(type_name, args, data.get("message"))
    try:
        error = kind(*args)
    except Exception:  # noqa: BLE001 - a constructor with another signature: make it without one
        try:
            error = kind.__new__(kind, *args)
        except Exception:  # noqa: BLE001
            return StepFailed(type_name, args, data.get("message"))
    error.args = tuple(args)
    for name, value in attributes.items():
        try:
            setattr(error, name, value)
        except Exception:  # noqa: BLE001 - a read-only attribute keeps what the class gave it
            continue
    return error


def _exception_class(type_name: str) -> type[BaseException] | None:
    # A nested class's qualname has dots too: try the longest importable module prefix.
    parts = type_name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name, names = ".".join(parts[:split]), parts[split:]
        try:
            target: Any = builtins if module_name == "builtins" else importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            for name in names:
                target = getattr(target, name)
        except AttributeError:
            return None
        if isinstance(target, type) and issubclass(target, BaseException):
            return target
        return None
    return None
