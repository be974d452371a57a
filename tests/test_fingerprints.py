"""A changed flow never feeds a recorded answer to another question.

The pizza bot of the report, run through the Engine on a real SQLite file with no suspended
dialog kept in memory (`max_live=0`: every turn replays the stored record, as after a restart or
on another replica). A session is started with one version of the code, and continued with
another, as a deploy without a version bump would do.
"""

from __future__ import annotations

import json
import logging
from itertools import count
from pathlib import Path
from typing import Any, Callable

import pytest

from convoflow import (
    BaseDialog, Incoming, Option, SessionKey, Text, ask, dialog, get_client_response, send_message,
)
from convoflow.turns import Engine, TurnOutcome
from convoflow.stores import open_store
from tests.support.dialog_helpers import JsonPersistence, chat, said, stored

KEY = SessionKey("telegram:7:42", "pizza")
SIZES = ["Small", "Medium", "Large"]


def pizza_bot(*questions: Callable[[], BaseDialog[Any]]) -> Callable[[], BaseDialog[Any]]:
    """A pizza bot asking `questions` in this order, then confirming what it was told."""

    @dialog(version="1.0", name="main")
    def main():
        yield send_message("Pizza time!")
        answers = []
        for question in questions:
            answers.append((yield question()))
        yield send_message(f"Order: {' / '.join(map(str, answers))}")
        yield ask("Anything else?")

    return main


def size() -> BaseDialog[Any]:
    return ask("What size?", choices=SIZES)


def address() -> BaseDialog[Any]:
    return ask("Your address?")


def name() -> BaseDialog[Any]:
    return ask("Your name?")


@dialog(version="1.0", name="fallback")
def fallback():
    yield send_message("We updated the bot, so let's start over.")


class Bot:
    """One session in a SQLite file; each `say` is a turn of an Engine running `code`."""

    def __init__(self, path: Path) -> None:
        self.url = f"sqlite:///{path / 'pizza.db'}"
        self.ids = count(1)
        self.outcomes: list[TurnOutcome] = []

    async def say(self, code: Callable[[], BaseDialog[Any]], text: str) -> list[str]:
        store = open_store(self.url)
        engine = Engine(code, store, fallback, app="pizza", max_live=0, on_turn=self.outcomes.append)
        try:
            replies = await engine.handle(Incoming(KEY, f"u{next(self.ids)}", text=text, address={"chat": 42}))
        finally:
            await store.close()
        return [r.message.text for r in replies if isinstance(r.message, Text)]

    @property
    def outcome(self) -> str:
        return self.outcomes[-1].outcome

    async def state(self) -> dict[str, Any]:
        store = open_store(self.url)
        try:
            session = await store.load(KEY)
        finally:
            await store.close()
        assert session is not None and session.state is not None
        return session.state


async def test_swapped_questions_restart_the_session_instead_of_swapping_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bot = Bot(tmp_path)
    before, after = pizza_bot(size, address), pizza_bot(address, size)
    assert await bot.say(before, "hi") == ["Pizza time!", "What size?"]
    assert await bot.say(before, "Medium") == ["Your address?"]
    with caplog.at_level(logging.WARNING, "convoflow"):
        replies = await bot.say(after, "5 Elm Road")
    assert bot.outcome == "restarted"
    assert replies == ["We updated the bot, so let's start over.", "Pizza time!", "Your address?"]
    warning = next(r for r in caplog.records if "restarting session" in r.getMessage())
    assert str(KEY) in warning.getMessage() and "code mismatch" in warning.getMessage()
    # the new flow runs on from its start: nobody orders a "5 Elm Road" pizza
    assert await bot.say(after, "5 Elm Road") == ["What size?"]
    assert await bot.say(after, "Large") == ["Order: 5 Elm Road / Large", "Anything else?"]


async def test_swapped_questions_are_caught_while_the_first_one_waits(tmp_path: Path) -> None:
    bot = Bot(tmp_path)
    await bot.say(pizza_bot(size, address), "hi")
    replies = await bot.say(pizza_bot(address, size), "Medium")  # the answer meant for "What size?"
    assert bot.outcome == "restarted"
    assert replies == ["We updated the bot, so let's start over.", "Pizza time!", "Your address?"]


async def test_a_question_inserted_before_recorded_ones_restarts_the_session(tmp_path: Path) -> None:
    bot = Bot(tmp_path)
    await bot.say(pizza_bot(size, address), "hi")
    await bot.say(pizza_bot(size, address), "Medium")
    replies = await bot.say(pizza_bot(name, size, address), "5 Elm Road")
    assert bot.outcome == "restarted"
    assert replies[-1] == "Your name?"


