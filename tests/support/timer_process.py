"""A process that fires the timers of one store, as a serving process does, and writes every reply
it sends to a file, one line each (`n text`), as soon as it is sent.

    python -m tests.support.timer_process STORE_URL OUT_FILE

It also takes over replies other processes committed and never delivered (their process died):
after 1 second instead of the 15 a real deployment waits. The sessions it fires are those
`seed` starts: each sleeps until its own time, then says "woke N".
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from convoflow import Clock, ManualClock, Reply, SessionKey, SystemClock, dialog, get_client_response, send_message, sleep_until
from convoflow.turns import Engine
from convoflow.scheduler import Scheduler
from convoflow.stores import Store, open_store

APP = "timers"


@dialog()
def idle() -> Any:
    yield get_client_response()


@dialog()
def wake(n: int, at: float) -> Any:
    yield sleep_until(datetime.fromtimestamp(at, timezone.utc))
    yield send_message(f"woke {n}")


def engine_for(store: Store, clock: Clock | None = None) -> Engine:
    return Engine(idle, store, app=APP, handoff_seconds=1.0, clock=clock or SystemClock())


async def seed(store: Store, dues: list[float]) -> None:
    """One session per due time, each sleeping until it. The seeding engine's clock stands still at
    the start, so however long seeding takes, every session is left sleeping (a due time that has
    passed meanwhile is overdue for the firing processes, not done already)."""
    engine = engine_for(store, ManualClock(time.time()))
    for n, at in enumerate(dues):
        await engine.start(SessionKey(f"sleeper:{n}", APP), wake(n, at), {"n": n}, f"seed-{n}")


async def serve(url: str, out: Path) -> None:
    store = open_store(url)
    engine = engine_for(store)
    with out.open("a", buffering=1) as sent:

        async def send(reply: Reply) -> None:
            sent.write(f"{reply.address['n']} {getattr(reply.message, 'text', '')}\n")
            sent.flush()
            os.fsync(sent.fileno())  # the line survives a SIGKILL right after it

        async def sweep() -> None:
            while True:
                await engine.redeliver_waiting(lambda key: send)
                await asyncio.sleep(0.5)

        await asyncio.gather(Scheduler(engine, send, poll_seconds=0.2).run(), sweep())


if __name__ == "__main__":
    # Imported by its name, so the dialogs it resumes are found where the tests stored them.
    from tests.support import timer_process

    asyncio.run(timer_process.serve(sys.argv[1], Path(sys.argv[2])))
