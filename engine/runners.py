"""The embedding API kept from the seed library, and `ask`.

`run_dialog`, `run_gen_dialog` and `run_async_gen_dialog` play one turn: load the state from the
persistence provider, run the dialog up to its next wait for input, save the state, and return a
step with the messages to send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Generic, Literal, Protocol, Sequence, TypeVar

from convoflow.fingerprints import ask_fingerprint
from convoflow.messages import Option, Text
from convoflow.player import Play
from convoflow.plays import PlaysByState, close_quietly, copy_back, private_copy
from convoflow.replay import DialogState, new_empty_state
from convoflow.dialogs import BaseDialog, GenDialog, decorate, get_client_response, send_message

T = TypeVar("T")
M = TypeVar("M")
"""The message type, as in the seed (`InMemoryPersistence[str]`); convoflow does not check it."""
M_co = TypeVar("M_co", covariant=True)


@dataclass
class DialogStepDone(Generic[T, M]):
    return_value: T
    messages: list[M]
    is_done: Literal[True] = True


@dataclass
class DialogStepNotDone(Generic[M]):
    messages: list[M]
    is_done: Literal[False] = False
    return_value: None = None


DialogStep = DialogStepDone[Any, Any] | DialogStepNotDone[Any]


class PersistenceProvider(Protocol[M_co]):
    """Where the seed API keeps a dialog's state between turns (generic in the message type, as
    in the seed: `class Mine(PersistenceProvider[str])`)."""

    def get_state(self, dialog: BaseDialog[Any]) -> DialogState: ...

    def save_state(self, state: DialogState) -> None: ...


@dataclass
class InMemoryPersistence(Generic[M]):
    state: DialogState | None = None

    def get_state(self, dialog: BaseDialog[Any]) -> DialogState:
        if self.state is None:
            self.state = new_empty_state(dialog)
        return self.state

    def save_state(self, state: DialogState) -> None:
        self.state = state


SUSPENDED = PlaysByState(10_000)
"""The seed runners' suspended plays, each kept while its caller holds the state it plays."""


def prepare(dialog: BaseDialog[Any], state: DialogState, fallback: BaseDialog[Any] | None, response: Any) -> Play:
    """The play for this turn: the one suspended at `state`, or a new one that replays (on a
    private copy of `state`, so that the kept play never keeps the caller's state alive)."""
    play = SUSPENDED.take(state)  # taken out; kept again only when the turn completes
    if play is None or play.top != dialog or play.fallback != fallback:
        if play is not None:
            close_quietly(play)
        play = Play(dialog, private_copy(state), fallback)
    play.begin(response)
    return play


def finish(play: Play, state: DialogState, done: bool) -> DialogStep:
    if not done:
        SUSPENDED.keep(state, play)
    messages = list(play.outbox)
    if done:
        return DialogStepDone(state.return_value, messages)
    return DialogStepNotDone(messages)


def _done_already(state: DialogState) -> DialogStep | None:
    return DialogStepDone(state.return_value, []) if state.is_done else None


def run_gen_dialog(
    dialog: BaseDialog[Any],
    persistence: PersistenceProvider[Any],
    client_response: Any,
    fallback_dialog: BaseDialog[Any] | None = None,
) -> DialogStep:
    """Play one turn of a dialog whose steps need no event loop."""
    state = persistence.get_state(dialog)
    step = _done_already(state)
    if step is None:
        play = prepare(dialog, state, fallback_dialog, client_response)
        try:
            done = play.step_sync()
        finally:
            copy_back(play.state, copy_to=state)
        step = finish(play, state, done)
    persistence.save_state(state)
    return step


run_dialog = run_gen_dialog
"""Plain-function dialogs using `run()` play through the same machinery."""


async def run_async_gen_dialog(
    dialog: BaseDialog[Any],
    persistence: PersistenceProvider[Any],
    client_response: Any,
    fallback_dialog: BaseDialog[Any] | None = None,
) -> DialogStep:
    """Play one turn of any dialog, awaiting its asyncio work."""
    state = persistence.get_state(dialog)
    step = _done_already(state)
    if step is None:
        play = prepare(dialog, state, fallback_dialog, client_response)
        try:
            done = await play.step_async()
        finally:
            copy_back(play.state, copy_to=state)
        step = finish(play, state, done)
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


class AskCall(GenDialog[Any]):
    """An `ask`: fingerprinted by what it asks (see convoflow.fingerprints), not by its callables."""

    def fingerprint(self) -> str | None:
        question, options, _parse, _retry, key = self.args[:5]
        return ask_fingerprint(question, options, key)

    def accepts(self, recorded: Any) -> bool:
        """An answer recorded before fingerprints stands only if it is still one of the options."""
        _question, options, parse, _retry, _key = self.args[:5]
        if not options or parse is not None:
            return True  # a parsed value cannot be traced back to an option
        return any(recorded == o.answer and type(recorded) is type(o.answer) for o in options)


def _ask(
    question: str, options: tuple[Option, ...], parse: Callable[[Any], Any] | None, retry: str, key: str | None,
    wait: get_client_response | None = None,
) -> Any:
    yield send_message(Text(question, options))
    while True:
        answer = yield wait or get_client_response()
        try:
            value = _choose(answer, options) if options else answer
            return parse(value) if parse is not None else value
        except ValueError:
            yield send_message(Text(retry, options))


_ask_call = decorate(_ask, name="ask", kind=AskCall)


def ask(
    text: str,
    choices: Sequence[Option | str] | None = None,
    parse: Callable[[Any], Any] | None = None,
    retry: str = "Sorry, I didn't get that. Please try again.",
    key: str | None = None,
    *,
    timeout: float | timedelta | None = None,
    remind_after: float | timedelta | Sequence[float | timedelta] | None = None,
    reminder: Any = None,
) -> BaseDialog[Any]:
    """Ask a question and return the validated answer.

    `choices` render as buttons; the user may press one or type its label, value or number.
    `parse` converts the answer; a `ValueError` from it re-asks with `retry`. A recorded answer
    replays only to the same question: same text and options, or with a stable `key` the same key
    and option values (so rewording the question keeps sessions).

    With `timeout` (seconds or a timedelta), TimedOut is raised when no answer comes in time
    (each retry waits afresh). `remind_after` sends `reminder` (by default the question again)
    without ending the wait: a number repeats it at that interval until the timeout (once without
    a timeout), a sequence gives each reminder's offset from the question.
    """
    options = tuple(o if isinstance(o, Option) else Option(o) for o in choices or ())
    if timeout is None and remind_after is None:
        return _ask_call(text, options, parse, retry, key)
    # a malformed timeout or reminder fails here, where the flow asks
    wait = get_client_response(timeout, remind_after, Text(text, options) if reminder is None else reminder)
    return _ask_call(text, options, parse, retry, key, wait)