async def test_rewording_an_unkeyed_question_restarts_the_session(tmp_path: Path) -> None:
    bot = Bot(tmp_path)
    await bot.say(pizza_bot(size, address), "hi")
    await bot.say(pizza_bot(size, address), "Medium")
    reworded = pizza_bot(lambda: ask("Which size?", choices=SIZES), address)
    await bot.say(reworded, "5 Elm Road")
    assert bot.outcome == "restarted"


def keyed_size(question: str, choices: list[Any]) -> Callable[[], BaseDialog[Any]]:
    return lambda: ask(question, choices=choices, key="size")


async def test_a_keyed_question_keeps_its_sessions_across_a_rewording(tmp_path: Path) -> None:
    bot = Bot(tmp_path)
    first = pizza_bot(keyed_size("Waht size?", SIZES), lambda: ask("Address?", key="address"))
    await bot.say(first, "hi")
    await bot.say(first, "Medium")
    # typos fixed, option labels reworded (their values stay): nobody restarts
    fixed = pizza_bot(
        keyed_size("What size?", [Option("Small (25 cm)", "Small"), Option("Medium (30 cm)", "Medium"),
                                  Option("Large (35 cm)", "Large")]),
        lambda: ask("Your delivery address?", key="address"),
    )
    assert await bot.say(fixed, "5 Elm Road") == ["Order: Medium / 5 Elm Road", "Anything else?"]
    assert bot.outcome == "ok"


async def test_a_keyed_question_whose_options_changed_never_gets_the_old_answer(tmp_path: Path) -> None:
    bot = Bot(tmp_path)
    first = pizza_bot(keyed_size("What size?", SIZES), address)
    await bot.say(first, "hi")
    await bot.say(first, "Medium")
    changed = pizza_bot(keyed_size("What size?", ["Personal", "Family"]), address)
    replies = await bot.say(changed, "5 Elm Road")
    assert bot.outcome == "restarted"
    assert replies[-1] == "What size?"


def before_fingerprints(state: dict[str, Any]) -> dict[str, Any]:
    """`state` as convoflow stored it before steps carried fingerprints."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "f"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    stripped = strip(state)
    for entry in stripped["frame"]["log"]:
        if len(entry) > 2 and not entry[2]:
            del entry[2]
    return stripped


async def put_state(bot: Bot, state: dict[str, Any]) -> None:
    store = open_store(bot.url)
    try:
        session = await store.load(KEY)
        assert session is not None
        await store.commit(session.advanced(state=state))
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("choices", "outcome"),
    [(["Small", "Medium", "Large", "Huge"], "ok"), (["Personal", "Family"], "restarted")],
    ids=["answer-still-an-option", "answer-no-longer-an-option"],
)
async def test_an_answer_recorded_before_fingerprints_is_checked_against_todays_options(
    tmp_path: Path, choices: list[str], outcome: str
) -> None:
    bot = Bot(tmp_path)
    first = pizza_bot(size, address)
    await bot.say(first, "hi")
    await bot.say(first, "Medium")
    legacy = before_fingerprints(await bot.state())
    assert "'f'" not in repr(legacy) and legacy["frame"]["log"][0] == ["ask", "Medium"]
    await put_state(bot, legacy)
    replies = await bot.say(pizza_bot(lambda: ask("What size?", choices=choices), address), "5 Elm Road")
    assert bot.outcome == outcome
    if outcome == "ok":
        assert replies == ["Order: Medium / 5 Elm Road", "Anything else?"]


async def test_steps_recorded_before_fingerprints_still_match_by_name(tmp_path: Path) -> None:
    bot = Bot(tmp_path)
    first = pizza_bot(size, address)
    await bot.say(first, "hi")
    await bot.say(first, "Medium")
    await put_state(bot, before_fingerprints(await bot.state()))
    # an upgrade restarts nobody, even where today's fingerprint would differ
    reworded = pizza_bot(lambda: ask("Which size?", choices=SIZES), address)
    assert await bot.say(reworded, "5 Elm Road") == ["Order: Medium / 5 Elm Road", "Anything else?"]
    assert bot.outcome == "ok"


# --- subdialogs, callables, and what the fingerprints cost ---------------------------------------------

@dialog()
def prompt(text: str):
    """The seed examples' helper: ask a question as a subdialog of its own."""
    yield send_message(text)
    return (yield get_client_response())


