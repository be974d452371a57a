"""The player: a dialog kept suspended in memory between turns and a dialog replayed from its
stored record must be indistinguishable, message for message and state for state."""

from __future__ import annotations

import random
from typing import Any, Callable

import pytest

from convoflow import (
    BaseDialog,
    InMemoryPersistence,
    Text,
    ask,
    dialog,
    get_client_response,
    run,
    run_async_gen_dialog,
    send_message,
)
from tests.support.dialog_helpers import JsonPersistence, stored
from tests.support.flows import KITCHEN_SINK_INPUTS, SCRIPTS, kitchen_sink


async def transcript(make: Callable[[], BaseDialog[Any]], persistence: Any, inputs: list[Any]) -> list[Any]:
    random.seed(20240611)
    turns = []
    for text in inputs:
        step = await run_async_gen_dialog(make(), persistence, text)
        turns.append((step.messages, step.is_done, step.return_value, stored(persistence)))
    return turns


@pytest.mark.parametrize("script", sorted(SCRIPTS))
async def test_a_suspended_play_and_a_replay_from_json_give_the_same_conversation(script: str) -> None:
    make, inputs = SCRIPTS[script]
    live = await transcript(make, InMemoryPersistence(), inputs)
    replayed = await transcript(make, JsonPersistence(), inputs)
    for turn, (kept, cold) in enumerate(zip(live, replayed)):
        assert kept == cold, f"turn {turn} ({inputs[turn]!r}) differs"
    assert len(live) == len(inputs)


async def test_the_kitchen_sink_conversation_goes_as_written() -> None:
    turns = await transcript(kitchen_sink, JsonPersistence(), KITCHEN_SINK_INPUTS)
    texts = [[m if isinstance(m, str) else m.text for m in messages] for messages, *_ in turns]
    assert texts[:6] == [
        ["Name?"], ["Ada, a nickname?"], ["Card number?"], ["card 1230 declined", "Card number?"],
        [texts[4][0], "How many rounds?"], ["A number please"],
    ]
    assert texts[4][0].startswith("card ok: {'card': '4242', 'checks': [0.") and texts[4][0].endswith(", 'flow-added']}")
    assert texts[6:10] == [["Round 1?"], ["round 1: r vs p", "Round 2?"], ["round 2: p vs r", "Round 3?"], [texts[9][0], texts[9][1], "Ada, you played 3 rounds.", "Again?"]]
    assert texts[9][1].startswith("Ace (") and texts[9][1].endswith(") paid with 4242 after 3 checks")
    assert texts[10:] == [["Ada, you played 4 rounds.", "Again?"], ["Ada, you played 5 rounds.", "Again?"], [], []]
    assert turns[-1][1:3] == (True, "no")


# --- the suspended play is really reused, and only when it may be ---------------------------------

starts: list[str] = []


@dialog()
def counted():
    starts.append("counted")  # not a step: runs each time the generator is started
    total = 0
    while True:
        total += yield ask("Number?", parse=int)
        yield send_message(f"total {total}")


@pytest.fixture(autouse=True)
def no_starts() -> None:
    starts.clear()


async def test_a_kept_state_object_resumes_its_suspended_dialog_without_replaying() -> None:
    persistence = InMemoryPersistence()
    for text in ["hi", "1", "2", "3"]:
        await run_async_gen_dialog(counted(), persistence, text)
    assert starts == ["counted"]


async def test_a_state_loaded_from_json_replays_each_turn() -> None:
    persistence = JsonPersistence()
    for text in ["hi", "1", "2", "3"]:
        await run_async_gen_dialog(counted(), persistence, text)
    assert starts == ["counted"] * 4


async def test_a_turn_that_failed_is_not_resumed_from_memory() -> None:
    persistence = InMemoryPersistence()
    await run_async_gen_dialog(counted(), persistence, "hi")
    await run_async_gen_dialog(counted(), persistence, "1")

    @dialog(name="counted")
    def broken():
        raise RuntimeError("bug")
        yield

    with pytest.raises(RuntimeError, match="bug"):
        await run_async_gen_dialog(broken(), persistence, "2")
    step = await run_async_gen_dialog(counted(), persistence, "2")
    assert step.messages == ["total 3", Text("Number?")]
    assert starts == ["counted", "counted"]  # the failed turn dropped the suspended dialog


async def test_plain_function_dialogs_run_again_from_the_top_each_turn() -> None:
    runs: list[str] = []

    @dialog()
    def plain_flow() -> str:
        runs.append("plain_flow")
        run(send_message("first?"))
        first = run(get_client_response())
        run(send_message("second?"))
        return f"{first} {run(get_client_response())}"

    persistence = InMemoryPersistence()
    steps = [await run_async_gen_dialog(plain_flow(), persistence, text) for text in ["hi", "a", "b"]]
    assert [s.messages for s in steps] == [["first?"], ["second?"], []] and steps[-1].return_value == "a b"
    assert runs == ["plain_flow"] * 3
