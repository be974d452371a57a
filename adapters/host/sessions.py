"""Stored sessions for people: a listing (`convoflow sessions list`) and a readable,
transcript-like view of one (`convoflow sessions show`)."""

from __future__ import annotations

import json
import time
from typing import Any

from convoflow.messages import SessionKey, message_from_dict
from convoflow.replay import INPUT, log_entries
from convoflow.stores.base import Session, Store

from convoflow.adapters.console.channel import render


NO_LIMIT = 2**62
"""What `--limit 0` asks a store for: every session."""


async def listing(store: Store, where: str | None, limit: int) -> list[str]:
    """Summary lines, newest first, of at most `limit` sessions (0: no limit) in partition `where`
    and those under it; `where` may be a whole key, PARTITION/APP, for that app's sessions only."""
    wanted = limit or NO_LIMIT
    if where is None or "/" not in where:
        return [summary_line(session) for session in await store.list_sessions(where, limit=wanted)]
    key = SessionKey.parse(where)
    found = [s for s in await store.list_sessions(key.partition, limit=NO_LIMIT) if s.key.app == key.app]
    return [summary_line(session) for session in found[:wanted]]


def summary_line(session: Session) -> str:
    return f"{session.key}  rev {session.revision}  {_status(session)}  updated {_when(session.updated)}"


def describe(session: Session) -> str:
    lines = [
        f"session   {session.key}",
        f"partition {session.key.partition}",
        f"app       {session.key.app}",
        f"revision  {session.revision}  created {_when(session.created)}  updated {_when(session.updated)}",
        f"status    {_status(session)}",
        f"reply to  {json.dumps(session.address)}",
    ]
    state = session.state
    if state is not None:
        if "call" in state:
            call = state["call"]
            lines.append(f"entered   via goto {call['dialog']}(args={call['args']}, kwargs={call['kwargs']})")
        if "fallback" in state:
            lines.append("fallback dialog running:")
            lines += _frame_lines(state["fallback"], 1)
        lines.append("recorded steps:")
        lines += _frame_lines(state["frame"], 1)
        if "result" in state:
            lines.append(f"  => finished with {json.dumps(state['result']['value'])}")
    lines.append(f"outbox    {len(session.outbox)} undelivered")
    lines += [_reply_line(item) for item in session.outbox]
    lines.append("last replies:")
    lines += [_reply_line(item) for item in session.last] or ["  (none)"]
    lines.append(f"seen ids  {len(session.seen)} (latest {session.seen[-1] if session.seen else '-'})")
    if session.due is not None:
        lines.append(f"next timer {_when(session.due)}" + (f"  (idle timeout {_when(session.idle_at)})" if session.idle_at else ""))
    if session.inbox:
        lines.append(f"kept      {len(session.inbox)} answers sent while the flow waited for something else")
    for event in session.events:
        lines.append(f"kept      event {event['name']!r} (id {event['id']}) until {_when(event['until'])}")
    for queued in session.queued:
        lines.append(f"queued    start {queued['id']}")
    return "\n".join(lines)


def _status(session: Session) -> str:
    state = session.state
    if state is None:
        return "not started"
    if not session.running:
        return "finished"
    path = []
    frame: Any = state.get("fallback") or state["frame"]
    while isinstance(frame, dict) and "wait" not in frame:
        path.append(frame["name"])
        frame = frame.get("pending")
    return f"{_waiting(frame)} in {' > '.join(path)}" if frame is not None else f"in {' > '.join(path)}"


_WAITS = {INPUT: "waiting for input", "<sleep>": "sleeping", "<event>": "waiting for an event",
          "<first>": "waiting for an answer or an event"}


def _waiting(pending: str | dict[str, Any]) -> str:
    """A wait as stored (a bare name, or a dict with its times), in words."""
    name = pending if isinstance(pending, str) else pending["wait"]
    text = _WAITS.get(name, f"waiting at {name}")
    if isinstance(pending, dict) and pending.get("due") is not None:
        text += f" until {_when(pending['due'])}"
    return text


def _frame_lines(frame: dict[str, Any], depth: int) -> list[str]:
    indent = "  " * depth
    lines = [f"{indent}{frame['name']} (version {frame['version']})"]
    for entry in log_entries(frame["log"]):
        name, value = entry[0], entry[1]
        extras = entry[2] if len(entry) > 2 else {}
        shown = "error " + json.dumps(extras["error"]) if "error" in extras else json.dumps(value)
        label = "user said" if name == INPUT else name
        repeat = f"  (x{extras['n']})" if "n" in extras else ""
        lines.append(f"{indent}  {label}: {shown[:200]}{repeat}")
    pending = frame.get("pending")
    if isinstance(pending, dict) and "wait" not in pending:
        lines += _frame_lines(pending, depth + 1)
    elif pending == INPUT:
        lines.append(f"{indent}  ... waiting for the user's answer")
    elif pending is not None:
        lines.append(f"{indent}  ... {_waiting(pending)}")
    return lines


def _reply_line(item: dict[str, Any]) -> str:
    rendered = render(message_from_dict(item["message"])).replace("\n", "\n        ")
    return f"  #{item['seq']} {rendered}"


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"
