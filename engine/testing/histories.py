"""Histories: recorded conversations as regression tests (the format of tests/histories/*.json,
and what `convoflow sessions export KEY` writes).

A history is `{"bot": BOT, "key": KEY, "turns": [...]}` (`key`, the session's, is optional), each turn `{"incoming": ..., "replies": [...],
"state": ...}` and, for bots that use time, the clock time `at` and the session's `due`,
`idle_at`, `inbox` and `events`. An incoming is a user's update (`{"text": "36"}`, `{"kind":
"button", "value": "pro"}`), `{"advance": SECONDS}` (the clock moves on and the timer then due
fires) or `{"event": NAME, "data": ..., "id": ...}`. The first turn's incoming is never played
(an exported session has `{"exported": KEY}` there): the history starts from its state.

`replay_history(path)` resumes the first turn's session with the current code and plays each
later turn on from there, expecting the replies recorded; every recorded state must also still
resume unchanged (the read-only replay of `convoflow check`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from convoflow.checks import check_session
from convoflow.clock import ManualClock
from convoflow.messages import Incoming, IncomingKind, Reply, SessionKey, message_to_dict
from convoflow.stores import MemoryStore
from convoflow.stores.base import Session
from convoflow.turns import Engine, TurnOutcome
from convoflow.testing.bots import bot_under_test

START = 1_767_225_600.0
"""The clock of a history without times starts at 2026-01-01T00:00:00Z."""


RECORDER = "history:recorder"
"""The partition of the sessions tests/histories/record.py records."""


class HistoryFailed(AssertionError):
    """A recorded conversation no longer plays as recorded: the message says at which turn."""


async def replay_history(path: str | Path, bot: Any = None) -> int:
    """Play the history at `path` with the current code of `bot` (default: the bot it names);
    returns the number of turns played. Raises HistoryFailed at the first turn that differs."""
    path = Path(path)
    history = json.loads(path.read_text(encoding="utf-8"))
    turns: list[dict[str, Any]] = history["turns"]
    found = bot_under_test(bot if bot is not None else history["bot"])
    outcomes: list[TurnOutcome] = []
    store = MemoryStore()
    first = turns[0]
    clock = ManualClock(first.get("at") or START)
    engine = Engine(found.dialog, store, found.fallback, app=found.app, clock=clock, idle_timeout=found.idle_timeout,
                    on_idle=found.on_idle, interrupts=found.interrupts, max_live=0, on_turn=outcomes.append)
    # the session's own key (a flow may have recorded it), else the one tests/histories/record.py uses
    key = SessionKey.parse(history["key"]) if "key" in history else SessionKey(RECORDER, engine.app)
    await store.commit(Session(key).advanced(
        state=first["state"], due=first.get("due"), idle_at=first.get("idle_at"),
        inbox=tuple(first.get("inbox", ())), events=tuple(first.get("events", ()))))
    for number, turn in enumerate(turns):
        where = f"{path}, turn {number}"
        if turn.get("state") is not None:
            recorded = Session(key).advanced(state=turn["state"])
            if recorded.running:
                checked = await check_session(recorded, found.dialog, found.fallback)
                if checked.verdict != "unchanged":
                    raise HistoryFailed(f"{where}: the recorded session would not resume ({checked.verdict}): "
                                        f"{checked.detail}")
        if number == 0:
            continue
        outcomes.clear()
        replies = [message_to_dict(reply.message) for reply in await _play(engine, clock, key, number, turn["incoming"])]
        if any(outcome.outcome not in ("ok", "finished", "timed_out", "idle", "cancelled") for outcome in outcomes):
            raise HistoryFailed(f"{where}: the turn ended {outcomes[-1].outcome!r} (a restart or a failure)")
        if replies != turn["replies"]:
            raise HistoryFailed(f"{where}: the replies differ\n  recorded: {turn['replies']!r}\n  now:      {replies!r}")
    return len(turns) - 1


async def _play(engine: Engine, clock: ManualClock, key: SessionKey, number: int, update: dict[str, Any]) -> list[Reply]:
    if "advance" in update:
        clock.advance(update["advance"])
        session = await engine.store.load(key)
        if session is None or session.due is None or session.due > clock.now():
            raise HistoryFailed(f"turn {number}: the clock moved on, and no timer was due")
        fired: list[Reply] = []

        async def collect(reply: Reply) -> None:
            fired.append(reply)

        await engine.fire(key, session.due, collect)
        return fired
    if "event" in update:
        return list((await engine.signal(key, update["event"], update.get("data"), str(update["id"]))).replies)
    incoming = Incoming(key, f"history:{number}", cast(IncomingKind, update.get("kind", "text")), update.get("text", ""),
                        update.get("value"), address={"chat": "history"})
    return await engine.handle(incoming)
