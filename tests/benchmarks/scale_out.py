"""Scale-out: turns/s with 1, 2 and 3 `convoflow run` processes on one store.

    .venv/bin/python tests/benchmarks/scale_out.py [--telegram 200] [--slack 50] [--rounds 2] [--no-sqlite]

Each process is `convoflow run tests/support/numbered_guessbot.py --channel all` (Telegram webhook and
Slack Events API, logging at INFO as deployed), all behind a round-robin proxy in this process,
which also runs the fake Telegram and Slack APIs and the users: every Telegram chat and Slack DM
plays one game by bisection (about 4.4 messages a game), all at once; a new set of users per
round. A turn is timed from the user's message until its last reply reached the fake API.
Conflicts (commits that lost a race and were redone) and the turns by outcome come from each
process's /metrics; redeliveries are the platform's retries (Telegram: not answered 2xx; Slack:
not acknowledged within 3 s). The stores: the MongoDB test server (SecantusDB, or MONGODB_URI)
and one SQLite file shared by the processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.fake_slack import FakeSlack  # noqa: E402
from tests.support.fake_telegram import FakeTelegram  # noqa: E402
from tests.support.mongo_server import MongoServer, mongo_server_from_environment  # noqa: E402
from tests.support.scale_harness import Platforms, Proxy, fleet, metric_samples, play, total  # noqa: E402


@dataclass
class Result:
    store: str
    processes: int
    games: int
    completed: int
    turns: int
    seconds: float
    latencies: list[float]
    conflicts: float
    duplicates: float
    redeliveries: int
    failures: float

    def per_thousand(self, count: float) -> str:
        return f"{1000 * count / self.turns:.1f}" if self.turns else "-"

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


async def measure(store: str, store_url: str, processes: int, telegram_chats: int, slack_dms: int,
                  rounds: int, log_dir: Path) -> Result:
    telegram, slack = await FakeTelegram().start(), await FakeSlack().start()
    telegram.record = False  # the listeners see every send; no need to keep them all
    bots = fleet(processes, telegram, slack, store_url, log_dir)
    proxy = await Proxy([bot.url for bot in bots]).start()
    platforms = Platforms(telegram, slack, proxy.url)
    try:
        await asyncio.gather(*(bot.start() for bot in bots))
        conversations = []
        started = time.perf_counter()
        for round_number in range(rounds):
            base = 100_000 * (round_number + 1)
            players = [platforms.telegram_chat(base + n) for n in range(telegram_chats)]
            players += [platforms.slack_dm(base + n) for n in range(slack_dms)]
            conversations += players
            await asyncio.gather(*(play(c, platforms) for c in players))
        seconds = time.perf_counter() - started
        samples = [await metric_samples(bot) for bot in bots]
    finally:
        for bot in bots:
            await bot.stop()
        await platforms.close()
        await proxy.close()
        await telegram.close()
        await slack.close()
    return Result(
        store=store, processes=processes, games=len(conversations),
        completed=sum(c.finished for c in conversations),
        turns=sum(c.turns for c in conversations), seconds=seconds,
        latencies=[t for c in conversations for t in c.latencies],
        conflicts=sum(total(s, "convoflow_store_conflicts_total") for s in samples),
        duplicates=sum(total(s, "convoflow_duplicate_updates_total") for s in samples),
        redeliveries=sum(c.redeliveries for c in conversations),
        failures=sum(total(s, "convoflow_turn_failures_total") for s in samples),
    )


def table(results: list[Result]) -> str:
    header = ("store", "processes", "games done", "turns", "turns/s", "vs 1", "p50 ms", "p99 ms",
              "conflicts/1k", "redelivered/1k", "duplicates/1k", "failed/1k")
    rows = [header]
    for result in results:
        single = next(r for r in results if r.store == result.store and r.processes == 1)
        rate = result.turns / result.seconds
        rows.append((
            result.store, str(result.processes), f"{result.completed}/{result.games}", f"{result.turns:,}",
            f"{rate:,.0f}", f"{rate / (single.turns / single.seconds):.2f}x",
            f"{result.percentile(50) * 1000:,.0f}", f"{result.percentile(99) * 1000:,.0f}",
            result.per_thousand(result.conflicts), result.per_thousand(result.redeliveries),
            result.per_thousand(result.duplicates), result.per_thousand(result.failures),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--telegram", type=int, default=200, help="Telegram chats per round")
    parser.add_argument("--slack", type=int, default=50, help="Slack DMs per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-sqlite", action="store_true", help="MongoDB only")
    args = parser.parse_args()
    print(f"convoflow scale-out: {args.telegram} Telegram chats + {args.slack} Slack DMs per round, "
          f"{args.rounds} rounds, one game each, all at once")
    print(f"machine: {os.cpu_count()} cores, shared by the bot processes, the MongoDB test server and this "
          "process (proxy, fake APIs, users)")
    server: MongoServer = mongo_server_from_environment()
    print("MongoDB: " + ("the server of MONGODB_URI" if server.external_uri else
                         "SecantusDB (a MongoDB-compatible server written in Python) on the same cores") + "\n")
    results: list[Result] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            stores = [("mongodb", lambda n: server.uri_for(f"scale_bench_{n}_{uuid.uuid4().hex[:8]}"))]
            if not args.no_sqlite:
                stores.append(("sqlite", lambda n: f"sqlite:///{Path(tmp) / f'scale_{n}.db'}"))
            for name, url in stores:
                for processes in (1, 2, 3):
                    log_dir = Path(tmp) / f"{name}-{processes}"
                    log_dir.mkdir()
                    result = await measure(name, url(processes), processes, args.telegram, args.slack,
                                           args.rounds, log_dir)
                    results.append(result)
                    print(f"  {name}, {processes} processes: {result.turns / result.seconds:,.0f} turns/s",
                          flush=True)
    finally:
        server.stop()
    print()
    print(table(results))
    print("\nturns/s: users' messages handled per second, all processes together; p50/p99: one turn, message "
          "to last reply; per 1k turns: conflicts = commits redone after another process moved the session, "
          "redelivered = platform retries, duplicates = updates recognised as already handled, failed = turns "
          "that did not complete (store errors, undelivered replies).")


if __name__ == "__main__":
    asyncio.run(main())
