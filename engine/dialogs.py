"""What a flow yields or runs: the `@dialog` decorator, dialog calls and the primitive steps."""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Generic, Literal, Sequence, TypeVar, overload

from convoflow.durations import next_reminder, reminder_offsets, seconds_of

from convoflow.fingerprints import FLAT, call_fingerprint, remembered
from convoflow.renamed import current_path
from convoflow.replay import DEFAULT_VERSION, INPUT
from convoflow.types import StateDict

T = TypeVar("T")

_new = object.__new__

_registry: dict[str, Callable[..., BaseDialog[Any]]] = {}
"""Decorated dialogs by "module:qualname", so a `goto` target can be rebuilt from a stored state."""


class BaseDialog(Generic[T]):
    """Anything a flow can yield or pass to `run()`. `name` keys its entry in the replay log."""

    name: str
    version: str

    def fingerprint(self) -> str | None:
        """What the record keeps of this step besides its name and version (see DialogCall)."""
        return None


@dataclass(frozen=True)
class DialogCall(BaseDialog[T]):
    """A decorated function together with its arguments, not yet run."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(hash=False)
    version: str
    name: str
    path: str

    @property
    def dialog(self) -> Callable[[], Any]:
        """The seed API's zero-argument closure."""
        return functools.partial(self.func, *self.args, **self.kwargs)

    def spec(self) -> StateDict:
        """How to call this dialog again, for a stored goto target."""
        return {"dialog": self.path, "args": list(self.args), "kwargs": dict(self.kwargs)}

    def fingerprint(self) -> str | None:
        """What the record keeps of this call besides its name and version, to tell on replay
        whether the code still makes the same call there (see convoflow.fingerprints)."""
        args = self.args
        if len(args) == 1 and not self.kwargs:  # the commonest case, inlined: replays check it often
            kind = type(args[0])
            if kind in FLAT:
                found = remembered((self.path, kind, args[0]))
                if found is not None:
                    return found
        return call_fingerprint(self.path, args, self.kwargs)

    def accepts(self, recorded: Any) -> bool:
        """Whether a result recorded without a fingerprint (before fingerprints existed) may
        stand for this call's result."""
        return True


class Dialog(DialogCall[T]):
    """A plain function: one recorded step, which may itself `run()` steps (seed `run()` style)."""


class GenDialog(DialogCall[T]):
    """A generator function that yields steps."""


class AsyncDialog(DialogCall[T]):
    """An `async def` function: one recorded step (where I/O belongs)."""


class AsyncGenDialog(DialogCall[T]):
    """An async generator function that yields steps and `dialog_result(x)` to return."""