def test_a_subdialog_called_with_other_arguments_at_a_recorded_place_restarts() -> None:
    def profile(first: str, second: str) -> Callable[[], BaseDialog[Any]]:
        @dialog(name="profile")
        def flow():
            one = yield prompt(first)
            two = yield prompt(second)
            yield send_message(f"{one} from {two}")
            yield get_client_response()

        return flow

    persistence = JsonPersistence()
    chat(profile("Your name?", "Your city?"), persistence, ["hi", "Ada"])
    steps = chat(profile("Your city?", "Your name?"), persistence, ["London"])
    assert said(steps) == [["Your city?"]]  # started over: "Ada" is nobody's city


def test_callable_arguments_are_left_out_of_the_fingerprint() -> None:
    # a new lambda each turn, as in a new process: its repr differs, the session goes on
    @dialog(name="age")
    def age():
        years = yield ask("Your age?", parse=lambda text: int(text))
        more = yield ask("And next year?", parse=lambda text: int(text) + 0)
        yield send_message(f"{years} then {more}")
        yield get_client_response()

    persistence = JsonPersistence()
    steps = chat(age, persistence, ["hi", "36", "37"])
    assert said(steps)[-1] == ["36 then 37"]


def test_fingerprints_cost_a_few_bytes_and_a_loops_questions_still_share_one_entry() -> None:
    @dialog(name="guesses")
    def guesses():
        while True:
            yield ask("Your guess?", parse=int)

    persistence = JsonPersistence()
    chat(guesses, persistence, ["hi", *[str(n) for n in range(100)]])
    log = stored(persistence)["frame"]["log"]
    assert log == [["ask", list(range(100)), {"f": log[0][2]["f"], "each": True}]]
    assert len(log[0][2]["f"]) == 6
    assert len(json.dumps(stored(persistence))) < 600


def test_a_form_of_different_questions_is_one_entry_with_their_fingerprints_folded() -> None:
    @dialog(name="form")
    def form():
        answers = []
        for question in ["Name?", "City?", "Street?", "Zip?"]:
            answers.append((yield ask(question)))
        yield send_message(", ".join(answers))
        yield get_client_response()

    persistence = JsonPersistence()
    steps = chat(form, persistence, ["hi", "Ada", "London", "Elm Road", "N1"])
    assert said(steps)[-1] == ["Ada, London, Elm Road, N1"]
    log = stored(persistence)["frame"]["log"]
    assert log == [["ask", ["Ada", "London", "Elm Road", "N1"], {"fc": log[0][2]["fc"], "each": True}]]

    # the folded fingerprints are checked as a whole: a question changed inside the run is caught
    @dialog(name="form")
    def changed_form():
        answers = []
        for question in ["Name?", "Street?", "City?", "Zip?"]:
            answers.append((yield ask(question)))
        yield send_message(", ".join(answers))
        yield get_client_response()

    assert said(chat(changed_form, persistence, ["again"])) == [[Text("Name?")]]


async def test_a_session_restarted_for_a_mismatch_is_stored_fresh(tmp_path: Path) -> None:
    bot = Bot(tmp_path)
    await bot.say(pizza_bot(size, address), "hi")
    await bot.say(pizza_bot(size, address), "Medium")
    await bot.say(pizza_bot(address, size), "5 Elm Road")
    state = await bot.state()
    # nothing of the abandoned run is kept: the new flow waits at its first question
    assert "Medium" not in json.dumps(state) and "5 Elm Road" not in json.dumps(state)
    assert state["frame"]["pending"]["pending"] == "<input>"


def test_a_flow_failing_on_answers_given_to_other_questions_of_a_stored_run_restarts() -> None:
    @dialog(name="signup")
    def signup():
        name = yield ask("Name?")
        age = yield ask("Age?", parse=int)
        yield send_message(f"{name}, {age + 1} next year")
        yield get_client_response()

    persistence = JsonPersistence()
    chat(signup, persistence, ["hi", "Ada", "36"])
    assert "fc" in json.dumps(stored(persistence))  # the two answers share one entry

    @dialog(name="signup")
    def swapped():
        age = yield ask("Age?", parse=int)
        yield send_message(f"In a year: {age + 1}")  # replayed with "Ada": TypeError amid the run
        name = yield ask("Name?")
        yield send_message(f"{name}, {age + 1} next year")
        yield get_client_response()

    assert said(chat(swapped, persistence, ["again"])) == [[Text("Age?")]]  # restarted, not failed
