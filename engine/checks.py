"""A read-only replay of a stored session with the current code: would it carry on, restart or fail?

What `convoflow check` runs before a deploy. It is the engine's own replay (convoflow.player's
`Play`, with the version and fingerprint checks every turn makes), stopped at the end of the
record: at the wait the session is suspended at, or at the first step that has no record. So no
new step body runs (no API call, no message, no recorded draw), no arrival reaches a wait, and
nothing is written anywhere.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, Callable, Literal

from convoflow.dialogs import BaseDialog, Wait, send_message
from convoflow.frames import Frame, Waiting
from convoflow.player import Play
from convoflow.replay import ReplayMismatch, state_from_dict
from convoflow.stores.base import Session

Verdict = Literal["unchanged", "version", "mismatch", "failed"]
"""`unchanged`: the session carries on; `version`: it restarts because a dialog's version changed
(intended); `mismatch`: it restarts because the code no longer fits its record (not intended);
`failed`: the flow raised while replaying it."""


@dataclass(frozen=True)
class Checked:
    """What replaying one session found."""

    key: str
    dialog: str
    """The dialog at the session's top, as recorded (a goto target, after one)."""
    version: str
    verdict: Verdict
    detail: str = ""
    """For a restart, the mismatch (where, what was recorded, what the code has); for a failure,
    the traceback."""


class _Reached(BaseException):
    """The replay reached the end of the record (BaseException: no flow's `except` takes it)."""


class _Derailed(BaseException):
    def __init__(self, mismatch: ReplayMismatch):
        self.mismatch = mismatch


class CheckPlay(Play):
    """A Play that replays the recorded part of a session only and says how it ended."""

    async def _step(self, step: Any, frame: Frame, path: tuple[str, ...]) -> Any:
        if frame.cursor >= len(frame.names) and not isinstance(step, send_message):
            pending = frame.pending
            if pending is None:
                raise _Reached()  # the first step with no record: it would run now, so stop here
            if isinstance(step, Wait) and isinstance(pending, Waiting) and pending.name == step.name:
                raise _Reached()  # the wait the session is suspended at
        # recorded steps, a pending subdialog entered, and mismatches: as every turn replays them
        return await super()._step(step, frame, path)

    def _restart(self, mismatch: ReplayMismatch) -> None:
        raise _Derailed(mismatch)


async def check_session(
    session: Session, dialog_factory: Callable[[], BaseDialog[Any]],
    fallback: Callable[[], BaseDialog[Any]] | None = None,
) -> Checked:
    """Replay `session` (a running one) with the current code, without running anything new."""
    raw = session.state or {}
    top = raw.get("frame", {})
    call = raw.get("call")
    name = str(call.get("dialog", top.get("name", "?")) if isinstance(call, dict) else top.get("name", "?"))
    name = name.rpartition(":")[2] or name  # a goto target is stored as module:dialog
    checked = _Outcome(str(session.key), name, str(top.get("version", "?")))
    play: Play | None = None
    try:
        state = state_from_dict(raw)
        play = CheckPlay(dialog_factory(), state, fallback() if fallback else None, key=session.key)
        play.begin(None)
        await play.step_async()
    except _Reached:
        return checked.of("unchanged")
    except _Derailed as derailed:
        mismatch = derailed.mismatch
        return checked.of("version" if mismatch.reason == "version" else "mismatch", str(mismatch))
    except Exception as error:  # noqa: BLE001 - whatever the flow raises is what we report
        return checked.of("failed", "".join(traceback.format_exception(error)).rstrip())
    finally:
        if play is not None:
            play.close()
    return checked.of("unchanged")  # the replay ran out without reaching anything new


@dataclass(frozen=True)
class _Outcome:
    key: str
    dialog: str
    version: str

    def of(self, verdict: Verdict, detail: str = "") -> Checked:
        return Checked(self.key, self.dialog, self.version, verdict, detail)
