"""Stored sessions of the example bots, replayed with today's code, must carry on as recorded.

`tests/histories/<bot>.json` holds a recorded conversation with each bot: per turn, the update,
the replies and the session state after it. For every turn this test puts the state recorded
before it into a store, hands the Engine the same update and checks that the session resumes
where it was: the same replies, the same recorded steps, and no restart from a replay mismatch. A
change to a bot that would derail users in the middle of a conversation fails here.

The histories were recorded before steps carried fingerprints, so they are also the proof that
sessions stored then resume: their steps match by name and version as before. The new state
records the same steps with the same values; the steps recorded now carry fingerprints, and so
runs of steps group differently (`recorded_steps` compares what the two record, step by step).

If the change is meant to alter how sessions in flight continue:
1. bump the `version` of each dialog whose recorded steps changed (`@dialog(version="1.1")`), so
   that stored sessions restart cleanly (after the bot's fallback dialog) instead of replaying a
   record that no longer fits;
2. re-record the histories from the repository root: `.venv/bin/python tests/histories/record.py`
   (new scripts go in its SCRIPTS), review the diff (one line per turn) and commit it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pytest

from convoflow.adapters.host.loader import load_bot
from convoflow.frames import log_entries
from convoflow import BaseDialog, ask, dialog, send_message
from convoflow.messages import message_to_dict
from convoflow.renamed import current_path
from convoflow import ManualClock
from convoflow.turns import TurnOutcome
from convoflow.stores import MemoryStore
from tests.histories.record import SCRIPTS, START, TIMED, engine_for, incoming_from, play_turn, session_before

HISTORIES = Path(__file__).parent / "histories"


def load_history(name: str) -> dict[str, Any]:
    return json.loads((HISTORIES / f"{name}.json").read_text())


async def replay_turn(
    history: dict[str, Any], number: int, dialog_factory: Callable[[], BaseDialog[Any]] | None = None,
    state: dict[str, Any] | None = None,
) -> tuple[TurnOutcome, list[dict[str, Any]], dict[str, Any] | None]:
    """Resume the session stored before turn `number` (or `state`) and play that turn with the
    current code, at the time it was recorded (a timer firing, an event or a user's update)."""
    bot = load_bot(history["bot"])
    if dialog_factory is not None:
        bot = replace(bot, dialog=dialog_factory)
    turn, previous = history["turns"][number], history["turns"][number - 1]
    incoming = incoming_from(history["bot"], number, turn["incoming"])
    store = MemoryStore()
    await store.commit(session_before(incoming.key, previous, previous["state"] if state is None else state))
    outcomes: list[TurnOutcome] = []
    clock = ManualClock(previous.get("at", START))
    engine = engine_for(bot, store, clock, max_live=0, on_turn=outcomes.append)
    replies = await play_turn(engine, clock, history["bot"], number, turn["incoming"], previous.get("due"))
    session = await store.load(incoming.key)
    assert session is not None
    if "at" in turn:  # what the session keeps for its timers and waits is as recorded too
        assert {name: getattr(session, name) for name in TIMED if name != "at"} == {
            name: turn[name] if name in ("due", "idle_at") else tuple(turn[name]) for name in TIMED if name != "at"}
        assert clock.now() == turn["at"]
    return outcomes[0], [message_to_dict(reply.message) for reply in replies], session.state


def test_every_example_bot_has_a_recorded_history() -> None:
    recorded = sorted(path.stem for path in HISTORIES.glob("*.json"))
    assert recorded == sorted(bot.rpartition(".")[2] for bot in SCRIPTS)
    bots = sorted(path.stem for path in (HISTORIES.parents[1] / "bots").glob("*.py") if path.stem != "__init__")
    assert recorded == bots, "record a history for each example bot (tests/histories/record.py)"


CASES = [
    (name, number)
    for name in sorted(bot.rpartition(".")[2] for bot in SCRIPTS)
    for number in range(1, len(load_history(name)["turns"]))
]


@pytest.mark.parametrize(("name", "number"), CASES, ids=[f"{n}-turn{t}" for n, t in CASES])
async def test_a_stored_session_resumes_as_recorded(name: str, number: int) -> None:
    history = load_history(name)
    recorded = history["turns"][number]
    outcome, replies, state = await replay_turn(history, number)
    advice = "if this change is intended, bump the dialog's version and re-record (see this module's docstring)"
    assert outcome.outcome in ("ok", "finished"), f"turn {number} of {name} restarted or failed: {advice}"
    assert replies == recorded["replies"], advice
    assert recorded_steps(state) == recorded_steps(recorded["state"]), advice


@pytest.mark.parametrize("name", sorted(bot.rpartition(".")[2] for bot in SCRIPTS))
async def test_a_stored_session_plays_on_to_its_end_with_todays_states(name: str) -> None:
    # From the first recorded state on, each turn resumes the state today's code stored at the
    # turn before: old entries without fingerprints next to new ones that have them.
    history = load_history(name)
    state = history["turns"][0]["state"]
    for number in range(1, len(history["turns"])):
        outcome, replies, state = await replay_turn(history, number, state=state)
        assert outcome.outcome in ("ok", "finished"), f"turn {number} of {name} restarted or failed"
        assert replies == history["turns"][number]["replies"]
        assert recorded_steps(state) == recorded_steps(history["turns"][number]["state"])


def recorded_steps(state: Any) -> Any:
    """A state with each frame's log as one entry per step (name, value, version, error), without
    fingerprints and however steps are grouped into runs, its dialog paths as today's code writes
    them."""
    if isinstance(state, dict):
        return {k: _steps(v) if k == "log" else recorded_steps(v) for k, v in with_current_paths(state).items() if k != "f"}
    return state


def _steps(log: list[list[Any]]) -> list[tuple[Any, ...]]:
    steps = []
    for entry in log_entries(log):
        meta = dict(entry[2]) if len(entry) > 2 else {}
        count = meta.pop("n", 1)
        meta.pop("f", None)
        meta.pop("fc", None)
        steps += [(entry[0], entry[1], meta)] * count
    return steps


def with_current_paths(state: Any) -> Any:
    """A recorded state with its dialog paths as today's code writes them: histories recorded
    before convoflow became one package name `bots.menu:main`, which now resumes as
    `convoflow.bots.menu:main`."""
    if isinstance(state, dict):
        return {k: current_path(v) if k == "dialog" and isinstance(v, str) else with_current_paths(v)
                for k, v in state.items()}
    if isinstance(state, list):
        return [with_current_paths(item) for item in state]
    return state


async def test_a_breaking_change_without_a_version_bump_is_caught() -> None:
    # guessbot as someone might change it: a question inserted before the game, same version
    @dialog(version="1.0", name="main")
    def changed_guessbot():
        yield send_message("Guess a number between 1 and 10.")
        yield ask("First, your name?")
        while True:
            yield ask("Your guess?", parse=int)

    history = load_history("guessbot")
    outcome, replies, _ = await replay_turn(history, 2, changed_guessbot)
    assert outcome.outcome == "restarted"
    assert replies != history["turns"][2]["replies"]
