"""The seed's embedding API, driven as its users drive it: `run_dialog`, `run_gen_dialog` and
`run_async_gen_dialog` with a persistence provider, every dialog style nested freely, versions and
fallback dialogs, many conversations at once, and `ask`.

Most tests run twice: with `InMemoryPersistence` (the state object is kept, so the suspended play
is reused) and with a provider that keeps only JSON text (every turn replays the record).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
from typing import Any, Callable

import pytest

from convoflow import (
    BaseDialog,
    DialogState,
    DialogStateException,
    DialogStepDone,
    DialogStepNotDone,
    InMemoryPersistence,
    Option,
    PersistenceProvider,
    Result,
    Text,
    ask,
    dialog,
    dialog_result,
    get_client_response,
    new_empty_state,
    run,
    run_async_gen_dialog,
    run_dialog,
    run_gen_dialog,
    send_message,
    state_from_dict,
)
from tests.support.dialog_helpers import JsonPersistence, achat, chat, said, stored


# --- one conversation in each of the seed's styles ------------------------------------------------

@dialog()
def plain_age() -> int:
    run(send_message("How old are you?"))
    return int(run(get_client_response()))


@dialog(version="1.0")
def plain_greeting() -> dict[str, Any]:
    run(send_message("What is your name?"))
    name = run(get_client_response())
    run(send_message(f"{name} is a beautiful name!"))
    age = run(plain_age())
    run(send_message(f"{name}, {age}: noted."))
    return {"name": name, "age": age}


@dialog()
def gen_age():
    yield send_message("How old are you?")
    return int((yield get_client_response()))


@dialog(version="1.0")
def gen_greeting():
    yield send_message("What is your name?")
    name = yield get_client_response()
    yield send_message(f"{name} is a beautiful name!")
    age = yield gen_age()
    yield send_message(f"{name}, {age}: noted.")
    return {"name": name, "age": age}


@dialog()
async def async_gen_age():
    yield send_message("How old are you?")
    await asyncio.sleep(0.001)
    answer = yield get_client_response()
    yield dialog_result(int(answer))


@dialog(version="1.0")
async def async_gen_greeting():
    yield send_message("What is your name?")
    name = yield get_client_response()
    await asyncio.sleep(0.001)
    yield send_message(f"{name} is a beautiful name!")
    age = yield async_gen_age()
    yield send_message(f"{name}, {age}: noted.")
    yield dialog_result({"name": name, "age": age})
    yield send_message("never sent: dialog_result ended the dialog")


GREETING_TRANSCRIPT = [
    ["What is your name?"],  # the message that starts a dialog is not its answer
    ["Ada is a beautiful name!", "How old are you?"],
    ["Ada, 36: noted."],
]


def test_plain_functions_with_run_play_through_run_dialog(persistence: PersistenceProvider) -> None:
    steps = [run_dialog(plain_greeting(), persistence, text) for text in ["hi", "Ada", "36"]]
    assert said(steps) == GREETING_TRANSCRIPT
    assert [step.is_done for step in steps] == [False, False, True]
    assert isinstance(steps[0], DialogStepNotDone) and steps[0].return_value is None
    assert isinstance(steps[2], DialogStepDone) and steps[2].return_value == {"name": "Ada", "age": 36}


def test_generator_dialogs_play_through_run_gen_dialog(persistence: PersistenceProvider) -> None:
    steps = chat(gen_greeting, persistence, ["hi", "Ada", "36"])
    assert said(steps) == GREETING_TRANSCRIPT
    assert [step.is_done for step in steps] == [False, False, True]
    assert steps[2].return_value == {"name": "Ada", "age": 36}


async def test_async_generator_dialogs_await_and_return_with_dialog_result(persistence: PersistenceProvider) -> None:
    steps = await achat(async_gen_greeting, persistence, ["hi", "Ada", "36"])
    assert said(steps) == GREETING_TRANSCRIPT
    assert steps[2].is_done and steps[2].return_value == {"name": "Ada", "age": 36}


@pytest.mark.parametrize("make", [plain_greeting, gen_greeting, async_gen_greeting])
async def test_run_async_gen_dialog_plays_every_style(make: Callable[[], BaseDialog[Any]], persistence: PersistenceProvider) -> None:
    steps = await achat(make, persistence, ["hi", "Ada", "36"])
    assert said(steps) == GREETING_TRANSCRIPT
    assert steps[-1].return_value == {"name": "Ada", "age": 36}


@pytest.mark.parametrize("make", [plain_greeting, gen_greeting, async_gen_greeting])
async def test_a_finished_dialog_keeps_returning_its_result(make: Callable[[], BaseDialog[Any]], persistence: PersistenceProvider) -> None:
    steps = await achat(make, persistence, ["hi", "Ada", "36", "hello again", "still there?"])
    assert said(steps)[3:] == [[], []]
    assert all(step.is_done and step.return_value == {"name": "Ada", "age": 36} for step in steps[2:])


def test_run_gen_dialog_refuses_a_dialog_that_awaits_asyncio_work() -> None:
    with pytest.raises(TypeError, match="run_async_gen_dialog"):
        chat(async_gen_greeting, InMemoryPersistence(), ["hi", "Ada"])


def test_run_outside_a_dialog_is_a_dialog_state_exception() -> None:
    with pytest.raises(DialogStateException, match="outside a running dialog"):
        run(send_message("hello"))


# --- steps: plain and async functions are recorded once --------------------------------------------

calls: list[str] = []


@dialog()
def roll_die() -> int:
    calls.append("roll_die")
    return random.randint(1, 6)


@dialog()
async def fetch_forecast(city: str) -> str:
    calls.append(f"fetch_forecast {city}")
    await asyncio.sleep(0.001)
    return f"{random.choice(['sunny', 'rainy', 'windy'])} in {city}"


@dialog()
def trip():
    city = yield ask("Where to?")
    forecast = yield fetch_forecast(city)
    die = yield roll_die()
    yield send_message(f"{forecast}; you rolled {die}")
    yield ask("Shall I book it?")
    yield send_message(f"Booked: {city}, {forecast}, {die}")
    return [forecast, die]


@pytest.fixture(autouse=True)
def no_calls_yet() -> None:
    calls.clear()


async def test_plain_and_async_functions_are_steps_run_once_and_replayed(persistence: PersistenceProvider) -> None:
    steps = await achat(trip, persistence, ["hi", "Oslo", "yes"])
    forecast, die = steps[2].return_value
    assert said(steps) == [
        [Text("Where to?")],
        [f"{forecast}; you rolled {die}", Text("Shall I book it?")],
        [f"Booked: Oslo, {forecast}, {die}"],
    ]
    assert forecast.endswith("in Oslo") and 1 <= die <= 6
    assert calls == ["fetch_forecast Oslo", "roll_die"]  # the last turn replayed them from the record


# --- subdialogs of every style, nested freely ------------------------------------------------------

@dialog()
def gen_colour():
    yield send_message("Favourite colour?")
    return (yield get_client_response())


@dialog()
def plain_pet() -> str:
    run(send_message("Your pet's name?"))
    pet = run(get_client_response())
    colour = run(gen_colour())  # a generator dialog run() from a plain function
    return f"{colour} {pet}"


@dialog()
async def async_gen_profile():
    yield send_message("Let's build your profile.")
    pet = yield plain_pet()
    await asyncio.sleep(0.001)
    forecast = yield fetch_forecast("Rome")
    yield dialog_result({"pet": pet, "forecast": forecast})


@dialog()
def gen_nested_top():
    profile = yield async_gen_profile()
    die = yield roll_die()
    yield send_message(f"{profile['pet']}, rolled {die}")
    return {**profile, "die": die}


async def test_subdialogs_of_all_styles_nest_freely(persistence: PersistenceProvider) -> None:
    steps = await achat(gen_nested_top, persistence, ["hi", "Rex", "blue"])
    result = steps[-1].return_value
    assert said(steps) == [
        ["Let's build your profile.", "Your pet's name?"],
        ["Favourite colour?"],
        [f"blue Rex, rolled {result['die']}"],
    ]
    assert result["pet"] == "blue Rex" and result["forecast"].endswith("in Rome")
    assert calls == ["fetch_forecast Rome", "roll_die"]


# --- states and persistence ------------------------------------------------------------------------

def test_a_new_state_names_its_dialog_and_has_no_result_yet() -> None:
    state = new_empty_state(gen_greeting())
    assert (state.name, state.version, state.is_done, state.handling_fallback) == ("gen_greeting", "1.0", False, False)
    with pytest.raises(DialogStateException, match="not done"):
        state.return_value
    assert DialogState("2.0", "custom").version == "2.0"


def test_states_round_trip_through_json_text_at_every_turn() -> None:
    persistence = InMemoryPersistence()
    for text in ["hi", "Ada", "36"]:
        run_gen_dialog(gen_greeting(), persistence, text)
        state = persistence.state
        assert state is not None
        copy = state_from_dict(json.loads(json.dumps(state.to_dict())))
        assert copy.to_dict() == state.to_dict()
        assert (copy.name, copy.version, copy.is_done) == (state.name, state.version, state.is_done)
    assert persistence.state is not None and persistence.state.result == Result({"name": "Ada", "age": 36})
    assert state_from_dict(json.loads(json.dumps(persistence.state.to_dict()))).return_value == {"name": "Ada", "age": 36}


def test_a_state_restored_from_json_continues_the_conversation() -> None:
    first = InMemoryPersistence()
    chat(gen_greeting, first, ["hi", "Ada"])
    assert first.state is not None
    second = InMemoryPersistence(state_from_dict(json.loads(json.dumps(first.state.to_dict()))))
    step = run_gen_dialog(gen_greeting(), second, "41")
    assert step.messages == ["Ada, 41: noted."] and step.return_value == {"name": "Ada", "age": 41}


def test_a_persistence_provider_is_asked_for_the_dialog_and_given_every_new_state() -> None:
    persistence = JsonPersistence()
    chat(gen_greeting, persistence, ["hi", "Ada"])
    assert persistence.asked_for == ["gen_greeting", "gen_greeting"]
    assert stored(persistence)["frame"]["pending"]["name"] == "gen_age"


# --- versions and fallback dialogs -----------------------------------------------------------------

def versioned_flow(top: str = "1.0", child: str = "1.0", grandchild: str = "1.0") -> Callable[[], BaseDialog[Any]]:
    """The same three-level flow, with the versions a release gives its dialogs."""

    @dialog(version=grandchild, name="grandchild")
    def grandchild_dialog():
        yield send_message("Colour?")
        return (yield get_client_response())

    @dialog(version=child, name="child")
    def child_dialog():
        yield send_message("Pet?")
        pet = yield get_client_response()
        colour = yield grandchild_dialog()
        yield send_message(f"A {colour} {pet}.")
        return f"{colour} {pet}"

    @dialog(version=top, name="top")
    def top_dialog():
        yield send_message("Name?")
        name = yield get_client_response()
        thing = yield child_dialog()
        yield send_message(f"{name} has a {thing}.")
        again = yield ask("Anything else?")
        return [name, thing, again]

    return top_dialog


@dialog()
def apology():
    yield send_message("We updated the bot, so let's start over.")


@dialog()
def survey():
    yield send_message("We updated the bot. Rate the old one from 1 to 5?")
    rating = yield get_client_response()
    yield send_message(f"Thanks for the {rating}!")
    return rating


WAITING_IN_GRANDCHILD = ["hi", "Ada", "cat"]
WAITING_AT_THE_END = ["hi", "Ada", "cat", "red"]


@pytest.mark.parametrize(
    ("bumped", "inputs"),
    [
        pytest.param({"top": "2.0"}, WAITING_IN_GRANDCHILD, id="top"),
        pytest.param({"child": "2.0"}, WAITING_IN_GRANDCHILD, id="child-running"),
        pytest.param({"grandchild": "2.0"}, WAITING_IN_GRANDCHILD, id="grandchild-running"),
        pytest.param({"child": "2.0"}, WAITING_AT_THE_END, id="child-completed"),
    ],
)
@pytest.mark.parametrize("with_fallback", [True, False])
def test_a_version_mismatch_at_any_level_restarts_after_the_fallback(
    bumped: dict[str, str], inputs: list[str], with_fallback: bool, persistence: PersistenceProvider
) -> None:
    old = versioned_flow()
    chat(old, persistence, inputs)

    new = versioned_flow(**bumped)
    fallback = apology if with_fallback else None
    restarted = run_gen_dialog(new(), persistence, "an answer the old flow waited for", fallback() if fallback else None)
    expected = ["We updated the bot, so let's start over."] if with_fallback else []
    assert restarted.messages == [*expected, "Name?"] and not restarted.is_done
    # the session is a fresh run of the new code: the old answers are gone
    assert said(chat(new, persistence, ["Bob", "dog", "green"], fallback)) == [
        ["Pet?"], ["Colour?"], ["A green dog.", "Bob has a green dog.", Text("Anything else?")],
    ]


def test_a_bumped_version_inside_a_completed_subdialog_changes_nothing(persistence: PersistenceProvider) -> None:
    # As in the seed: a completed subdialog is not run again, so its insides no longer matter.
    chat(versioned_flow(), persistence, WAITING_AT_THE_END)
    step = run_gen_dialog(versioned_flow(grandchild="2.0")(), persistence, "no", apology())
    assert step.is_done and step.messages == [] and step.return_value == ["Ada", "red cat", "no"]


def test_a_bumped_version_of_a_subdialog_not_yet_reached_changes_nothing(persistence: PersistenceProvider) -> None:
    chat(versioned_flow(), persistence, ["hi"])
    steps = chat(versioned_flow(child="2.0"), persistence, ["Ada", "cat"], apology)
    assert said(steps) == [["Pet?"], ["Colour?"]]


def test_a_fallback_that_waits_for_input_completes_before_the_restarted_dialog(persistence: PersistenceProvider) -> None:
    chat(versioned_flow(), persistence, WAITING_IN_GRANDCHILD)
    new = versioned_flow(grandchild="2.0")

    asked = run_gen_dialog(new(), persistence, "red", fallback_dialog=survey())
    assert asked.messages == ["We updated the bot. Rate the old one from 1 to 5?"] and not asked.is_done
    assert state_from_dict(stored(persistence)).handling_fallback

    # the fallback's last messages precede the restarted dialog's first ones
    answered = run_gen_dialog(new(), persistence, "4", fallback_dialog=survey())
    assert answered.messages == ["Thanks for the 4!", "Name?"]
    assert not state_from_dict(stored(persistence)).handling_fallback
    assert said(chat(new, persistence, ["Bob", "dog"], survey)) == [["Pet?"], ["Colour?"]]


async def test_the_fallback_also_runs_for_async_dialogs(persistence: PersistenceProvider) -> None:
    await achat(async_gen_greeting, persistence, ["hi", "Ada"])

    @dialog(version="2.0", name="async_gen_greeting")
    async def greeting_v2():
        yield send_message("Hello! Name?")
        name = yield get_client_response()
        yield dialog_result(name)

    first = await run_async_gen_dialog(greeting_v2(), persistence, "36", fallback_dialog=survey())
    steps = [first, *await achat(greeting_v2, persistence, ["5", "Bob"], survey)]
    assert said(steps) == [
        ["We updated the bot. Rate the old one from 1 to 5?"],
        ["Thanks for the 5!", "Hello! Name?"],
        [],
    ]
    assert steps[-1].return_value == "Bob"


def test_a_plain_function_flow_restarts_on_a_version_mismatch_deep_inside(persistence: PersistenceProvider) -> None:
    def flow(inner: str) -> Callable[[], BaseDialog[Any]]:
        @dialog(version=inner, name="inner")
        def inner_dialog() -> str:
            run(send_message("Inner question?"))
            return str(run(get_client_response()))

        @dialog(name="middle")
        def middle_dialog() -> str:
            run(send_message("Middle question?"))
            first = run(get_client_response())
            return f"{first}+{run(inner_dialog())}"

        @dialog(name="outer")
        def outer_dialog() -> str:
            run(send_message("Outer question?"))
            run(get_client_response())
            return str(run(middle_dialog()))

        return outer_dialog

    assert said(chat(flow("1.0"), persistence, ["hi", "a", "b"])) == [
        ["Outer question?"], ["Middle question?"], ["Inner question?"],
    ]
    restarted = chat(flow("1.1"), persistence, ["c"], apology)
    assert said(restarted) == [["We updated the bot, so let's start over.", "Outer question?"]]


# --- many conversations at once --------------------------------------------------------------------

@dialog()
def plain_introduction(user: str) -> str:
    run(send_message(f"[{user}] who are you?"))
    name = run(get_client_response())
    run(send_message(f"[{user}] hello {name}"))
    return str(name)


@dialog()
def gen_counting(user: str):
    name = yield plain_introduction(user)
    total = 0
    for _ in range(20):
        number = yield ask(f"[{user}] a number?", parse=int)
        total += number
        yield send_message(f"[{user}] {name} total {total}")
    return total


def test_dialogs_in_many_threads_keep_their_messages_apart() -> None:
    users = [f"user{n}" for n in range(8)]
    outcomes: dict[str, list[Any]] = {}
    start = threading.Barrier(len(users))

    def converse(user: str) -> None:
        persistence: PersistenceProvider = JsonPersistence() if user.endswith(("1", "3", "5")) else InMemoryPersistence()
        start.wait()
        steps = [run_dialog(gen_counting(user), persistence, f"{user}-hi")]
        steps.append(run_dialog(gen_counting(user), persistence, user.upper()))
        steps += [run_dialog(gen_counting(user), persistence, str(n)) for n in range(20)]
        outcomes[user] = steps

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, mid-turn
    try:
        threads = [threading.Thread(target=converse, args=(user,)) for user in users]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        sys.setswitchinterval(switch)

    assert sorted(outcomes) == users
    for user, steps in outcomes.items():
        texts = [m if isinstance(m, str) else m.text for step in steps for m in step.messages]
        assert all(text.startswith(f"[{user}] ") for text in texts), texts
        assert f"[{user}] hello {user.upper()}" in texts
        assert texts[-1] == f"[{user}] {user.upper()} total 190"
        assert steps[-1].is_done and steps[-1].return_value == 190


@dialog()
async def async_counting(user: str):
    name = yield plain_introduction(user)
    total = 0
    for _ in range(10):
        await asyncio.sleep(random.random() / 1000)
        number = yield ask(f"[{user}] a number?", parse=int)
        await asyncio.sleep(random.random() / 1000)
        total += number
        yield send_message(f"[{user}] {name} total {total}")
    yield dialog_result(total)


async def test_dialogs_in_many_asyncio_tasks_keep_their_messages_apart() -> None:
    async def converse(user: str) -> list[Any]:
        persistence: PersistenceProvider = JsonPersistence() if len(user) % 2 else InMemoryPersistence()
        inputs = [f"{user}-hi", user.upper(), *[str(n) for n in range(10)]]
        return await achat(lambda: async_counting(user), persistence, inputs)

    users = [f"user{n}" for n in range(30)]
    results = await asyncio.gather(*(converse(user) for user in users))
    for user, steps in zip(users, results):
        texts = [m if isinstance(m, str) else m.text for step in steps for m in step.messages]
        assert all(text.startswith(f"[{user}] ") for text in texts), texts
        assert texts[-1] == f"[{user}] {user.upper()} total 45"
        assert steps[-1].return_value == 45


# --- ask: buttons, typed answers and validation ----------------------------------------------------

SIZES = (Option("Small", "S"), Option("Large", "L"))


@dialog()
def order():
    size = yield ask("Size?", choices=list(SIZES), retry="Pick a size.")
    count = yield ask("How many?", parse=int, retry="A number, please.")
    extra = yield ask("Extras?", choices=["cheese", "olives"])
    return [size, count, extra]


@pytest.mark.parametrize(
    ("answer", "chosen"),
    [("L", "L"), ("large", "L"), (" LARGE ", "L"), ("s", "S"), ("1", "S"), ("2", "L")],
    ids=["button-value", "typed-label", "label-any-case", "typed-value", "number-1", "number-2"],
)
def test_ask_accepts_a_button_value_a_label_a_value_or_a_number(answer: str, chosen: str, persistence: PersistenceProvider) -> None:
    steps = chat(order, persistence, ["hi", answer, "3", "2"])
    assert steps[0].messages == [Text("Size?", SIZES)]
    assert steps[1].messages == [Text("How many?")]
    assert steps[2].messages == [Text("Extras?", (Option("cheese"), Option("olives")))]
    assert steps[3].return_value == [chosen, 3, "olives"]


def test_ask_asks_again_until_the_answer_is_valid(persistence: PersistenceProvider) -> None:
    steps = chat(order, persistence, ["hi", "medium", "3", "L", "three", "-", "4", "cheese"])
    assert said(steps) == [
        [Text("Size?", SIZES)],
        [Text("Pick a size.", SIZES)],  # options are offered again with the retry text
        [Text("Pick a size.", SIZES)],  # 3 is not a listed number
        [Text("How many?")],
        [Text("A number, please.")],
        [Text("A number, please.")],
        [Text("Extras?", (Option("cheese"), Option("olives")))],
        [],
    ]
    assert steps[-1].return_value == ["L", 4, "cheese"]


def test_ask_parses_the_chosen_value_and_retries_with_the_default_text(persistence: PersistenceProvider) -> None:
    def adult(value: Any) -> int:
        age = int(value)
        if age < 18:
            raise ValueError("too young")
        return age

    @dialog()
    def age_check():
        return (yield ask("Age?", choices=[Option("Under 18", 17), Option("18 to 65", 40)], parse=adult))

    steps = chat(age_check, persistence, ["hi", "Under 18", "18 to 65"])
    assert steps[1].messages == [Text("Sorry, I didn't get that. Please try again.", (Option("Under 18", 17), Option("18 to 65", 40)))]
    assert steps[2].return_value == 40


def test_a_parse_error_other_than_value_error_reaches_the_caller(persistence: PersistenceProvider) -> None:
    @dialog()
    def strict():
        return (yield ask("Anything?", parse=lambda text: text["key"]))

    chat(strict, persistence, ["hi"])
    with pytest.raises(TypeError):
        chat(strict, persistence, ["oops"])
