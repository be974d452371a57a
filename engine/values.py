"""Recorded values: JSON as it is, and a tagged form for the other values a step may return.

A plain JSON value (None, bool, int, float, str, lists, dicts with str keys) is stored as it is,
so most records carry no tags at all. Any other supported value is stored as a small dict
`{"#": TAG, "v": payload}` (a few types add a field). A user's own dict that happens to have a
`"#"` key, or keys that are not str, is itself stored tagged (`"#": "dict"`, its items as pairs),
so no dict a flow produced can ever be read back as a tag.

Built in: tuple, set, frozenset, bytes, Decimal, UUID, datetime (naive or aware; a zoneinfo zone
keeps its key), date, time, timedelta, members of importable Enums, instances of importable
dataclasses, and pydantic models when pydantic is in use. `register_codec` adds a user type.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import importlib
import sys
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from convoflow.renamed import current_path
from convoflow.types import JSON

TAG = "#"


class Unencodable(TypeError):
    """A value no codec can store; `detail` says what it was."""

    def __init__(self, detail: str):
        self.detail = detail
        super().__init__(detail)


class Undecodable(LookupError):
    """A stored value that cannot be rebuilt (its type is gone from the code, or it is malformed)."""


@dataclass(frozen=True)
class Codec:
    """How one type is stored: `to_data(value)` gives any storable value, `from_data` takes it back."""

    kind: type
    tag: str
    to_data: Callable[[Any], Any]
    from_data: Callable[[Any], Any]


_by_type: dict[type, Codec] = {}
_by_tag: dict[str, Codec] = {}
_RESERVED = {"tuple", "set", "frozenset", "bytes", "decimal", "uuid", "datetime", "date", "time",
             "timedelta", "enum", "dataclass", "pydantic", "dict"}


def register_codec(kind: type, tag: str, to_data: Callable[[Any], Any], from_data: Callable[[Any], Any]) -> None:
    """Let steps return instances of `kind` (exactly that type): stored as `to_data(value)`, which
    may itself hold any storable value, and rebuilt with `from_data`. `tag` names the type in
    stored records, so keep it stable once sessions use it."""
    if tag in _RESERVED or (tag in _by_tag and _by_tag[tag].kind is not kind):
        raise ValueError(f"codec tag {tag!r} is taken")
    codec = Codec(kind, tag, to_data, from_data)
    _by_type[kind] = codec
    _by_tag[tag] = codec


def encode(value: Any) -> JSON:
    """The stored form of `value` (a fresh copy: lists and dicts are never shared with the flow).
    Raises Unencodable naming the first value that cannot be stored."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool or kind is float:
        return value
    if kind is list:
        return [encode(item) for item in value]
    if kind is dict:
        if TAG not in value and all(type(key) is str for key in value):
            return {key: encode(item) for key, item in value.items()}
        return {TAG: "dict", "v": [[encode(key), encode(item)] for key, item in value.items()]}
    builtin = _ENCODERS.get(kind)
    if builtin is not None:
        return builtin(value)
    codec = _by_type.get(kind)
    if codec is not None:
        return {TAG: codec.tag, "v": encode(codec.to_data(value))}
    if isinstance(value, enum.Enum):
        return {TAG: "enum", "t": _importable(kind, "Enum"), "v": value.name}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        path = _importable(kind, "dataclass")
        return {TAG: "dataclass", "t": path, "v": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return {TAG: "pydantic", "t": _importable(kind, "pydantic model"), "v": value.model_dump(mode="json")}
    raise Unencodable(f"a value of type {kind.__name__} ({value!r:.60})")


def decode(data: Any) -> Any:
    """The value `encode` stored (fresh objects each time). Raises Undecodable."""
    kind = type(data)
    if kind is list:
        return [decode(item) for item in data]
    if kind is dict:
        tag = data.get(TAG)
        if tag is None:
            return {key: decode(item) for key, item in data.items()}
        try:
            return _decode_tagged(tag, data)
        except Undecodable:
            raise
        except Exception as error:  # noqa: BLE001 - any malformed record reads as undecodable
            raise Undecodable(f"stored {tag!r} value cannot be rebuilt: {error!r}") from error
    return data


def is_plain(value: Any) -> bool:
    """Whether `value` is JSON that survives a round trip unchanged (what a button may carry)."""
    return json_problem(value) is None


def json_problem(value: Any) -> str | None:
    """What keeps `value` from being plain JSON, or None."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool or kind is float:
        return None
    if kind is list:
        return next((p for p in map(json_problem, value) if p is not None), None)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return f"a dict key of type {type(key).__name__} ({key!r})"
            problem = json_problem(item)
            if problem is not None:
                return problem
        return None
    return f"a value of type {kind.__name__} ({value!r:.60})"


# --- the built-in types ------------------------------------------------------------------------------

def _tagged(tag: str, payload: Any) -> dict[str, Any]:
    return {TAG: tag, "v": payload}


def _encode_clock(tag: str, value: dt.datetime | dt.time) -> dict[str, Any]:
    """A datetime or time as ISO text; a zoneinfo zone is kept by its key (a fixed offset is in
    the text; other tzinfo classes keep the offset they give)."""
    zone = value.tzinfo
    if isinstance(zone, ZoneInfo) and zone.key:
        data: dict[str, Any] = {TAG: tag, "v": value.replace(tzinfo=None).isoformat(), "tz": zone.key}
    else:
        data = _tagged(tag, value.isoformat())
    if value.fold:
        data["fold"] = 1
    return data


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    tuple: lambda value: _tagged("tuple", [encode(item) for item in value]),
    set: lambda value: _tagged("set", [encode(item) for item in value]),
    frozenset: lambda value: _tagged("frozenset", [encode(item) for item in value]),
    bytes: lambda value: _tagged("bytes", base64.b64encode(value).decode("ascii")),
    Decimal: lambda value: _tagged("decimal", str(value)),
    uuid.UUID: lambda value: _tagged("uuid", str(value)),
    dt.datetime: lambda value: _encode_clock("datetime", value),
    dt.date: lambda value: _tagged("date", value.isoformat()),
    dt.time: lambda value: _encode_clock("time", value),
    dt.timedelta: lambda value: _tagged("timedelta", [value.days, value.seconds, value.microseconds]),
}


def _decode_clock(kind: type[dt.datetime] | type[dt.time], data: dict[str, Any]) -> Any:
    value = kind.fromisoformat(data["v"])
    if "tz" in data:
        try:
            value = value.replace(tzinfo=ZoneInfo(data["tz"]))
        except ZoneInfoNotFoundError as error:
            raise Undecodable(f"time zone {data['tz']!r} is not known here") from error
    return value.replace(fold=data.get("fold", 0))


def _decode_tagged(tag: str, data: dict[str, Any]) -> Any:
    payload = data["v"]
    if tag == "tuple":
        return tuple(decode(item) for item in payload)
    if tag == "dict":
        return {decode(key): decode(item) for key, item in payload}
    if tag == "datetime":
        return _decode_clock(dt.datetime, data)
    if tag == "set":
        return {decode(item) for item in payload}
    if tag == "frozenset":
        return frozenset(decode(item) for item in payload)
    if tag == "decimal":
        return Decimal(payload)
    if tag == "uuid":
        return uuid.UUID(payload)
    if tag == "bytes":
        return base64.b64decode(payload)
    if tag == "date":
        return dt.date.fromisoformat(payload)
    if tag == "time":
        return _decode_clock(dt.time, data)
    if tag == "timedelta":
        return dt.timedelta(*payload)
    if tag == "enum":
        return _find(data["t"])[payload]
    if tag == "dataclass":
        kind = _find(data["t"])
        instance = kind.__new__(kind)
        for name, item in payload.items():  # as recorded, without running __init__ or __post_init__
            object.__setattr__(instance, name, decode(item))
        return instance
    if tag == "pydantic":
        return _find(data["t"]).model_validate(payload)
    codec = _by_tag.get(tag)
    if codec is None:
        raise Undecodable(f"no codec is registered for stored values tagged {tag!r}")
    return codec.from_data(decode(payload))


# --- types found again by their path -------------------------------------------------------------------

_paths: dict[type, str] = {}


def _importable(kind: type, what: str) -> str:
    """`module:qualname` of a class that can be imported again (a class defined inside a function
    cannot be, so a value of it could never be rebuilt after a restart)."""
    path = _paths.get(kind)
    if path is None:
        path = f"{kind.__module__}:{kind.__qualname__}"
        try:
            found = _find(path)
        except Undecodable:
            found = None
        if found is not kind:
            raise Unencodable(f"a {what} of type {kind.__qualname__}, which cannot be imported again (define it at module level)")
        _paths[kind] = path
    return path


def _find(path: str) -> Any:
    module_name, _, qualname = current_path(path).partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise Undecodable(f"{path} no longer exists: {error}") from error
    return target
