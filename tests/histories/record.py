"""Record golden histories of the example bots: `python tests/histories/record.py`.

Each bot gets a scripted conversation played through the Engine, and every turn is written to
`tests/histories/<bot>.json`: the incoming update, the replies, and the session state after it.
A script step is a user's update, `{"advance": SECONDS}` (the clock moves on and the timer then
due fires: the turn is that firing) or `{"event": NAME, "data": ..., "id": ...}` (an outside
event). The bots that use time also record each turn's clock time (`at`) and what the session
keeps for its timers and waits (`due`, `idle_at`, `inbox`, `events`).
tests/test_histories.py replays these stored states with the current code. Re-record only after an
intentional change, together with a bumped dialog version (see that test module).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))  # the repository root, when run as a script

from convoflow.adapters.host.loader import Bot, load_bot  # noqa: E402
from convoflow import Incoming, ManualClock, Reply, SessionKey  # noqa: E402
from convoflow.messages import message_to_dict  # noqa: E402
from convoflow.turns import Engine, TurnOutcome  # noqa: E402
from convoflow.stores import MemoryStore, Session, Store  # noqa: E402

KEY_PARTITION = "history:recorder"
START = 1_767_225_600.0
"""The clock of the bots that use time starts at 2026-01-01T00:00:00Z."""
TIMED = ("at", "due", "idle_at", "inbox", "events")
"""What a timed bot's turn records besides the state."""

SCRIPTS: dict[str, list[dict[str, Any]]] = {
    # guesses every number in turn, so the game ends whatever the secret drawn
    "bots.guessbot": [{"text": t} for t in ["hi", "5", "five", *map(str, range(1, 11))]],
    "bots.signup": [
        {"text": "hi"}, {"text": "Ada"}, {"text": "twelve"}, {"text": "36"}, {"text": "ada at home"},
        {"text": "Ada@Example.org"}, {"text": "Enterprise"}, {"kind": "button", "value": "pro"},
        {"text": "1"},
    ],
    "bots.menu": [
        {"text": "hi"}, {"kind": "button", "value": "fact"}, {"text": "2"}, {"text": "Count up"},
        {"text": "dance"}, {"text": "fact"}, {"kind": "button", "value": "quit"},
    ],
    "bots.dragons": [
        {"text": "hi"}, {"text": "Ada"}, {"text": "the forest"}, {"text": "Cave"}, {"text": "sneak past it"},
    ],
    "bots.reminder": [
        {"text": "hi"}, {"text": "remind me in 10 minutes to stretch"}, {"text": "in 1 hour to call Bob"},
        {"text": "list"}, {"advance": 600}, {"text": "thanks"}, {"advance": 3000},
    ],
    "bots.checkout": [
        {"text": "hi"}, {"kind": "button", "value": "beans"}, {"text": "hello?"},
        {"event": "paid", "data": {"order": "A-1"}, "id": "pay-1"},
    ],
}
TIMED_BOTS = ("bots.reminder", "bots.checkout")


def incoming_from(bot: str, number: int, update: dict[str, Any]) -> Incoming:
    """The update of a recorded turn, as a channel would hand it to the Engine."""
    return Incoming(
        SessionKey(KEY_PARTITION, bot.rpartition(".")[2]),
        f"{bot}:{number}",
        update.get("kind", "text"),
        update.get("text", ""),
        update.get("value"),
        address={"chat": "recorder"},
    )


def engine_for(loaded: Bot, store: Store, clock: ManualClock, **options: Any) -> Engine:
    return Engine(loaded.dialog, store, loaded.fallback, app=loaded.app, clock=clock,
                  idle_timeout=loaded.idle_timeout, on_idle=loaded.on_idle, **options)


async def play_turn(engine: Engine, clock: ManualClock, bot: str, number: int, update: dict[str, Any],
                    due: float | None) -> list[Reply]:
    """Play one script step: an update, an outside event, or the timer due at `due` firing."""
    key = incoming_from(bot, number, update).key
    if "advance" in update:
        clock.advance(update["advance"])
        assert due is not None and due <= clock.now(), f"step {number} of {bot} reaches no timer"
        replies: list[Reply] = []

        async def collect(reply: Reply) -> None:
            replies.append(reply)

        assert await engine.fire(key, due, collect)
        return replies
    if "event" in update:
        outcome = await engine.signal(key, update["event"], update.get("data"), update["id"])
        return list(outcome.replies)
    return await engine.handle(incoming_from(bot, number, update))


def recorded_turn(bot: str, update: dict[str, Any], replies: list[Reply], session: Session, at: float) -> dict[str, Any]:
    turn = {"incoming": update, "replies": [message_to_dict(reply.message) for reply in replies], "state": session.state}
    if bot in TIMED_BOTS:
        turn.update(at=at, due=session.due, idle_at=session.idle_at, inbox=list(session.inbox),
                    events=list(session.events))
    return turn


def session_before(key: SessionKey, turn: dict[str, Any], state: Any) -> Session:
    """The stored session a recorded turn left (with `state` instead of its own)."""
    return Session(key).advanced(state=state, due=turn.get("due"), idle_at=turn.get("idle_at"),
                                 inbox=tuple(turn.get("inbox", ())), events=tuple(turn.get("events", ())))


async def record(bot: str, updates: list[dict[str, Any]]) -> dict[str, Any]:
    loaded = load_bot(bot)
    store = MemoryStore()
    clock = ManualClock(START)
    engine = engine_for(loaded, store, clock)
    turns: list[dict[str, Any]] = []
    due = None
    for number, update in enumerate(updates):
        replies = await play_turn(engine, clock, bot, number, update, due)
        session = await store.load(incoming_from(bot, number, update).key)
        assert session is not None
        turns.append(recorded_turn(bot, update, replies, session, clock.now()))
        due = session.due
        if session.state is not None and "result" in session.state:
            break
    return {"bot": bot, "turns": turns}


__all__ = ["SCRIPTS", "START", "TIMED", "TurnOutcome", "engine_for", "incoming_from", "play_turn", "session_before"]


def main() -> None:
    """Record every bot's history, or only those named (`record.py bots.reminder`): the older
    histories are kept as recorded, as proof that sessions stored then still resume."""
    random.seed(1)  # the bots' random draws are recorded in the states; this only fixes which
    chosen = sys.argv[1:] or list(SCRIPTS)
    for bot, updates in SCRIPTS.items():
        if bot not in chosen:
            continue
        history = asyncio.run(record(bot, updates))
        path = HERE / f"{bot.rpartition('.')[2]}.json"
        # one turn per line: a re-recording shows in a diff as the turns it changed
        turns = ",\n".join(f"  {json.dumps(turn)}" for turn in history["turns"])
        path.write_text(f'{{"bot": {json.dumps(bot)}, "turns": [\n{turns}\n]}}\n')
        print(f"{path.name}: {len(history['turns'])} turns")


if __name__ == "__main__":
    main()
