"""Record golden histories of the example bots: `python tests/histories/record.py`.

Each bot gets a scripted conversation played through the Engine, and every turn is written to
`tests/histories/<bot>.json`: the incoming update, the replies, and the session state after it.
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

from convoflow.adapters.host.loader import load_bot  # noqa: E402
from convoflow import Incoming, SessionKey  # noqa: E402
from convoflow.messages import message_to_dict  # noqa: E402
from convoflow.turns import Engine  # noqa: E402
from convoflow.stores import MemoryStore  # noqa: E402

KEY_PARTITION = "history:recorder"

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
}


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


async def record(bot: str, updates: list[dict[str, Any]]) -> dict[str, Any]:
    loaded = load_bot(bot)
    store = MemoryStore()
    engine = Engine(loaded.dialog, store, loaded.fallback, app=loaded.app)
    turns = []
    for number, update in enumerate(updates):
        replies = await engine.handle(incoming_from(bot, number, update))
        session = await store.load(incoming_from(bot, number, update).key)
        assert session is not None
        turns.append({
            "incoming": update,
            "replies": [message_to_dict(reply.message) for reply in replies],
            "state": session.state,
        })
        if session.state is not None and "result" in session.state:
            break
    return {"bot": bot, "turns": turns}


def main() -> None:
    random.seed(1)  # the bots' random draws are recorded in the states; this only fixes which
    for bot, updates in SCRIPTS.items():
        history = asyncio.run(record(bot, updates))
        path = HERE / f"{bot.rpartition('.')[2]}.json"
        # one turn per line: a re-recording shows in a diff as the turns it changed
        turns = ",\n".join(f"  {json.dumps(turn)}" for turn in history["turns"])
        path.write_text(f'{{"bot": {json.dumps(bot)}, "turns": [\n{turns}\n]}}\n')
        print(f"{path.name}: {len(history['turns'])} turns")


if __name__ == "__main__":
    main()
