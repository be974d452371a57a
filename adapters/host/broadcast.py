"""`convoflow broadcast`: start one dialog for many users, resumably.

The users are the stored sessions of the bot under a partition prefix (`--to telegram:7`), or the
addresses of a file (`--file`, one `telegram:<chat>` or `slack:<team>:<user or channel>` a line).
Each start carries the id `broadcast:<id>:<session key>`, so Engine.start processes it once: a
broadcast killed and run again with the same `--id` skips everyone it reached. The one repeat is
a message sent just as the process died, before it was marked delivered: the re-run sends it again.

Replies go through each channel's own sending, so its flood limits hold (python-telegram-bot's
rate limiter, Slack's rate-limit retries); a few starts run at once. A progress bar shows on a
terminal (only when stderr is one); the summary at the end counts started, skipped (running a
conversation already, or reached before), blocked (the channel refused for good: a user who
blocked the bot) and failed.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from convoflow.adapters.channel import BadAddress
from convoflow.adapters.host.loader import Bot
from convoflow.adapters.host.starts import CONCURRENCY, ChannelsFor, Starter, connected, engine_of
from convoflow.dialogs import BaseDialog
from convoflow.messages import SessionKey
from convoflow.stores.base import Store, StoreError
from convoflow.turn_runner import TurnRunner
from convoflow.types import JSON
from convoflow.wakeups import IfRunning

log = logging.getLogger("convoflow.broadcast")

LISTED_AT_MOST = 10_000_000
SUMMARY_OF = {"started": "started", "replaced": "started", "queued": "started", "skipped": "skipped",
              "duplicate": "skipped", "blocked": "blocked", "failed": "failed"}


@dataclass(frozen=True)
class Target:
    """One recipient: a stored session (key and address), or an address to open."""

    to: str
    key: SessionKey | None = None
    address: dict[str, JSON] | None = None


def file_targets(path: Path) -> list[Target]:
    """The addresses of a file, one a line; blank lines and `#` comments are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--file {path}: cannot be read ({error})") from None
    found = [line.split("#", 1)[0].strip() for line in lines]
    return [Target(line) for line in dict.fromkeys(found) if line]


async def stored_targets(starter: Starter, prefix: str) -> list[Target]:
    """The bot's stored sessions in partition `prefix` and under it, each to its stored address."""
    sessions = await starter.engine.store.list_sessions(prefix, limit=LISTED_AT_MOST)
    return [Target(s.key.partition, s.key, dict(s.address)) for s in sessions
            if s.key.app == starter.engine.app and s.address]


class Progress:
    """`[#####.....] 50/100` on a terminal, redrawn in place; nothing elsewhere."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.stream, self.done = total, stream, 0
        self.shown = stream.isatty()

    def step(self) -> None:
        self.done += 1
        if self.shown:
            filled = 30 * self.done // max(self.total, 1)
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}")
            self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


async def broadcast(starter: Starter, targets: list[Target], dialog: BaseDialog[Any] | None, broadcast_id: str,
                    if_running: IfRunning = "skip", concurrency: int = CONCURRENCY,
                    progress: Progress | None = None) -> Counter[str]:
    """Start `dialog` for every target; the summary's counts (started, skipped, blocked, failed)."""
    summary: Counter[str] = Counter({name: 0 for name in ("started", "skipped", "blocked", "failed")})
    queue: asyncio.Queue[Target] = asyncio.Queue()
    for target in targets:
        queue.put_nowait(target)

    async def worker() -> None:
        while not queue.empty():
            target = queue.get_nowait()
            summary[await _one(starter, target, dialog, broadcast_id, if_running)] += 1
            if progress is not None:
                progress.step()

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    if progress is not None:
        progress.close()
    return summary


async def _one(starter: Starter, target: Target, dialog: BaseDialog[Any] | None, broadcast_id: str,
               if_running: IfRunning) -> str:
    try:
        if target.key is not None and target.address is not None:
            started = await starter.start_at(target.key, target.address, dialog, _start_id(broadcast_id, target.key),
                                             if_running)
        else:
            started = await starter.start(target.to, dialog, lambda key: _start_id(broadcast_id, key), if_running)
    except BadAddress as error:
        log.warning("%s", error)
        return "failed"
    except StoreError as error:
        log.warning("%s: not started, the store failed (%s); run the broadcast again", target.to, error)
        return "failed"
    except Exception as error:  # noqa: BLE001 - one recipient's failure (the platform, the dialog) is counted
        log.warning("%s: not started (%s: %s); run the broadcast again", target.to, type(error).__name__, error)
        return "failed"
    return SUMMARY_OF[started.status]


def _start_id(broadcast_id: str, key: SessionKey) -> str:
    return f"broadcast:{broadcast_id}:{key}"


def summary_line(broadcast_id: str, summary: Counter[str]) -> str:
    return (f"broadcast {broadcast_id}: {summary['started']} started, {summary['skipped']} skipped, "
            f"{summary['blocked']} blocked, {summary['failed']} failed")


async def broadcast_command(bot: Bot, store: Store, channels_for: ChannelsFor, dialog: str, args: list[JSON],
                            prefix: str | None, file: Path | None, broadcast_id: str, if_running: IfRunning,
                            concurrency: int) -> int:
    """Run the broadcast; prints its summary line. Exit 0 when none failed, else 1."""
    engine = engine_of(bot, store)
    starter = Starter(engine, (), bot.dialogs)
    call = starter.dialog(dialog, args)
    targets = file_targets(file) if file is not None else await stored_targets(starter, prefix or "")
    names = sorted({target.to.partition(":")[0] for target in targets})
    async with connected(channels_for(TurnRunner(engine), names)) as ready:
        summary = await broadcast(Starter(engine, ready, bot.dialogs), targets, call, broadcast_id, if_running,
                                  concurrency, Progress(len(targets)))
    print(summary_line(broadcast_id, summary))
    return 1 if summary["failed"] else 0
