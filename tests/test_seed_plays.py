"""The seed runners' suspended plays live exactly as long as the caller's state they play.

A persister keeping only JSON text makes a new state every turn: the play suspended at the old one
can never be resumed, so it must not stay in memory (with the whole state it holds), and its flow's
`finally` must run when the runner next turns, not whenever the garbage collector comes by. A
state the caller keeps must still resume its play, without replaying the record.
"""

from __future__ import annotations

import gc
import json
import weakref
from typing import Any, Iterator

import pytest

from convoflow import (
    BaseDialog,
    DialogState,
    InMemoryPersistence,
    dialog,
    get_client_response,
    new_empty_state,
    run_async_gen_dialog,
    run_gen_dialog,
    send_message,
    state_from_dict,
)
from convoflow.runners import SUSPENDED

EVENTS: list[str] = []


@dialog()
def echo():  # type: ignore[no-untyped-def]
    EVENTS.append("started")  # runs once per play: every replay starts the generator afresh
    try:
        yield send_message("Say something.")
        while True:
            said = yield get_client_response()
            yield send_message(f"You said {said}")
    finally:
        EVENTS.append("closed")


class TextPersistence:
    """Only JSON text is kept between turns; the states it hands out are not kept at all."""

    def __init__(self) -> None:
        self.text: str | None = None
        self.handed: list[weakref.ref[DialogState]] = []

    def get_state(self, flow: BaseDialog[Any]) -> DialogState:
        state = new_empty_state(flow) if self.text is None else state_from_dict(json.loads(self.text))
        self.handed.append(weakref.ref(state))
        return state

    def save_state(self, state: DialogState) -> None:
        self.text = json.dumps(state.to_dict())


@pytest.fixture(autouse=True)
def no_garbage_collector() -> Iterator[None]:
    """Whatever is released here is released by reference counting, at a known point."""
    gc.collect()
    SUSPENDED.close_released()  # the plays of the tests before, whose states are gone
    EVENTS.clear()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_dropped_state_releases_its_play_and_the_next_turn_closes_it() -> None:
    persistence = TextPersistence()
    kept_before = len(SUSPENDED)
    run_gen_dialog(echo(), persistence, "hi")
    for turn in range(5):
        step = run_gen_dialog(echo(), persistence, f"word {turn}")
        assert step.messages == [f"You said word {turn}"]
        # every state handed out before is gone: the cache kept none of them alive
        assert [ref() for ref in persistence.handed] == [None] * len(persistence.handed)
        # the play of the turn before was closed by this turn; only this turn's play is kept
        assert EVENTS == ["started", "closed"] * (turn + 1) + ["started"]
        assert len(SUSPENDED) == kept_before + 1
    # the last play is closed by the next turn of any seed-runner session
    run_gen_dialog(echo(), InMemoryPersistence[str](), "hi")
    assert EVENTS[-2:] == ["closed", "started"]


def test_a_kept_state_resumes_its_play_without_replaying() -> None:
    persistence = InMemoryPersistence[str]()
    run_gen_dialog(echo(), persistence, "hi")
    for turn in range(5):
        step = run_gen_dialog(echo(), persistence, f"word {turn}")
        assert step.messages == [f"You said word {turn}"]
    assert EVENTS == ["started"]  # one play took every turn: no replay
    state = persistence.state
    assert state is not None and state.frame.waiting_for_input()


async def test_a_kept_state_resumes_its_play_on_the_async_runner_too() -> None:
    persistence = InMemoryPersistence[str]()
    await run_async_gen_dialog(echo(), persistence, "hi")
    for turn in range(3):
        step = await run_async_gen_dialog(echo(), persistence, f"word {turn}")
        assert step.messages == [f"You said word {turn}"]
    assert EVENTS == ["started"]


def test_a_state_changed_behind_the_plays_back_replays_what_it_now_holds() -> None:
    persistence = InMemoryPersistence[str]()
    run_gen_dialog(echo(), persistence, "hi")
    run_gen_dialog(echo(), persistence, "one")
    state = persistence.state
    assert state is not None
    earlier = state_from_dict(json.loads(json.dumps(state.to_dict())))
    run_gen_dialog(echo(), persistence, "two")
    state.frame = earlier.frame  # the caller rewinds its state by one turn
    step = run_gen_dialog(echo(), persistence, "three")
    assert step.messages == ["You said three"]
    assert EVENTS == ["started", "closed", "started"]  # the stale play closed, the record replayed
    assert "two" not in json.dumps(state.to_dict()) and "three" in json.dumps(state.to_dict())


def test_two_states_held_at_once_each_resume_their_own_play() -> None:
    first, second = InMemoryPersistence[str](), InMemoryPersistence[str]()
    for persistence in (first, second):
        run_gen_dialog(echo(), persistence, "hi")
    for turn in range(3):
        assert run_gen_dialog(echo(), first, f"a{turn}").messages == [f"You said a{turn}"]
        assert run_gen_dialog(echo(), second, f"b{turn}").messages == [f"You said b{turn}"]
    assert EVENTS == ["started", "started"]
