"""A step's error that the flow catches stays caught after a replay from the store.

The error a step raised is recorded; every later turn that replays the record raises it again at
the same place. It must be the same class with the same args and attributes, or the flow's
`except` clause no longer catches it, and every later message gets the apology.
"""

from __future__ import annotations

import json
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from convoflow import Incoming, SessionKey, StepFailed, Text, ask, dialog, get_client_response, send_message
from convoflow.turns import Engine, TurnOutcome
from convoflow.stores import open_store
from tests.support.dialog_helpers import JsonPersistence, chat, said

KEY = SessionKey("telegram:7:42", "settings")


class Quota(Exception):
    """A custom error whose constructor takes other arguments than its args."""

    def __init__(self, user: str, limit: int) -> None:
        super().__init__(f"{user} is over the limit of {limit}")
        self.user, self.limit = user, limit


class Strict(Exception):
    """A constructor that cannot be called again with the recorded args (keyword-only)."""

    def __init__(self, *, code: int) -> None:
        super().__init__(f"code {code}")
        self.code = code


@dialog()
def parse_settings(text: str) -> Any:
    return json.loads(text)


@dialog()
def save(settings: Any) -> str:
    if len(settings) > 2:
        raise Quota("ada", 2)
    if "code" in settings:
        raise Strict(code=settings["code"])
    return "saved"


@dialog(version="1.0", name="main")
def settings_bot():
    while True:
        text = yield ask("Send your settings as JSON.")
        try:
            settings = yield parse_settings(text)
            result = yield save(settings)
        except json.JSONDecodeError as error:
            yield send_message(f"Not JSON ({error.msg} at {error.pos} of {error.doc!r}).")
            continue
        except Quota as quota:
            yield send_message(f"{quota.user}: at most {quota.limit} settings ({quota}).")
            continue
        except Strict as strict:
            yield send_message(f"Refused with code {strict.code} ({strict.args[0]}).")
            continue
        yield send_message(f"Settings {result}.")


class Turns:
    """Each turn a new Engine on the same SQLite file, keeping nothing in memory: every turn
    replays the record from the store, as after a restart or on another replica."""

    def __init__(self, path: Path) -> None:
        self.url = f"sqlite:///{path / 'settings.db'}"
        self.ids = count(1)
        self.outcomes: list[TurnOutcome] = []

    async def say(self, text: str) -> list[str]:
        store = open_store(self.url)
        engine = Engine(settings_bot, store, app="settings", max_live=0, on_turn=self.outcomes.append)
        try:
            replies = await engine.handle(Incoming(KEY, f"u{next(self.ids)}", text=text))
        finally:
            await store.close()
        return [r.message.text for r in replies if isinstance(r.message, Text)]


async def test_a_caught_decode_error_stays_caught_when_every_turn_replays_from_sqlite(tmp_path: Path) -> None:
    turns = Turns(tmp_path)
    assert await turns.say("hi") == ["Send your settings as JSON."]
    assert await turns.say("{oops") == [
        "Not JSON (Expecting property name enclosed in double quotes at 1 of '{oops').",
        "Send your settings as JSON.",
    ]
    # the next turns replay the recorded JSONDecodeError: the flow's except clause catches it again
    assert await turns.say('{"a": 1, "b": 2, "c": 3}') == [
        "ada: at most 2 settings (ada is over the limit of 2).", "Send your settings as JSON.",
    ]
    assert await turns.say('{"code": 7}') == ["Refused with code 7 (code 7).", "Send your settings as JSON."]
    assert await turns.say('{"theme": "dark"}') == ["Settings saved.", "Send your settings as JSON."]
    assert await turns.say("[1, 2]") == ["Settings saved.", "Send your settings as JSON."]
    assert [outcome.outcome for outcome in turns.outcomes] == ["ok"] * 6


def test_a_replayed_error_has_the_same_class_args_and_attributes() -> None:
    caught: list[BaseException] = []

    @dialog(name="collector")
    def collector():
        for text in ["{oops", '{"a": 1, "b": 2, "c": 3}', '{"code": 9}']:
            try:
                yield save((yield parse_settings(text)))
            except Exception as error:  # noqa: BLE001 - the test looks at what the flow got
                caught.append(error)
        yield get_client_response()

    persistence = JsonPersistence()
    chat(collector, persistence, ["hi"])
    first_run = caught[:]
    caught.clear()
    chat(collector, persistence, ["again"])  # a replay from JSON text: the errors come from the record
    assert len(caught) == len(first_run) == 3
    for replayed, original in zip(caught, first_run):
        assert type(replayed) is type(original)
        assert replayed.args == original.args and str(replayed) == str(original)
        assert vars(replayed) == vars(original)
    decode_error = caught[0]
    assert isinstance(decode_error, json.JSONDecodeError)
    assert (decode_error.doc, decode_error.pos, decode_error.lineno, decode_error.colno) == ("{oops", 1, 1, 2)


def test_an_error_whose_class_is_gone_comes_back_as_step_failed_naming_type_and_message() -> None:
    seen: list[str] = []

    @dialog(name="careful")
    def careful():
        try:
            yield save({"a": 1, "b": 2, "c": 3})
        except Exception as error:  # noqa: BLE001 - the flow reports whatever it got
            seen.append(f"{type(error).__name__}: {error}")
        yield get_client_response()
        yield send_message("done")

    persistence = JsonPersistence()
    chat(careful, persistence, ["hi"])
    assert persistence.text is not None
    persistence.text = persistence.text.replace(f"{__name__}.Quota", f"{__name__}.RemovedQuota")
    assert said(chat(careful, persistence, ["next"])) == [["done"]]
    assert seen == [
        "Quota: ada is over the limit of 2",
        f"StepFailed: {__name__}.RemovedQuota: ada is over the limit of 2",
    ]
    assert isinstance(StepFailed("x.Y", ["z"]), Exception)


@pytest.mark.parametrize("error", [KeyError("size"), OSError(2, "No such file"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")])
def test_builtin_errors_replay_with_their_message(error: Exception) -> None:
    @dialog()
    def failing() -> None:
        raise error

    messages: list[str] = []

    @dialog(name="flow")
    def flow():
        try:
            yield failing()
        except type(error) as caught:
            messages.append(f"{type(caught).__name__}: {caught}")
        yield get_client_response()

    persistence = JsonPersistence()
    chat(flow, persistence, ["hi", "again"])
    assert messages == [f"{type(error).__name__}: {error}"] * 2
