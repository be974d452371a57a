"""The embedding API kept from the seed library, and `ask`.

`run_dialog`, `run_gen_dialog` and `run_async_gen_dialog` play one turn: load the state from the
persistence provider, run the dialog up to its next wait for input, save the state, and return a
step with the messages to send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Literal, Protocol, Sequence, TypeVar

from convoflow.messages import Option, Text
from convoflow.player import Play
from convoflow.plays import SuspendedPlays, close_quietly
from convoflow.replay import DialogState, new_empty_state
from convoflow.dialogs import BaseDialog, dialog, get_client_response, send_message

T = TypeVar("T")


@dataclass
class DialogStepDone(Generic[T]):
    return_value: T
    messages: list[Any]
    is_done: Literal[True] = True


@dataclass
class DialogStepNotDone:
    messages: list[Any]
    is_done: Literal[False] = False
    return_value: None = None


DialogStep = DialogStepDone[Any] | DialogStepNotDone


class PersistenceProvider(Protocol):
    """Where the seed API keeps a dialog's state between turns."""

    def get_state(self, dialog: BaseDialog[Any]) -> DialogState: ...

    def save_state(self, state: DialogState) -> None: ...


@dataclass
class InMemoryPersistence:
    state: DialogState | None = None

    def get_state(self, dialog: BaseDialog[Any]) -> DialogState:
        if self.state is None:
            self.state = new_empty_state(dialog)
        return self.state

    def save_state(self, state: DialogState) -> None:
        self.state = state


SUSPENDED: SuspendedPlays[int] = SuspendedPlays(10_000)
"""The seed runners' suspended plays, by the identity of the state they play (a kept play holds its
state, so the identity stays unique while it is kept)."""


def prepare(dialog: BaseDialog[Any], state: DialogState, fallback: BaseDialog[Any] | None, response: Any) -> Play:
    """The play for this turn: the one suspended playing `state`, or a new one that replays."""
    play = SUSPENDED.take(id(state), state)  # taken out; kept again only when the turn completes
    if play is None or play.top != dialog or play.fallback != fallback:
        if play is not None:
            close_quietly(play)
        play = Play(dialog, state, fallback)
    play.begin(response)
    return play


def finish(play: Play, done: bool) -> DialogStep:
    state = play.state
    if not done:
        SUSPENDED.keep(id(state), state, play)
    messages = list(play.outbox)
    if done:
        return DialogStepDone(state.return_value, messages)
    return DialogStepNotDone(messages)


def _done_already(state: DialogState) -> DialogStep | None:
    return DialogStepDone(state.return_value, []) if state.is_done else None


def run_gen_dialog(
    dialog: BaseDialog[Any],
    persistence: PersistenceProvider,
    client_response: Any,
    fallback_dialog: BaseDialog[Any] | None = None,
) -> DialogStep:
    """Play one turn of a dialog whose steps need no event loop."""
    state = persistence.get_state(dialog)
    step = _done_already(state)
    if step is None:
        play = prepare(dialog, state, fallback_dialog, client_response)
        step = finish(play, play.step_sync())
    persistence.save_state(state)
    return step


run_dialog = run_gen_dialog
"""Plain-function dialogs using `run()` play through the same machinery."""


async def run_async_gen_dialog(
    dialog: BaseDialog[Any],
    persistence: PersistenceProvider,
    client_response: Any,
    fallback_dialog: BaseDialog[Any] | None = None,
) -> DialogStep:
    """Play one turn of any dialog, awaiting its asyncio work."""
    state = persistence.get_state(dialog)
    step = _done_already(state)
    if step is None:
        play = prepare(dialog, state, fallback_dialog, client_response)
        step = finish(play, await play.step_async())
    persistence.save_state(state)
    return step


def _choose(answer: Any, options: Sequence[Option]) -> Any:
    """Map a button press or typed text (label, value or 1-based number) to an option's answer."""
    for option in options:
        if answer == option.answer:
            return option.answer
    if isinstance(answer, str):
        typed = answer.strip().casefold()
        for option in options:
            if typed == option.label.casefold() or typed == str(option.answer).casefold():
                return option.answer
        if typed.isdigit() and 1 <= int(typed) <= len(options):
            return options[int(typed) - 1].answer
    raise ValueError(f"{answer!r} is not one of the options")


@dialog(name="ask")
def _ask(
    question: str, options: tuple[Option, ...], parse: Callable[[Any], Any] | None, retry: str
) -> Any:
    yield send_message(Text(question, options))
    while True:
        answer = yield get_client_response()
        try:
            value = _choose(answer, options) if options else answer
            return parse(value) if parse is not None else value
        except ValueError:
            yield send_message(Text(retry, options))


def ask(
    text: str,
    choices: Sequence[Option | str] | None = None,
    parse: Callable[[Any], Any] | None = None,
    retry: str = "Sorry, I didn't get that. Please try again.",
) -> BaseDialog[Any]:
    """Ask a question and return the validated answer.

    `choices` render as buttons; the user may press one or type its label, value or number.
    `parse` converts the answer; a `ValueError` from it re-asks with `retry`.
    """
    options = tuple(o if isinstance(o, Option) else Option(o) for o in choices or ())
    return _ask(text, options, parse, retry)
