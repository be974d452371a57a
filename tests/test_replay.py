"""The replay record: what a session stores, how it stays small, how code changes are caught,
which values can be stored and how recorded errors replay."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
from typing import Any, Callable

import pytest

from convoflow import (
    BaseDialog,
    InMemoryPersistence,
    Option,
    PersistenceProvider,
    ReplayMismatch,
    StepFailed,
    Text,
    UnstorableValue,
    ask,
    dialog,
    get_client_response,
    goto,
    run,
    run_async_gen_dialog,
    run_gen_dialog,
    send_message,
    state_from_dict,
)
from convoflow.player import Play
from convoflow.replay import DialogState
from tests.support.dialog_helpers import JsonPersistence, achat, chat, said, stored


def size(persistence: PersistenceProvider) -> int:
    return len(json.dumps(stored(persistence)))


# --- a completed subdialog keeps only its result ---------------------------------------------------

@dialog()
def address_form():
    street = yield ask("Street?")
    city = yield ask("City?")
    yield send_message("Thanks!")
    return {"street": street, "city": city}


@dialog()
def shipping():
    address = yield address_form()
    yield send_message(f"Shipping to {address['city']}")
    yield ask("Gift wrap?", choices=["yes", "no"])


def test_a_completed_subdialog_keeps_only_its_result(persistence: PersistenceProvider) -> None:
    chat(shipping, persistence, ["hi", "Main St 1"])
    assert "Main St 1" in json.dumps(stored(persistence))  # recorded while the form runs

    chat(shipping, persistence, ["Springfield"])
    frame = stored(persistence)["frame"]
    assert frame["log"] == [["address_form", {"street": "Main St 1", "city": "Springfield"}]]
    assert frame["pending"]["name"] == "ask"
    text = json.dumps(stored(persistence))
    assert text.count("Main St 1") == 1 and "City?" not in text and "street" in text


# --- repeated entries, and values equal in Python but not in JSON ---------------------------------

@dialog()
def one_round(number: int):
    answer = yield ask(f"Round {number}: your move?")
    yield send_message(f"You played {answer}.")
    return None  # the same result every round


@dialog()
def endless_game():
    number = 0
    while True:
        number += 1
        yield one_round(number)


def test_a_loop_whose_subdialog_returns_the_same_value_stores_it_once_with_a_count(persistence: PersistenceProvider) -> None:
    chat(endless_game, persistence, ["start", *[f"move {n}" for n in range(50)]])
    small = size(persistence)
    steps = chat(endless_game, persistence, [f"move {n}" for n in range(50, 250)])
    assert steps[-1].messages == ["You played move 249.", Text("Round 251: your move?")]
    assert size(persistence) <= small + 1  # 250 rounds take the room of 50 (one more digit)
    log = stored(persistence)["frame"]["log"]
    # the rounds' fingerprints differ (each is given its number): folded into one, a few bytes
    assert log == [["one_round", None, {"n": 250, "fc": log[0][2]["fc"]}]] and len(log[0][2]["fc"]) == 6


@dialog()
def answers_loop():
    answers = []
    while True:
        answers.append((yield get_client_response()))
        yield send_message(" ".join(answers))


def test_consecutive_answers_are_stored_as_one_run(persistence: PersistenceProvider) -> None:
    inputs = ["a", "b", "b", "c", "c", "c", "c", "c", "c", "d", "e", "e"]
    steps = chat(answers_loop, persistence, ["start", *inputs])
    assert steps[-1].messages == [" ".join(inputs)]
    assert stored(persistence)["frame"]["log"] == [
        ["<input>", ["a", "b", "b"], {"each": True}],
        ["<input>", "c", {"n": 6}],
        ["<input>", ["d", "e", "e"], {"each": True}],
    ]


@dialog()
def echo(value: Any) -> Any:
    return value


@dialog()
def typed_values():
    got = []
    for value in [1, True, 1.0, 0, False, 0.0, -0.0, [1], [True], {"a": 1}, {"a": True}, None, "1"]:
        got.append((yield echo(value)))
    yield get_client_response()
    return got


def test_values_equal_in_python_but_distinct_in_json_replay_exactly(persistence: PersistenceProvider) -> None:
    steps = chat(typed_values, persistence, ["start", "done"])
    got = steps[-1].return_value
    assert json.dumps(got) == json.dumps([1, True, 1.0, 0, False, 0.0, -0.0, [1], [True], {"a": 1}, {"a": True}, None, "1"])
    assert [type(v) for v in got[:7]] == [int, bool, float, int, bool, float, float]


# --- values a flow changes after a step returned them ------------------------------------------------

@dialog()
def load_cart() -> dict[str, Any]:
    return {"items": ["tea"]}


@dialog()
def shopping():
    cart = yield load_cart()
    while True:
        item = yield get_client_response()
        cart["items"].append(item)  # the flow changes the value the step returned
        yield send_message(", ".join(cart["items"]))


def test_a_flow_changing_a_recorded_value_does_not_change_the_record(persistence: PersistenceProvider) -> None:
    steps = chat(shopping, persistence, ["start", "milk", "bread", "jam"])
    assert said(steps) == [[], ["tea, milk"], ["tea, milk, bread"], ["tea, milk, bread, jam"]]
    assert stored(persistence)["frame"]["log"][0] == ["load_cart", {"items": ["tea"]}]


@dialog()
def collect(items: list[str]):
    item = yield get_client_response()
    items.append(item)  # the goto target changes its own argument
    yield send_message(f"{len(items)}: {', '.join(items)}")
    yield goto(collect(items))


def test_a_goto_target_changing_its_arguments_does_not_change_the_record(persistence: PersistenceProvider) -> None:
    @dialog()
    def start():
        yield goto(collect(["tea"]))

    steps = chat(start, persistence, ["hi", "milk", "jam"])
    assert said(steps) == [[], ["2: tea, milk"], ["3: tea, milk, jam"]]


# --- goto: the running top dialog is replaced, the state stays bounded ------------------------------

@dialog()
def menu(visits: int = 0):
    choice = yield ask("Menu?", choices=[Option("Again", "again"), Option("Quit", "quit")])
    if choice == "quit":
        yield send_message(f"Bye after {visits + 1} visits")
        return visits + 1
    yield send_message(f"Visit {visits + 1}")
    yield goto(menu(visits + 1))


def test_goto_replaces_the_running_dialog_and_keeps_the_state_bounded(persistence: PersistenceProvider) -> None:
    chat(menu, persistence, ["hi", "again"])
    small = size(persistence)
    steps = chat(menu, persistence, ["again"] * 500)
    assert steps[-1].messages == ["Visit 501", Text("Menu?", (Option("Again", "again"), Option("Quit", "quit")))]
    assert size(persistence) <= small + 3  # only the digits of the visit count grow
    state = stored(persistence)
    assert state["call"] == {"dialog": f"{__name__}:menu", "args": [501], "kwargs": {}}
    assert state["frame"]["log"] == []
    done = run_gen_dialog(menu(), persistence, "quit")
    assert done.is_done and done.return_value == 502 and done.messages == ["Bye after 502 visits"]


@dialog()
def checkout(total: int):
    yield send_message(f"Checkout: {total}")
    return (yield ask("Pay now?"))


@dialog()
def basket():
    total = 0
    while True:
        price = yield ask("Price?", parse=int)
        total += price
        if total > 10:
            yield goto(checkout(total))  # from inside a loop of the top dialog
        yield send_message(f"Total {total}")


@dialog()
def shop():
    yield send_message("Welcome")
    yield basket()  # a subdialog's goto replaces the whole top dialog
    yield send_message("never reached")


def test_goto_from_a_subdialog_replaces_the_top_dialog(persistence: PersistenceProvider) -> None:
    steps = chat(shop, persistence, ["hi", "4", "9", "yes"])
    assert said(steps) == [
        ["Welcome", Text("Price?")],
        ["Total 4", Text("Price?")],
        ["Checkout: 13", Text("Pay now?")],
        [],
    ]
    assert steps[-1].return_value == "yes"


def test_a_goto_target_must_have_storable_arguments(persistence: PersistenceProvider) -> None:
    @dialog()
    def leave():
        yield goto(checkout(lambda: 1))  # type: ignore[arg-type]

    with pytest.raises(UnstorableValue, match=r"dialog leave: step 'goto' produced a value of type function"):
        chat(leave, persistence, ["hi"])


def test_a_session_whose_goto_target_left_the_code_restarts(caplog: pytest.LogCaptureFixture) -> None:
    persistence = JsonPersistence()
    chat(menu, persistence, ["hi", "again"])
    assert persistence.text is not None
    persistence.text = persistence.text.replace(f"{__name__}:menu", f"{__name__}:removed_menu")
    with caplog.at_level(logging.WARNING, "convoflow"):
        step = run_gen_dialog(menu(), persistence, "again")
    assert step.messages == [Text("Menu?", (Option("Again", "again"), Option("Quit", "quit")))]
    assert "removed_menu" in caplog.text


def test_a_fallback_may_goto_a_dialog_which_then_replaces_the_restarted_one(persistence: PersistenceProvider) -> None:
    @dialog(name="welcome_back")
    def welcome_back():
        wants_menu = yield ask("We updated the bot. Straight to the menu?", choices=["yes", "no"])
        if wants_menu == "yes":
            yield goto(menu(10))

    chat(released("original"), persistence, ["hi", "Ada"])
    changed = released("swapped")
    steps = chat(changed, persistence, ["red", "yes", "again", "again"], welcome_back)
    assert [m.text if isinstance(m, Text) else m for step in steps for m in step.messages] == [
        "We updated the bot. Straight to the menu?", "Menu?", "Visit 11", "Menu?", "Visit 12", "Menu?",
    ]
    assert not state_from_dict(stored(persistence)).handling_fallback


# --- code that no longer matches its record --------------------------------------------------------

def released(variant: str) -> Callable[[], BaseDialog[Any]]:
    """One flow as successive releases changed it, all without a version bump."""

    @dialog(name="pick_colour")
    def pick_colour():
        return (yield ask("Colour?"))

    @dialog(name="pick_size")
    def pick_size():
        return (yield ask("Size?"))

    @dialog(name="order")
    def order():
        yield send_message("Hello!")
        name = yield ask("Name?")
        if variant == "ends-early":
            return name
        if variant == "goto-instead":
            yield goto(pick_size())
        first = yield (pick_size() if variant == "swapped" else pick_colour())
        if variant == "input-instead":
            second = yield get_client_response()
        else:
            second = yield (pick_colour() if variant == "swapped" else pick_size())
        yield send_message(f"{name}: {first} {second}")
        return [name, first, second]

    return order


@pytest.mark.parametrize(
    ("variant", "inputs"),
    [
        pytest.param("swapped", ["hi", "Ada", "red"], id="other-subdialog-where-one-completed"),
        pytest.param("swapped", ["hi", "Ada"], id="other-subdialog-where-one-runs"),
        pytest.param("input-instead", ["hi", "Ada", "red"], id="input-where-a-subdialog-runs"),
        pytest.param("ends-early", ["hi", "Ada"], id="ends-where-the-record-goes-on"),
        pytest.param("goto-instead", ["hi", "Ada"], id="goto-where-the-record-goes-on"),
    ],
)
def test_code_changed_without_a_version_bump_restarts_with_a_warning(
    variant: str, inputs: list[str], persistence: PersistenceProvider, caplog: pytest.LogCaptureFixture
) -> None:
    chat(released("original"), persistence, inputs)
    changed = released(variant)
    with caplog.at_level(logging.WARNING, "convoflow"):
        step = run_gen_dialog(changed(), persistence, "an answer for the old code", apology())
    assert step.messages == ["We changed things; starting over.", "Hello!", Text("Name?")]
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "code mismatch in order" in caplog.text
    # the session is now a run of the new code, which takes the next answer as the name
    assert Text("Name?") not in chat(changed, persistence, ["Bob"])[0].messages


def test_the_original_code_replays_its_own_record_without_a_warning(persistence: PersistenceProvider, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "convoflow"):
        steps = chat(released("original"), persistence, ["hi", "Ada", "red", "L"])
    assert steps[-1].return_value == ["Ada", "red", "L"] and caplog.records == []


@dialog()
def apology():
    yield send_message("We changed things; starting over.")


def test_the_mismatch_says_where_and_why() -> None:
    state = DialogState("1.0", "order")
    first = Play(released("original")(), state)
    for text in ["hi", "Ada", "red"]:
        first.begin(text)
        assert not first.step_sync()
    revived = state_from_dict(json.loads(json.dumps(state.to_dict())))
    play = Play(released("swapped")(), revived)
    play.begin("M")
    assert not play.step_sync()
    mismatch = play.mismatch
    assert isinstance(mismatch, ReplayMismatch)
    assert (mismatch.reason, mismatch.path, mismatch.position) == ("code", ("order",), 1)
    assert "pick_colour" in mismatch.recorded and "pick_size" in mismatch.found


def test_a_log_stored_one_entry_per_step_still_resumes() -> None:
    # the layout before runs were grouped: every step its own entry, identical neighbours counted
    persistence = JsonPersistence()
    persistence.text = json.dumps({"frame": {
        "name": "answers_loop", "version": "1.0", "pending": "<input>",
        "log": [["<input>", "a"], ["<input>", "b", {"n": 2}]],
    }})
    step = run_gen_dialog(answers_loop(), persistence, "c")
    assert step.messages == ["a b b c"]
    assert stored(persistence)["frame"]["log"][-1] == ["<input>", "c"]


# --- values that cannot be stored fail at the step that produced them ---------------------------------

@dialog()
def open_socket() -> Any:
    return socket.socket()


@dialog()
def make_callback() -> Any:
    return lambda: "hi"


class Opaque:
    """A plain class: no codec knows how to store it."""


@dialog()
def opaque() -> Any:
    return Opaque()


@dialog()
async def nested_opaque() -> Any:
    return {"ok": [1, {"tags": (Opaque(),)}]}


@dialog()
def local_dataclass() -> Any:
    @dataclasses.dataclass
    class Point:
        x: int

    return Point(1)


@dialog()
def sub_returning_an_object():
    answer = yield get_client_response()
    return Opaque() if answer else None


@pytest.mark.parametrize(
    ("producer", "step", "detail"),
    [
        (open_socket, "open_socket", "socket"),
        (make_callback, "make_callback", "function"),
        (opaque, "opaque", "Opaque"),
        (nested_opaque, "nested_opaque", "Opaque"),
        (local_dataclass, "local_dataclass", "cannot be imported again"),
    ],
)
async def test_an_unstorable_value_fails_at_its_step_naming_dialog_and_step(
    producer: Callable[[], BaseDialog[Any]], step: str, detail: str, persistence: PersistenceProvider
) -> None:
    @dialog(name="wizard")
    def wizard():
        yield ask("Ready?")
        yield producer()
        yield send_message("not reached")

    await achat(wizard, persistence, ["hi"])
    before = stored(persistence)
    with pytest.raises(UnstorableValue, match=rf"dialog wizard: step {step!r} produced .*{detail}") as failure:
        await achat(wizard, persistence, ["go"])
    assert failure.value.path == ("wizard",) and failure.value.step == step
    if isinstance(persistence, JsonPersistence):
        assert stored(persistence) == before  # nothing unstorable was saved


def test_an_unstorable_subdialog_result_names_the_subdialog(persistence: PersistenceProvider) -> None:
    @dialog(name="outer")
    def outer():
        yield sub_returning_an_object()

    chat(outer, persistence, ["hi"])
    with pytest.raises(UnstorableValue, match=r"dialog outer: step 'sub_returning_an_object' produced .*Opaque"):
        chat(outer, persistence, ["x"])


def test_an_unstorable_client_response_is_refused(persistence: PersistenceProvider) -> None:
    chat(shopping, persistence, ["start"])
    with pytest.raises(UnstorableValue, match=r"dialog shopping: step 'get_client_response' produced .*object"):
        chat(shopping, persistence, [object()])


def test_an_unstorable_final_result_is_refused_when_the_dialog_returns_it(persistence: PersistenceProvider) -> None:
    @dialog(name="summary")
    def summary():
        name = yield ask("Name?")
        return (name, Opaque())

    chat(summary, persistence, ["hi"])
    with pytest.raises(UnstorableValue, match=r"dialog summary: step 'return' produced .*Opaque"):
        chat(summary, persistence, ["Ada"])


# --- errors raised by steps are recorded and raised again on replay ---------------------------------

charges: list[int] = []


class PaymentDeclined(Exception):
    pass


@dialog()
def charge(amount: int) -> str:
    charges.append(amount)
    if amount > 100:
        raise PaymentDeclined(f"{amount} is over the limit", amount)
    return f"receipt-{amount}"


@dialog()
async def charge_async(amount: int) -> str:
    await asyncio.sleep(0.001)
    return str(run(charge(amount)))


@dialog()
def payment():
    while True:
        amount = yield ask("Amount?", parse=int)
        try:
            receipt = yield charge_async(amount)
        except PaymentDeclined as declined:
            yield send_message(f"Declined: {declined.args[0]} ({type(declined).__name__}, {declined.args[1]})")
            continue
        yield send_message(f"Paid: {receipt}")
        return (yield ask("Anything else?"))


@pytest.fixture(autouse=True)
def no_charges() -> None:
    charges.clear()


async def test_a_recorded_error_replays_as_the_same_error_at_the_same_place(persistence: PersistenceProvider) -> None:
    steps = await achat(payment, persistence, ["hi", "500", "20", "no"])
    assert said(steps) == [
        [Text("Amount?")],
        ["Declined: 500 is over the limit (PaymentDeclined, 500)", Text("Amount?")],
        ["Paid: receipt-20", Text("Anything else?")],
        [],
    ]
    assert steps[-1].return_value == "no"
    assert charges == [500, 20]  # each charge ran once; later turns replayed the decline
    log = stored(persistence)["frame"]["log"]
    assert log[1][0] == "charge_async" and log[1][2]["error"]["type"] == f"{__name__}.PaymentDeclined"


async def test_an_error_type_that_cannot_be_rebuilt_replays_as_step_failed() -> None:
    class LocalError(Exception):
        pass

    seen: list[str] = []

    @dialog()
    def flaky() -> None:
        raise LocalError("gone")

    @dialog()
    def careful():
        try:
            yield flaky()
        except Exception as error:  # noqa: BLE001 - the flow reports whatever it got
            seen.append(f"{type(error).__name__}: {error}")
        yield ask("Next?")
        yield ask("And?")

    persistence = JsonPersistence()
    chat(careful, persistence, ["hi", "a"])
    assert seen[0] == "LocalError: gone"
    assert seen[1].startswith("StepFailed: ") and "LocalError: gone" in seen[1]
    assert isinstance(StepFailed("x.Y", ["z"]), Exception)


def test_an_error_a_flow_does_not_catch_reaches_the_caller_and_stays_recorded() -> None:
    @dialog()
    def boom() -> None:
        raise RuntimeError("disk full")

    @dialog()
    def fragile():
        yield ask("Go?")
        yield boom()

    persistence = InMemoryPersistence()
    chat(fragile, persistence, ["hi"])
    with pytest.raises(RuntimeError, match="disk full"):
        chat(fragile, persistence, ["go"])


async def test_a_dialog_that_yields_something_else_than_a_step_gets_a_clear_error() -> None:
    @dialog(name="sloppy")
    def sloppy():
        yield "hello"

    with pytest.raises(TypeError, match=r"dialog sloppy yielded 'hello', which is not a step"):
        await run_async_gen_dialog(sloppy(), InMemoryPersistence(), "hi")


async def test_an_async_function_step_cannot_wait_for_input() -> None:
    @dialog(name="impatient")
    async def impatient() -> Any:
        return run(get_client_response())

    @dialog()
    def caller():
        yield impatient()

    with pytest.raises(TypeError, match="async def dialog 'impatient' cannot wait for input"):
        await run_async_gen_dialog(caller(), InMemoryPersistence(), "hi")
