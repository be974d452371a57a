"""Helpers for the engine tests: a persistence that keeps only JSON text, and a scripted chat."""

from __future__ import annotations

import json
from typing import Any, Callable

from convoflow import (
    BaseDialog,
    DialogState,
    DialogStep,
    InMemoryPersistence,
    PersistenceProvider,
    new_empty_state,
    run_async_gen_dialog,
    run_gen_dialog,
    state_from_dict,
)


class JsonPersistence:
    """A user's own PersistenceProvider that keeps nothing but JSON text, like a database row.

    Every turn therefore starts from a freshly parsed state and replays the dialog's record (the
    in-memory suspended play cannot be reused), which is what happens after a restart.
    """

    def __init__(self) -> None:
        self.text: str | None = None
        self.asked_for: list[str] = []

    def get_state(self, dialog: BaseDialog[Any]) -> DialogState:
        self.asked_for.append(dialog.name)
        if self.text is None:
            return new_empty_state(dialog)
        return state_from_dict(json.loads(self.text))

    def save_state(self, state: DialogState) -> None:
        self.text = json.dumps(state.to_dict())


PERSISTENCES: dict[str, Callable[[], PersistenceProvider]] = {
    "in_memory": InMemoryPersistence,  # keeps the state object, so the suspended play is reused
    "json": JsonPersistence,  # replays from JSON text every turn
}


def stored(persistence: PersistenceProvider) -> dict[str, Any]:
    """The state a persistence holds, as the JSON data a store would keep."""
    if isinstance(persistence, JsonPersistence):
        assert persistence.text is not None
        return json.loads(persistence.text)
    assert isinstance(persistence, InMemoryPersistence) and persistence.state is not None
    return json.loads(json.dumps(persistence.state.to_dict()))


def chat(
    make: Callable[[], BaseDialog[Any]],
    persistence: PersistenceProvider,
    inputs: list[Any],
    fallback: Callable[[], BaseDialog[Any]] | None = None,
) -> list[DialogStep]:
    """Play one turn per input with `run_gen_dialog`, building the dialog anew each turn (as a
    server handling one request per message does)."""
    return [
        run_gen_dialog(make(), persistence, text, fallback() if fallback else None) for text in inputs
    ]


async def achat(
    make: Callable[[], BaseDialog[Any]],
    persistence: PersistenceProvider,
    inputs: list[Any],
    fallback: Callable[[], BaseDialog[Any]] | None = None,
) -> list[DialogStep]:
    return [
        await run_async_gen_dialog(make(), persistence, text, fallback() if fallback else None)
        for text in inputs
    ]


def said(steps: list[DialogStep]) -> list[list[Any]]:
    return [step.messages for step in steps]