@overload
def dialog(version: Callable[..., Any], /) -> Callable[..., Any]: ...
@overload
def dialog(version: str = DEFAULT_VERSION, name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...
def dialog(version: Any = DEFAULT_VERSION, name: str | None = None) -> Any:
    """Turn a function into a dialog: calling it returns a `DialogCall` to yield or `run()`.
    Written `@dialog`, `@dialog()` or `@dialog(version="2", name="signup")`.

    Bump `version` when a change would make recorded sessions replay differently: stored sessions
    of another version restart (after the fallback dialog, if one is given).
    """
    if callable(version):  # `@dialog` without parentheses: the function itself
        return dialog()(version)

    return functools.partial(decorate, version=version, name=name)


def decorate(
    func: Callable[..., Any], version: str = DEFAULT_VERSION, name: str | None = None,
    kind: type[DialogCall[Any]] | None = None,
) -> Callable[..., Any]:
    """`@dialog(version, name)` on `func`; `kind` gives the call class (a subclass of the one
    `func` calls for, checking its own steps' records, as `ask` does)."""
    if kind is None:
        if inspect.isasyncgenfunction(func):
            kind = AsyncGenDialog
        elif inspect.iscoroutinefunction(func):
            kind = AsyncDialog
        elif inspect.isgeneratorfunction(func):
            kind = GenDialog
        else:
            kind = Dialog
    path = f"{func.__module__}:{func.__qualname__}"
    step_name = name or func.__name__

    @functools.wraps(func)
    def make_call(*args: Any, **kwargs: Any) -> DialogCall[Any]:
        # The same object kind(func, args, ...) builds, at a third of the cost: a frozen
        # dataclass sets each field through object.__setattr__, and a replay makes a call
        # object for every subdialog step it passes.
        call = _new(kind)
        call.__dict__.update(func=func, args=args, kwargs=kwargs, version=version, name=step_name, path=path)
        return call

    _registry[path] = make_call
    return make_call


def resolve(spec: StateDict) -> DialogCall[Any]:
    """Rebuild a dialog call from `DialogCall.spec()`; raises LookupError when it no longer exists."""
    path: str = current_path(spec["dialog"])
    if path not in _registry:
        module_name = path.partition(":")[0]
        try:
            importlib.import_module(module_name)
        except ImportError as error:
            raise LookupError(f"dialog {path} cannot be imported: {error}") from error
    if path not in _registry:
        raise LookupError(f"dialog {path} no longer exists")
    call = _registry[path](*spec.get("args", ()), **spec.get("kwargs", {}))
    assert isinstance(call, DialogCall)
    return call


@dataclass(frozen=True)
class send_message(BaseDialog[None]):  # noqa: N801 - seed API name
    """Queue a message for the user (a str, Text or Media; any value in the seed API)."""

    message: Any
    name: str = field(default="send_message", init=False, repr=False)
    version: str = field(default=DEFAULT_VERSION, init=False, repr=False)

    def __init__(self, message: Any) -> None:
        # What the generated __init__ does at a third of its cost (a frozen dataclass sets each
        # field through object.__setattr__; `name` and `version` are the class's): a replay makes
        # every step of the record again.
        self.__dict__["message"] = message


class TimedOut(Exception):
    """A wait's time ran out: no answer (or event) came before its timeout. Raised in the flow at
    the wait; a flow may catch it, and uncaught it ends the conversation."""


@dataclass(frozen=True)
class Woke:
    """What ended a `wait_first`: `kind` "answer" (`value` is the answer), "event" (`value` is
    the event's data, `event` its name) or "timeout"."""

    kind: Literal["answer", "event", "timeout"]
    value: Any = None
    event: str | None = None


class Wait(BaseDialog[T]):
    """A step at which the flow waits for an answer, an outside event or a time (see
    convoflow.waits). The record of a wait in progress holds its absolute due time, so a restart
    neither resets nor loses it; what ended it is recorded like an answer."""

    def accepts_answer(self) -> bool:
        """Whether the user's next message ends this wait (else it is kept for a later one)."""
        return False

    def event_names(self) -> tuple[str, ...]:
        """The outside events that end this wait."""
        return ()

    def deadline(self, began: float) -> float | None:
        """When the wait times out (Unix seconds), for a wait that began at `began`; None: never."""
        return None

    def next_reminder(self, began: float, after: float, deadline: float | None) -> float | None:
        """The first reminder due after `after`, before `deadline` (none by default)."""
        return None

    def reminder_message(self) -> Any:
        return None

    def outcome(self, woke: Woke) -> T:
        """The flow's value for what ended the wait (or TimedOut raised)."""
        raise NotImplementedError


@dataclass(frozen=True)
class get_client_response(Wait[Any]):  # noqa: N801 - seed API name
    """Wait for the user's next message and return it.

    With `timeout` (seconds or a timedelta), TimedOut is raised when none comes in time. With
    `remind_after` and a `reminder` message, the reminder is sent that long into the wait without
    ending it: a number repeats it at that interval until the timeout (without a timeout it is
    sent once), a sequence gives each reminder's offset from the start of the wait.
    """

    timeout: float | timedelta | None = None
    remind_after: float | timedelta | Sequence[float | timedelta] | None = None
    reminder: Any = None
    name: str = field(default=INPUT, init=False, repr=False)
    version: str = field(default=DEFAULT_VERSION, init=False, repr=False)

    def __init__(self, timeout: float | timedelta | None = None,
                 remind_after: float | timedelta | Sequence[float | timedelta] | None = None, reminder: Any = None) -> None:
        # As send_message's: the fields left at their defaults are the class's, with nothing to check.
        if timeout is None and remind_after is None and reminder is None:
            return
        self.__dict__.update(timeout=timeout, remind_after=remind_after, reminder=reminder)
        self.__post_init__()

    def __post_init__(self) -> None:
        if self.timeout is not None:
            seconds_of(self.timeout, "timeout")
        if self.remind_after is not None:
            object.__setattr__(self, "remind_after", reminder_offsets(self.remind_after))
            if self.reminder is None:
                raise ValueError("remind_after needs a reminder message (reminder=...)")

    def accepts_answer(self) -> bool:
        return True

    def deadline(self, began: float) -> float | None:
        return None if self.timeout is None else began + seconds_of(self.timeout, "timeout")

    def next_reminder(self, began: float, after: float, deadline: float | None) -> float | None:
        if self.remind_after is None:
            return None
        assert isinstance(self.remind_after, (float, tuple))
        return next_reminder(self.remind_after, began, after, deadline)

    def reminder_message(self) -> Any:
        return self.reminder

    def outcome(self, woke: Woke) -> Any:
        if woke.kind == "timeout":
            raise TimedOut(f"no answer within {seconds_of(self.timeout or 0, 'timeout'):g} s")
        return woke.value


@dataclass(frozen=True)
class dialog_result(BaseDialog[T]):  # noqa: N801 - seed API name
    """`yield dialog_result(x)` ends an async generator dialog with the value x."""

    value: T
    name: str = field(default="dialog_result", init=False, repr=False)
    version: str = field(default=DEFAULT_VERSION, init=False, repr=False)


@dataclass(frozen=True)
class goto(BaseDialog[None]):  # noqa: N801 - reads as a statement in flows
    """Replace the running top-level dialog with `target`: the old record is dropped.

    The target's arguments are stored with the session, so they must be storable values
    (convoflow.values).
    """

    target: DialogCall[Any]
    name: str = field(default="goto", init=False, repr=False)
    version: str = field(default=DEFAULT_VERSION, init=False, repr=False)


def is_dialog(value: Any) -> bool:
    """Whether `value` is a function decorated with `@dialog`."""
    return callable(value) and _registry.get(f"{getattr(value, '__module__', '')}:{getattr(value, '__qualname__', '')}") is value
