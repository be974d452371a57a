"""Recorded values beyond JSON come back exactly: the same type, an equal value, after a round
trip through memory, SQLite and MongoDB (the stores every store test runs against)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from convoflow import (
    Incoming, InMemoryPersistence, SessionKey, Text, UnstorableValue, ask, dialog, get_client_response,
    register_codec, run_gen_dialog, send_message,
)
from convoflow.turns import Engine
from tests.support.dialog_helpers import JsonPersistence, chat
from tests.support.store_backends import STORE_BACKENDS, open_backend


class Size(enum.Enum):
    SMALL = "s"
    LARGE = "l"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float


@dataclasses.dataclass
class Order:
    id: uuid.UUID
    price: Decimal
    placed: dt.datetime
    items: list[str]
    where: Point
    tags: set[str] = dataclasses.field(default_factory=set)
    checked: bool = dataclasses.field(default=False, init=False)


class Money:
    """A user type without a dataclass: stored through a registered codec."""

    def __init__(self, cents: int, currency: str) -> None:
        self.cents, self.currency = cents, currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.cents, self.currency) == (other.cents, other.currency)

    def __repr__(self) -> str:
        return f"Money({self.cents}, {self.currency!r})"


register_codec(Money, "test.money", lambda m: (m.cents, m.currency), lambda data: Money(*data))

PARIS = ZoneInfo("Europe/Paris")
VALUES: dict[str, Any] = {
    "tuple": ("Ada", ("forest", 3)),
    "naive datetime": dt.datetime(2024, 5, 17, 9, 30, 15, 120),
    "utc datetime": dt.datetime(2024, 5, 17, 9, 30, tzinfo=dt.timezone.utc),
    "offset datetime": dt.datetime(2024, 5, 17, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))),
    "zoneinfo datetime": dt.datetime(2024, 10, 27, 2, 30, tzinfo=PARIS, fold=1),
    "date": dt.date(1815, 12, 10),
    "time": dt.time(23, 59, 59, 999999),
    "aware time": dt.time(8, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    "timedelta": dt.timedelta(days=-2, seconds=5, microseconds=7),
    "decimal": Decimal("19.990"),
    "negative zero decimal": Decimal("-0"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "bytes": b"\x00\xffconvoflow",
    "set": {"a", 1, ("b", 2)},
    "frozenset": frozenset({1.5, "x"}),
    "enum": Size.LARGE,
    "int enum": Priority.HIGH,
    "dataclass": Order(
        uuid.UUID(int=7), Decimal("12.50"), dt.datetime(2024, 1, 1, tzinfo=PARIS), ["margherita"], Point(1, 2.5), {"hot"},
    ),
    "registered codec": Money(1999, "EUR"),
    "dict that looks like a tag": {"#": "tuple", "v": [1, 2]},
    "dict with int keys": {1: "one", 2: ("two",)},
    "nested": {"when": [dt.date(2024, 2, 29), None], "#": {"#": "set", "v": []}, "n": 1.0},
}


def assert_exactly(got: Any, expected: Any) -> None:
    assert type(got) is type(expected) and got == expected, (got, expected)
    if isinstance(expected, (dt.datetime, dt.time)):
        assert got.tzinfo == expected.tzinfo and got.fold == expected.fold
        if isinstance(expected.tzinfo, ZoneInfo):
            assert got.tzinfo is expected.tzinfo
    if isinstance(expected, Decimal):
        assert str(got) == str(expected)  # the same digits and exponent, not just an equal number
    if isinstance(expected, (tuple, list)):
        for item, want in zip(got, expected):
            assert_exactly(item, want)
    if isinstance(expected, dict):
        assert list(got) == list(expected)
        for key in expected:
            assert_exactly(got[key], expected[key])
    if dataclasses.is_dataclass(expected):
        for field in dataclasses.fields(expected):
            assert_exactly(getattr(got, field.name), getattr(expected, field.name))


@dialog()
def produce(label: str) -> Any:
    return VALUES[label]


@dialog(name="keeper")
def keeper(label: str):
    value = yield produce(label)
    seen = yield get_client_response()  # the session waits here with the value in its record
    yield send_message(f"{seen}: a {type(value).__name__}")  # (a set's repr has no set order)
    return value


@pytest.mark.parametrize("label", VALUES)
@pytest.mark.parametrize("persistence", [InMemoryPersistence, JsonPersistence], ids=["in_memory", "json"])
def test_a_recorded_value_comes_back_exactly(label: str, persistence: type) -> None:
    kept = persistence()
    first, second = chat(lambda: keeper(label), kept, ["hi", "back"])
    assert not first.is_done and second.is_done
    assert_exactly(second.return_value, VALUES[label])
    assert second.messages == [f"back: a {type(VALUES[label]).__name__}"]


@dialog(version="1.0", name="main")
def wallet():
    order = yield produce("dataclass")
    stamp = yield produce("zoneinfo datetime")
    pair = yield produce("tuple")
    answer = yield ask("Confirm?")
    yield send_message(f"{answer}: {order.price} at {stamp.isoformat()} for {pair[0]}")
    again = yield ask("Again?")
    yield send_message(repr((order, stamp, pair, again)))
    yield get_client_response()


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    opened = await open_backend(request.param, tmp_path, request)
    yield opened
    await opened.close()


async def test_values_come_back_exactly_after_a_round_trip_through_each_store(store: Any) -> None:
    key = SessionKey("console:ada", "wallet")
    engine = Engine(wallet, store, app="wallet", max_live=0)  # every turn replays from the stored record

    async def say(number: int, text: str) -> list[str]:
        replies = await engine.handle(Incoming(key, f"u{number}", text=text))
        return [r.message.text for r in replies if isinstance(r.message, Text)]

    order, stamp, pair = VALUES["dataclass"], VALUES["zoneinfo datetime"], VALUES["tuple"]
    assert await say(1, "hi") == ["Confirm?"]
    assert await say(2, "yes") == [f"yes: 12.50 at {stamp.isoformat()} for Ada", "Again?"]
    assert await say(3, "no") == [repr((order, stamp, pair, "no"))]
    session = await store.load(key)
    assert session is not None and '"#": "dataclass"' in json.dumps(session.state)


@dialog()
def plain_profile() -> Any:
    return {"name": "Ada", "scores": [1, 2.5, None, True], "nested": {"ok": "yes"}}


def test_plain_json_values_are_stored_as_they_are_without_tags() -> None:
    @dialog(name="plain")
    def plain():
        yield plain_profile()
        yield produce("tuple")
        yield get_client_response()

    persistence = JsonPersistence()
    chat(plain, persistence, ["hi"])
    assert persistence.text is not None
    log = json.loads(persistence.text)["frame"]["log"]
    assert log[0] == ["plain_profile", plain_profile().func()]
    assert log[1][1] == {"#": "tuple", "v": ["Ada", {"#": "tuple", "v": ["forest", 3]}]}


class Opaque:
    pass


@dialog()
def make_opaque() -> Any:
    return {"fine": (1, 2), "bad": Opaque()}


def test_anything_else_still_fails_at_the_step_that_produced_it() -> None:
    @dialog(name="shop")
    def shop():
        yield make_opaque()

    with pytest.raises(UnstorableValue, match=r"dialog shop: step 'make_opaque' produced a value of type Opaque"):
        run_gen_dialog(shop(), InMemoryPersistence(), "hi")


def test_a_codec_tag_cannot_be_taken_twice_or_shadow_a_builtin() -> None:
    with pytest.raises(ValueError, match="taken"):
        register_codec(Opaque, "test.money", lambda o: None, lambda d: Opaque())
    with pytest.raises(ValueError, match="taken"):
        register_codec(Opaque, "tuple", lambda o: None, lambda d: Opaque())


def test_a_session_whose_recorded_type_left_the_code_restarts(caplog: pytest.LogCaptureFixture) -> None:
    persistence = JsonPersistence()
    chat(lambda: keeper("enum"), persistence, ["hi"])
    assert persistence.text is not None
    persistence.text = persistence.text.replace(f"{__name__}:Size", f"{__name__}:RemovedSize")
    with caplog.at_level("WARNING", "convoflow"):
        (step,) = chat(lambda: keeper("enum"), persistence, ["back"])
    assert not step.is_done  # started over: the value it recorded cannot be rebuilt
    assert any("RemovedSize" in record.getMessage() for record in caplog.records)
