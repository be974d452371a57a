"""`convoflow sessions export KEY [--bot BOT] [--output FILE]`: a stored session written as a
history, the format tests/histories/*.json hold and `convoflow.testing.replay_history` plays: the
bot, then one turn per line, here the one turn the store keeps (the session's state, its latest
replies and what it keeps for its timers). Append the turns that should follow, each an update
and the replies expected, and a real conversation is a regression test. Read-only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from convoflow.messages import SessionKey
from convoflow.stores.base import Session, Store


def history_of(session: Session, bot: str) -> dict[str, Any]:
    turn = {
        "incoming": {"exported": str(session.key)},
        "replies": [item["message"] for item in session.last],
        "state": session.state,
        "at": session.updated, "due": session.due, "idle_at": session.idle_at,
        "inbox": list(session.inbox), "events": list(session.events),
    }
    return {"bot": bot, "key": str(session.key), "turns": [turn]}


def history_text(history: dict[str, Any]) -> str:
    """One turn per line, as tests/histories/record.py writes them (a diff shows turns)."""
    turns = ",\n".join(f"  {json.dumps(turn)}" for turn in history["turns"])
    key = f', "key": {json.dumps(history["key"])}' if "key" in history else ""
    return f'{{"bot": {json.dumps(history["bot"])}{key}, "turns": [\n{turns}\n]}}\n'


async def export_session(store: Store, key_text: str, bot: str | None, output: str | None) -> int:
    key = SessionKey.parse(key_text)
    session = await store.load(key)
    if session is None:
        raise LookupError(f"no session {key}")
    text = history_text(history_of(session, bot or key.app))
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0
