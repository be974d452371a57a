"""Plays a dialog against its recorded state: replays recorded steps, runs new ones, records them.

One `Play` drives one session's dialog. Its driver is a chain of coroutines (one per running
generator dialog); when the flow waits for input the whole chain suspends and is kept, so the next
turn resumes it directly instead of replaying the record (a cache, checked against the state's
identity; after a restart or on another server the record is replayed instead, with the same
result). Plain-function dialogs (`run()` style) cannot stay suspended: they re-run and replay.
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from typing import Any, Coroutine, Generator, NoReturn

from convoflow.replay import (
    DEFAULT_VERSION,
    DialogStateException,
    INPUT,
    DialogState,
    Frame,
    ReplayMismatch,
    Result,
    error_from_data,
    error_to_data,
    storable,
)
from convoflow.clock import Clock, SystemClock
from convoflow.frames import Chain, Waiting, chained
from convoflow.mailbox import Arrivals, Mailbox, PendingWait
from convoflow.values import Undecodable, decode
from convoflow.dialogs import (
    AsyncDialog,
    AsyncGenDialog,
    BaseDialog,
    Dialog,
    DialogCall,
    GenDialog,
    TimedOut,
    Wait,
    dialog_result,
    get_client_response,
    goto,
    resolve,
    send_message,
)
from convoflow.waits import Reading

log = logging.getLogger("convoflow.replay")

_SUSPEND = object()
"""What the driver yields to its runner when the flow waits for something that has not come."""


class _AwaitInput:
    def __await__(self) -> Generator[Any, None, None]:
        yield _SUSPEND


# Control flow travels as BaseException so a flow's own `except Exception` never swallows it.
class _NeedInput(BaseException):
    """Unwinds a plain-function dialog that must wait for input."""


class _Goto(BaseException):
    def __init__(self, target: DialogCall[Any]):
        self.target = target


class _Restart(BaseException):
    def __init__(self, mismatch: ReplayMismatch):
        self.mismatch = mismatch


_current: ContextVar[tuple[Play, Frame, tuple[str, ...]]] = ContextVar("convoflow_run_context")


class Play:
    """One session's dialog in play: `begin(arrival)`, then `step_async()` (or `step_sync()`)
    runs it up to the next wait. `key` is the session's (what `session_key()` reads, and what the
    warning a code mismatch logs names); `clock` gives the time every wait's due time is computed
    from.

    After a turn, `pending` is the wait the flow is suspended at (None: it finished), and
    `timed_out` says an uncaught TimedOut ended it.
    """

    def __init__(
        self, top: BaseDialog[Any], state: DialogState, fallback: BaseDialog[Any] | None = None,
        key: object = None, clock: Clock | None = None,
    ):
        self.top = top
        self.state = state
        self.fallback = fallback
        self.key = key
        self.outbox: list[Any] = []
        self.mismatch: ReplayMismatch | None = None
        self.pending: PendingWait | None = None
        self.timed_out = False
        self.arrivals = Arrivals(clock or SystemClock())
        self._coroutine: Coroutine[Any, Any, Any] | None = None
        self._finished = False

    @property
    def mailbox(self) -> Mailbox:
        """What is kept for the flow's later waits (answers sent during a sleep, early events)."""
        return self.arrivals.mailbox

    # --- the runner side -------------------------------------------------------------------

    def begin(self, arrival: Any, mailbox: Mailbox | None = None) -> None:
        """Prepare a turn: the wait the flow is suspended at takes `arrival` when it accepts it: the
        user's answer (any value), an outside event (convoflow.mailbox.Signal) or a timer firing
        (Fired). `mailbox` holds what earlier turns kept for later waits."""
        self.outbox = []
        self.mismatch = None
        self.pending = None
        self.timed_out = False
        fresh = self._coroutine is None
        if fresh:
            self._coroutine = self._main()
        # A fresh dialog ignores the message that started it (as the seed does).
        self.arrivals.begin(arrival, mailbox, ignore_answer=fresh and not self.state.waiting_for_input())

    def step_sync(self) -> bool:
        """Drive a turn without an event loop; True when the dialog has finished."""
        assert self._coroutine is not None
        try:
            yielded = self._coroutine.send(None)
        except StopIteration:
            self._finished = True
            self.arrivals.settle(waiting=False)
            return True
        except RuntimeError as error:
            self._finished = True
            if "no running event loop" in str(error):  # asyncio work called without a loop
                raise self._needs_loop() from error
            raise
        except BaseException:
            self._finished = True
            raise
        if yielded is _SUSPEND:
            self.arrivals.settle(waiting=True)
            return False
        self._coroutine.close()
        self._finished = True
        raise self._needs_loop()

    def _needs_loop(self) -> TypeError:
        return TypeError(f"dialog {self.top.name!r} awaits asyncio work; run it with run_async_gen_dialog")

    async def step_async(self) -> bool:
        """Drive a turn on the running loop; True when the dialog has finished."""
        coroutine = self._coroutine
        assert coroutine is not None
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = coroutine.send(value) if error is None else coroutine.throw(error)
            except StopIteration:
                self._finished = True
                self.arrivals.settle(waiting=False)
                return True
            except BaseException:
                self._finished = True
                raise
            if yielded is _SUSPEND:
                self.arrivals.settle(waiting=True)
                return False
            value, error = None, None
            # The flow awaits an asyncio future: wait for it here, then let the flow read it.
            try:
                if yielded is None:
                    await asyncio.sleep(0)
                else:
                    yielded._asyncio_future_blocking = False
                    await asyncio.wait([yielded])
            except BaseException as exc:  # cancelled while waiting: pass it into the flow
                error = exc

    @property
    def usable(self) -> bool:
        """Whether the suspended chain can take the next turn (not finished, not failed)."""
        return self._coroutine is not None and not self._finished

    def close(self) -> None:
        if self._coroutine is not None:
            self._coroutine.close()
            self._finished = True

    # --- the dialog side -------------------------------------------------------------------

    async def _main(self) -> Any:
        state = self.state
        top = self._top_dialog()
        while True:
            try:
                if state.fallback is not None and self.fallback is None:
                    state.fallback = None  # stored mid-fallback, but no fallback is configured now
                    state.frame = Frame(top.name, top.version)
                if state.fallback is not None and self.fallback is not None:
                    await self._play_top(self.fallback, state.fallback)
                    state.fallback = None
                    state.frame = Frame(top.name, top.version)
                result = await self._play_top(top, state.frame)
                storable(result, (top.name,), "return")  # refused here, not later in a store
                state.result = Result(result)
                return result
            except TimedOut as error:
                # Uncaught, a timeout ends the conversation, like a flow that finished.
                log.info("session %s ended: %s", self.key if self.key is not None else "(no key)", error)
                state.fallback = None
                state.result = Result(None)
                self.timed_out = True
                return None
            except _Goto as jump:
                top = jump.target
                state.call = storable(top.spec(), (state.frame.name,), "goto")
                state.frame = Frame(top.name, top.version)
                state.fallback = None  # a goto from the fallback dialog ends it too
            except _Restart as restart:
                self._restart(restart.mismatch)
                top = self.top

    def _top_dialog(self) -> BaseDialog[Any]:
        if self.state.call is None:
            return self.top
        try:
            return resolve(decode(self.state.call))
        except LookupError as error:  # Undecodable is a LookupError too
            # The goto target is gone from the code: like any mismatch, start over.
            self.state.fallback = None
            self._restart(ReplayMismatch((), 0, str(self.state.call["dialog"]), str(error), "code"))
            return self.top

    def _restart(self, mismatch: ReplayMismatch) -> None:
        if mismatch.reason == "code":
            log.warning("restarting session %s: %s", self.key if self.key is not None else "(no key)", mismatch)
        self.mismatch = mismatch
        self.outbox.clear()  # replies of the abandoned run are never delivered
        self.arrivals.drop_answer()  # the new run starts afresh, as from a message that starts it
        state = self.state
        state.call = None
        state.frame = Frame(self.top.name, self.top.version)
        state.fallback = Frame(self.fallback.name, self.fallback.version) if self.fallback else None

    async def _play_top(self, top: BaseDialog[Any], frame: Frame) -> Any:
        if frame.name != top.name or frame.version != top.version:
            reason = "version" if frame.name == top.name else "code"
            raise _Restart(ReplayMismatch((), 0, f"{frame.name} {frame.version}", f"{top.name} {top.version}", reason))
        frame.cursor = 0
        if not isinstance(top, DialogCall):  # a primitive step as the whole dialog (seed API)
            return await self._drive(_alone(top), frame, (top.name,))
        return await self._invoke(top, frame, (top.name,))

    async def _invoke(self, step: BaseDialog[Any], frame: Frame, path: tuple[str, ...]) -> Any:
        try:
            return await self._invoke_style(step, frame, path)
        except Exception as error:
            if frame.chain_open:
                # The flow failed amid a stored run whose fingerprints are checked at its end: the
                # recorded answers went to other questions than recorded. A mismatch, not a bug.
                raise _Restart(ReplayMismatch(path, frame.cursor, f"{frame.names[frame.cursor - 1]} (a run)", repr(error), "code")) from error
            raise

    async def _invoke_style(self, step: BaseDialog[Any], frame: Frame, path: tuple[str, ...]) -> Any:
        if isinstance(step, GenDialog):
            return await self._drive(step.func(*step.args, **step.kwargs), frame, path)
        if isinstance(step, AsyncGenDialog):
            return await self._drive_async(step.func(*step.args, **step.kwargs), frame, path)
        if isinstance(step, Dialog):
            return await self._call_plain(step, frame, path)
        if isinstance(step, AsyncDialog):
            token = _current.set((self, frame, path))
            try:
                return await step.func(*step.args, **step.kwargs)
            except _NeedInput:
                raise TypeError(
                    f"async def dialog {step.name!r} cannot wait for input; make it an async generator"
                ) from None
            finally:
                _current.reset(token)
        raise TypeError(f"{path[-2] if len(path) > 1 else 'dialog'} yielded {step!r}, which is not a step")

    async def _drive(self, gen: Generator[Any, Any, Any], frame: Frame, path: tuple[str, ...]) -> Any:
        names, prints, values, extras, plain = frame.names, frame.prints, frame.values, frame.extras, frame.plain_answers
        send = gen.send
        cursor = frame.cursor  # kept in step with frame.cursor except while replaying below
        try:
            try:
                step = send(None)
                while True:
                    # Replaying recorded steps is most of a cold turn: a tight loop without awaits.
                    count = len(names)  # nothing is recorded in this loop
                    while cursor < count:
                        kind = type(step)
                        if kind is send_message:
                            step = send(None)
                            continue
                        if kind is get_client_response and cursor in plain:
                            # a run of plain recorded answers: handed over as they are, in a row
                            end = plain[cursor]
                            while True:
                                step = send(values[cursor])
                                cursor += 1
                                if cursor == end:  # (past the record, a message is a new reply)
                                    break
                                kind = type(step)
                                while kind is send_message:
                                    step = send(None)
                                    kind = type(step)
                                if kind is not get_client_response:
                                    break
                            continue
                        if kind is get_client_response and prints[cursor] is None and names[cursor] == INPUT and (
                            not extras or cursor not in extras
                        ):
                            # the commonest recorded step: its name and version are its class's
                            value = values[cursor]
                            stored = type(value)
                            if stored is list or stored is dict:
                                value = _decoded(value, path, cursor)
                            cursor += 1
                            step = send(value)
                            continue
                        if (
                            names[cursor] != getattr(step, "name", None)
                            or cursor in extras
                            or getattr(step, "version", None) != DEFAULT_VERSION
                        ):
                            break  # not a plain recorded result: the general path below decides
                        recorded_print = prints[cursor]
                        if recorded_print is None:
                            if isinstance(step, DialogCall) and (step.args or step.kwargs):
                                break  # recorded before fingerprints: the general path checks it
                        elif recorded_print != step.fingerprint():
                            break  # another call than recorded: the general path says so
                        value = values[cursor]
                        if type(value) is list or type(value) is dict:
                            value = _decoded(value, path, cursor)
                        cursor += 1
                        step = send(value)
                    frame.cursor = cursor
                    if type(step) is send_message:
                        if cursor >= len(names) and frame.pending is None:
                            self.outbox.append(step.message)
                        step = send(None)
                        continue
                    if type(step) is dialog_result:
                        return self._ended(frame, path, step.value)
                    try:
                        value = await self._step(step, frame, path)
                    except Exception as error:
                        cursor = frame.cursor
                        step = gen.throw(error)
                        continue
                    cursor = frame.cursor
                    step = send(value)
            except StopIteration as stop:
                frame.cursor = cursor
                return self._ended(frame, path, stop.value)
        except BaseException:
            gen.close()
            raise

    async def _drive_async(self, agen: Any, frame: Frame, path: tuple[str, ...]) -> Any:
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = await (agen.asend(value) if error is None else agen.athrow(error))
                except StopAsyncIteration:
                    return self._ended(frame, path, None)
                error = None
                if type(step) is dialog_result:
                    await agen.aclose()
                    return self._ended(frame, path, step.value)
                try:
                    value = await self._step(step, frame, path)
                except Exception as exc:
                    error, value = exc, None
        except BaseException:
            await agen.aclose()
            raise

    async def _call_plain(self, step: DialogCall[Any], frame: Frame, path: tuple[str, ...]) -> Any:
        while True:
            frame.cursor = 0
            token = _current.set((self, frame, path))
            try:
                return self._ended(frame, path, step.func(*step.args, **step.kwargs))
            except _NeedInput:
                pass
            finally:
                _current.reset(token)
            # A plain function cannot stay suspended: wait here, then re-run it to replay.
            await _AwaitInput()

    async def _step(self, step: Any, frame: Frame, path: tuple[str, ...]) -> Any:
        """Replay or run one step yielded (or `run()`) in `frame`."""
        if not isinstance(step, BaseDialog):
            raise TypeError(f"dialog {' > '.join(path)} yielded {step!r}, which is not a step")
        cursor = frame.cursor
        if cursor < len(frame.names):
            return self._replayed(step, frame, path)
        pending = frame.pending
        if isinstance(step, send_message):
            if pending is None:
                self.outbox.append(step.message)
            return None
        if isinstance(step, Wait):
            if isinstance(pending, Frame):
                self._mismatch(path, frame, pending.name, step.name)
            return await self._wait(step, frame, path)
        if isinstance(step, goto):
            if pending is not None:  # the record goes on where the code now leaves
                self._mismatch(path, frame, pending.name, step.name)
            raise _Goto(step.target)
        if isinstance(step, Reading):
            if pending is not None:
                self._mismatch(path, frame, pending.name, step.name)
            value = step.read(self.arrivals.now(), self.key)
            self._record(frame, step, storable(value, path, step.name), None, None)
            return value
        if isinstance(step, dialog_result):
            raise TypeError(f"dialog {' > '.join(path)}: dialog_result() belongs in an async generator dialog")
        fingerprint = _fingerprint(step)
        if isinstance(pending, Frame):
            if pending.name != step.name or pending.version != step.version:
                reason = "version" if pending.name == step.name else "code"
                raise _Restart(ReplayMismatch(path, cursor, f"{pending.name} {pending.version}", f"{step.name} {step.version}", reason))
            if pending.fingerprint is not None and pending.fingerprint != fingerprint:
                self._mismatch(path, frame, _printed(pending.name, pending.fingerprint), _printed(step.name, fingerprint))
            child = pending
        elif pending is None:
            child = frame.pending = Frame(step.name, step.version, fingerprint)
        else:
            self._mismatch(path, frame, pending.name, step.name)
        child.cursor = 0
        try:
            value = await self._invoke(step, child, (*path, step.name))
        except Exception as error:
            frame.pending = None
            self._record(frame, step, None, fingerprint, {"error": error_to_data(error)})
            raise
        recorded = storable(value, path, step.name)
        frame.pending = None
        self._record(frame, step, recorded, fingerprint, None)
        return value

    def _replayed(self, step: BaseDialog[Any], frame: Frame, path: tuple[str, ...]) -> Any:
        if isinstance(step, send_message):
            return None
        cursor = frame.cursor
        name = frame.names[cursor]
        extras = frame.extras.get(cursor, {})
        recorded_version = extras.get("v", DEFAULT_VERSION)
        if name != step.name or recorded_version != step.version:
            reason = "version" if name == step.name else "code"
            raise _Restart(ReplayMismatch(path, cursor, f"{name} {recorded_version}", f"{step.name} {step.version}", reason))
        recorded_print, fingerprint = frame.prints[cursor], _fingerprint(step)
        if type(recorded_print) is Chain:  # a stored run: its steps' fingerprints, folded
            frame.chain = chained("" if cursor == recorded_print.start else frame.chain, fingerprint)
            frame.chain_open = cursor < recorded_print.end
            if not frame.chain_open and frame.chain != recorded_print.digest:
                self._mismatch(path, frame, f"{name} (a run of {cursor - recorded_print.start + 1})", step.name)
        elif recorded_print is not None and recorded_print != fingerprint:
            self._mismatch(path, frame, _printed(name, recorded_print), _printed(step.name, fingerprint))
        if "error" in extras:
            frame.cursor += 1
            raise error_from_data(extras["error"])
        value = frame.values[cursor]
        if recorded_print is None and isinstance(step, DialogCall) and not step.accepts(value):
            # recorded before fingerprints, and no answer to the question the code asks now
            self._mismatch(path, frame, f"{name} answered {value!r:.60}", f"{step.name} not accepting it")
        frame.cursor += 1
        return _decoded(value, path, cursor)

    def _ended(self, frame: Frame, path: tuple[str, ...], value: Any) -> Any:
        """A dialog's code ended: the record must end here too."""
        if frame.cursor < len(frame.names):
            self._mismatch(path, frame, frame.names[frame.cursor], "<end>")
        if frame.pending is not None:
            self._mismatch(path, frame, frame.pending.name, "<end>")
        return value

    def _mismatch(self, path: tuple[str, ...], frame: Frame, recorded: str, found: str) -> NoReturn:
        raise _Restart(ReplayMismatch(path, frame.cursor, recorded, found, "code"))

    async def _wait(self, step: Wait[Any], frame: Frame, path: tuple[str, ...]) -> Any:
        """Suspend at a wait until what ends it comes (at once when it came already), then record
        that like an answer: the value, or the error (TimedOut) the flow gets."""
        pending = frame.pending
        began_now = False
        if isinstance(pending, Waiting):
            if pending.name != step.name:
                self._mismatch(path, frame, pending.name, step.name)
            waiting = pending  # begun in an earlier turn: its times are in the record
        else:
            now = self.arrivals.now()
            due = step.deadline(now)
            # `began` is kept only when reminders are counted from it
            waiting = Waiting(step.name, due, now if step.next_reminder(now, now, due) is not None else None)
            frame.pending = waiting
            began_now = True
        while True:
            woke = self.arrivals.wake(step, waiting, self.outbox)
            if woke is not None:
                break
            reminder = self.arrivals.next_reminder(step, waiting)
            due = waiting.due if reminder is None else min(reminder, waiting.due or reminder)
            self.pending = PendingWait(due, waiting.due, step.accepts_answer(), step.event_names(), began_now)
            await _AwaitInput()
            began_now = False
        frame.pending = None
        fingerprint = step.fingerprint()
        try:
            value = step.outcome(woke)
        except Exception as error:
            self._record(frame, step, None, fingerprint, {"error": error_to_data(error)})
            raise
        what = "get_client_response" if step.name == INPUT else step.name
        self._record(frame, step, storable(value, (frame.name,), what), fingerprint, None)
        return value

    def _record(
        self, frame: Frame, step: BaseDialog[Any], value: Any, fingerprint: str | None, extras: dict[str, Any] | None
    ) -> None:
        if step.version != DEFAULT_VERSION:
            extras = {**(extras or {}), "v": step.version}
        frame.record(step.name, value, fingerprint, extras)

    # --- `run()` inside plain-function dialogs -----------------------------------------------

    def run_in_frame(self, step: BaseDialog[Any], frame: Frame, path: tuple[str, ...]) -> Any:
        """Run one step synchronously on behalf of `run()`."""
        coroutine = self._step(step, frame, path)
        try:
            yielded = coroutine.send(None)
        except StopIteration as done:
            return done.value
        coroutine.close()
        if yielded is _SUSPEND:
            raise _NeedInput()
        raise TypeError(
            f"run() cannot run {step.name!r}: it awaits asyncio work; yield it from an async dialog"
        )


def _alone(step: BaseDialog[Any]) -> Generator[Any, Any, Any]:
    """A primitive step given as the whole dialog plays as a generator dialog yielding just it."""
    return (yield step)


def _fingerprint(step: BaseDialog[Any]) -> str | None:
    return step.fingerprint() if isinstance(step, BaseDialog) else None


def _printed(name: str, fingerprint: str | Chain | None) -> str:
    return name if fingerprint is None else f"{name} #{fingerprint}"


def _decoded(value: Any, path: tuple[str, ...], position: int) -> Any:
    """A recorded value as the flow gets it; one whose type is gone from the code is a mismatch."""
    try:
        return decode(value)
    except Undecodable as error:
        raise _Restart(ReplayMismatch(path, position, "a stored value", str(error), "code")) from None


def run(step: BaseDialog[Any]) -> Any:
    """Run a step from inside a plain-function dialog and return its (recorded) result."""
    context = _current.get(None)
    if context is None:
        raise DialogStateException("run() was called outside a running dialog")
    play, frame, path = context
    return play.run_in_frame(step, frame, path)

