"""The seed library's example programs and API, written in the seed's own style, run on convoflow.

The dragons chat (a name, a topic, a multiple choice and a yes/no question, asked through small
helper dialogs) in both the `run()` style and the generator style, and the guessbot whose
generator dialog awaits `asyncio.sleep` in a step. Each plays a scripted conversation through the
seed's runners, and its whole transcript is compared, turn by turn, on each kind of persistence
the seed's users have: its `InMemoryPersistence[str]`, and their own `PersistenceProvider[str]`
keeping only JSON text (so every turn replays the record, as a server behind a database does).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from pathlib import Path
from typing import Any, Callable, List, Tuple

import pytest

import convoflow
from convoflow import (
    BaseDialog,
    DialogState,
    InMemoryPersistence,
    PersistenceProvider,
    dialog,
    get_client_response,
    new_empty_state,
    run,
    run_async_gen_dialog,
    run_dialog,
    run_gen_dialog,
    send_message,
    state_from_dict,
)

README = Path(__file__).resolve().parents[1] / "README.md"


class TextPersistence(PersistenceProvider[str]):
    """A seed user's own provider, subclassing the generic protocol as the seed's users did."""

    def __init__(self) -> None:
        self.text: str | None = None

    def get_state(self, dialog: BaseDialog[Any]) -> DialogState:
        return new_empty_state(dialog) if self.text is None else state_from_dict(json.loads(self.text))

    def save_state(self, state: DialogState) -> None:
        self.text = json.dumps(state.to_dict())


PERSISTENCES: dict[str, Callable[[], PersistenceProvider[str]]] = {
    "in_memory": lambda: InMemoryPersistence[str](),
    "own_provider": TextPersistence,
}


@pytest.fixture(params=sorted(PERSISTENCES))
def persistence(request: pytest.FixtureRequest) -> PersistenceProvider[str]:
    return PERSISTENCES[request.param]()


# --- dragons, generator style ------------------------------------------------------------------------

@dialog(version="1.0")
def prompt(text: str):
    yield send_message(text)
    response = yield get_client_response()
    return str(response)


@dialog(version="1.0")
def multichoice(question: str, wrong_answer_prompt: str, choices: List[str]):
    message = question
    while True:
        answer = yield prompt("\n".join([message] + [f"{i + 1}. {choice}" for i, choice in enumerate(choices)]))
        if answer in {str(i + 1) for i in range(len(choices))}:
            return int(answer) - 1
        message = wrong_answer_prompt


@dialog(version="1.0")
def yes_no(question: str, wrong_answer_prompt: str):
    message = question
    while True:
        answer = (yield prompt(message)).strip().lower()
        if answer in ("y", "yes", "n", "no"):
            return answer.startswith("y")
        message = wrong_answer_prompt


@dialog(version="1.0")
def name_and_topic():
    name = yield prompt("Hello, traveller. What is your name?")
    yield send_message(f"Welcome, {name}!")
    topic = yield prompt("What would you like to talk about?")
    return name, topic


@dialog(version="1.0")
def dragons_gen():
    name, topic = yield name_and_topic()
    yield send_message(f"{topic}? Let me tell you about dragons instead.")
    kind = yield multichoice("Which dragon do you fear most?", "Please pick a number.", ["Red", "Green", "Gold"])
    brave = yield yes_no(f"Would you face a {['red', 'green', 'gold'][kind]} dragon, {name}?", "Yes or no?")
    yield send_message("Brave soul!" if brave else "Wise choice.")
    return name, topic, kind, brave


# --- dragons, run() style ----------------------------------------------------------------------------

@dialog(version="1.0")
def run_prompt(text: str) -> str:
    run(send_message(text))
    return str(run(get_client_response()))


@dialog(version="1.0")
def run_multichoice(question: str, wrong_answer_prompt: str, choices: List[str]) -> int:
    message = question
    while True:
        answer = run(run_prompt("\n".join([message] + [f"{i + 1}. {choice}" for i, choice in enumerate(choices)])))
        if answer in {str(i + 1) for i in range(len(choices))}:
            return int(answer) - 1
        message = wrong_answer_prompt


@dialog(version="1.0")
def run_yes_no(question: str, wrong_answer_prompt: str) -> bool:
    message = question
    while True:
        answer = run(run_prompt(message)).strip().lower()
        if answer in ("y", "yes", "n", "no"):
            return answer.startswith("y")
        message = wrong_answer_prompt


@dialog(version="1.0")
def run_name_and_topic() -> Tuple[str, str]:
    name = run(run_prompt("Hello, traveller. What is your name?"))
    run(send_message(f"Welcome, {name}!"))
    topic = run(run_prompt("What would you like to talk about?"))
    return name, topic


@dialog(version="1.0")
def dragons_run() -> Tuple[str, str, int, bool]:
    name, topic = run(run_name_and_topic())
    run(send_message(f"{topic}? Let me tell you about dragons instead."))
    kind = run(run_multichoice("Which dragon do you fear most?", "Please pick a number.", ["Red", "Green", "Gold"]))
    brave = run(run_yes_no(f"Would you face a {['red', 'green', 'gold'][kind]} dragon, {name}?", "Yes or no?"))
    run(send_message("Brave soul!" if brave else "Wise choice."))
    return name, topic, kind, brave


DRAGONS_SCRIPT = ["hi", "Ada", "the weather", "4", "dragons?", "3", "maybe", "YES"]
DRAGONS_TRANSCRIPT = [
    ["Hello, traveller. What is your name?"],
    ["Welcome, Ada!", "What would you like to talk about?"],
    ["the weather? Let me tell you about dragons instead.", "Which dragon do you fear most?\n1. Red\n2. Green\n3. Gold"],
    ["Please pick a number.\n1. Red\n2. Green\n3. Gold"],
    ["Please pick a number.\n1. Red\n2. Green\n3. Gold"],
    ["Would you face a gold dragon, Ada?"],
    ["Yes or no?"],
    ["Brave soul!"],
]


def chat_example(runner: Callable[..., Any], make: Callable[[], BaseDialog[Any]],
                 persistence: PersistenceProvider[str], inputs: list[str]) -> tuple[list[list[str]], Any]:
    """The seed's chat loop: one runner call per message from the user, until the dialog is done."""
    transcript: list[list[str]] = []
    for text in inputs:
        step = runner(make(), persistence, text)
        transcript.append(step.messages)
        if step.is_done:
            return transcript, step.return_value
    raise AssertionError(f"the dialog did not finish: {transcript}")


@pytest.mark.parametrize(("runner", "make"), [(run_gen_dialog, dragons_gen), (run_dialog, dragons_run)], ids=["generators", "run"])
def test_the_dragons_chat_plays_its_whole_transcript(
    runner: Callable[..., Any], make: Callable[[], BaseDialog[Any]], persistence: PersistenceProvider[str]
) -> None:
    transcript, result = chat_example(runner, make, persistence, DRAGONS_SCRIPT)
    assert transcript == DRAGONS_TRANSCRIPT
    assert result == ("Ada", "the weather", 2, True) and type(result) is tuple


# --- guessbot, with asyncio.sleep in a step ------------------------------------------------------------

naps: list[float] = []


@dialog(version="1.1")
async def sleep_a_bit(how_much: float) -> None:
    naps.append(how_much)
    await asyncio.sleep(how_much)


@dialog()
def rand() -> int:
    return random.randrange(1, 11)


@dialog(version="1.1")
def game():
    yield send_message("Guess a number between 1 and 10.")
    correct_number = yield rand()
    while True:
        guess = yield get_client_response()
        if int(guess) == correct_number:
            yield sleep_a_bit(0.002)
            break
        yield sleep_a_bit(0.001)
        yield send_message("That's not it...")
    yield send_message(f"Awesome! The number is {correct_number}")
    yield send_message("Bye bye.")


async def test_the_guessbot_with_async_sleeps_plays_its_whole_transcript(persistence: PersistenceProvider[str]) -> None:
    naps.clear()
    random.seed(2021)
    secret = random.Random(2021).randrange(1, 11)
    transcript = []
    for text in ["hi", *map(str, range(1, 11))]:
        step = await run_async_gen_dialog(game(), persistence, text)
        transcript.append(step.messages)
        if step.is_done:
            break
    assert transcript == [
        ["Guess a number between 1 and 10."],
        *[["That's not it..."]] * (secret - 1),
        [f"Awesome! The number is {secret}", "Bye bye."],
    ]
    assert naps == [0.001] * (secret - 1) + [0.002]  # each sleep ran once; replays skip it


# --- the rest of the seed's API ---------------------------------------------------------------------

@pytest.mark.parametrize("runner", [run_dialog, run_gen_dialog], ids=["run_dialog", "run_gen_dialog"])
def test_a_primitive_step_can_be_the_whole_dialog(runner: Callable[..., Any], persistence: PersistenceProvider[str]) -> None:
    step = runner(send_message("hi"), persistence, "")
    assert step.is_done and step.messages == ["hi"] and step.return_value is None

    answer = InMemoryPersistence[str]()
    waiting = runner(get_client_response(), answer, "ignored: it starts the dialog")
    assert not waiting.is_done and waiting.messages == []
    done = runner(get_client_response(), answer, "the answer")
    assert done.is_done and done.return_value == "the answer"


async def test_a_primitive_step_can_be_the_whole_async_dialog(persistence: PersistenceProvider[str]) -> None:
    step = await run_async_gen_dialog(send_message("hi"), persistence, "")
    assert step.is_done and step.messages == ["hi"]


def test_states_compare_by_value() -> None:
    assert InMemoryPersistence().get_state(dragons_gen()) == new_empty_state(dragons_gen())
    assert new_empty_state(dragons_gen()) != new_empty_state(game())
    one, two = InMemoryPersistence[str](), TextPersistence()
    for text in DRAGONS_SCRIPT[:4]:
        run_gen_dialog(dragons_gen(), one, text)
        run_gen_dialog(dragons_gen(), two, text)
    assert one.state == two.get_state(dragons_gen())
    run_gen_dialog(dragons_gen(), one, "2")
    assert one.state != two.get_state(dragons_gen())
    assert DialogState[int] is DialogState  # annotated as the seed's generic state


SEED_NAMES = [
    "AsyncDialog", "AsyncGenDialog", "BaseDialog", "Dialog", "DialogState", "DialogStateException",
    "DialogStepDone", "DialogStepNotDone", "GenDialog", "InMemoryPersistence", "PersistenceProvider",
    "Result", "dialog", "dialog_result", "get_client_response", "new_empty_state", "run",
    "run_async_gen_dialog", "run_dialog", "run_gen_dialog", "send_message", "state_from_dict",
]
"""Every name the seed's README, examples and package exports use."""


def test_every_seed_name_is_importable_from_convoflow_and_listed_in_the_readme() -> None:
    text = README.read_text()
    section = text[text.index("### The embedding API kept from the seed"):]
    section = section[: section.index("\n## ")]
    listed = set(re.findall(r"`(\w+)`", section))
    for name in SEED_NAMES:
        assert name in convoflow.__all__ and getattr(convoflow, name) is not None, name
        assert name in listed, f"{name} is not listed in the README's seed section"
