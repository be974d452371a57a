"""Slack end to end: 100 concurrent DMs playing the guessbot against `convoflow run
bots/guessbot.py --channel slack` (its own process: slack-bolt behind the aiohttp server), fed
signed Events API requests over loopback HTTP, replying to a fake Web API in this process; on the
memory and SQLite stores.

Phases, for each store:
- games: every DM plays 3 games by bisection, each message sent when the previous turn's replies
  have arrived (a person waiting for the bot);
- burst: every DM sends 10 messages as fast as they are acknowledged, while each Web API call takes
  100 ms (Slack's own are tens of milliseconds), so turns queue up behind each other.

Acknowledgement latency is the HTTP round trip of one event (Slack's deadline is 3 s); turn latency
is from sending an event to its last reply reaching the fake Slack; CPU/event is the convoflow
process's CPU time (ms) per event, a figure the shared machine's noise moves less than latency.

    .venv/bin/python tests/benchmarks/slack_e2e.py
    SLACK_E2E_STORES=memory .venv/bin/python tests/benchmarks/slack_e2e.py   # one store only
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp  # noqa: E402

from tests.support.fake_slack import FakeSlack  # noqa: E402
from tests.support.mongo_server import free_port  # noqa: E402
from tests.support.readiness import until_ready  # noqa: E402
from tests.support.slack_harness import SlackApp  # noqa: E402
from tests.support.slack_payloads import SIGNING_SECRET, dm  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

DMS = 100
GAMES = 3
BURST = 10
BURST_API_LATENCY = 0.1


@dataclass
class Figures:
    acks: list[float] = field(default_factory=list)
    openings: list[float] = field(default_factory=list)
    """The acknowledgements of the games' first events, the 100 DMs' "hi" sent all at once."""
    turns: list[float] = field(default_factory=list)
    events: int = 0
    seconds: float = 0.0
    cpu: float = float("nan")
    """CPU seconds the convoflow process spent in the phase (Linux: /proc), startup excluded."""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def send(app: SlackApp, figures: Figures, channel: str, text: str, opening: bool = False) -> float:
    started = time.perf_counter()
    reply = await app.send(dm(text, channel=channel, user=f"W{channel}"))
    assert reply.status == 200, reply
    figures.acks.append(reply.seconds)
    if opening:
        figures.openings.append(reply.seconds)
    figures.events += 1
    return started


async def replies(app: SlackApp, channel: str, count: int) -> list[str]:
    return [c.params["text"] for c in await app.fake.next_posts(channel, count, timeout=60)]


async def play(app: SlackApp, figures: Figures, channel: str) -> None:
    started = await send(app, figures, channel, "hi", opening=True)
    await replies(app, channel, 2)
    figures.turns.append(time.perf_counter() - started)
    for game in range(GAMES):
        low, high = 1, 10
        while True:
            n = (low + high) // 2
            started = await send(app, figures, channel, str(n))
            [first] = await replies(app, channel, 1)
            if first.startswith("You got it"):
                figures.turns.append(time.perf_counter() - started)
                break
            await replies(app, channel, 1)
            figures.turns.append(time.perf_counter() - started)
            low, high = (n + 1, high) if first == "Higher!" else (low, n - 1)
        if game < GAMES - 1:
            started = await send(app, figures, channel, "again")
            await replies(app, channel, 2)
            figures.turns.append(time.perf_counter() - started)


async def burst(app: SlackApp, figures: Figures, channel: str) -> None:
    sent = [await send(app, figures, channel, "not a number") for _ in range(BURST)]
    for started in sent:  # one reply per message ("Numbers only, please."), in order
        await replies(app, channel, 1)
        figures.turns.append(time.perf_counter() - started)


async def phase(store_url: str, latency: float, run: object) -> Figures:
    fake = await FakeSlack(latency=latency).start()
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "convoflow.adapters.host.cli", "run", "bots/guessbot.py", "--channel", "slack", "--store", store_url,
        "--host", "127.0.0.1", "--log-level", "WARNING", cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PORT": str(port), "SLACK_BOT_TOKEN": fake.teams[0].bot_token,
             "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake.api_url},
    )
    figures = Figures()
    try:
        async with aiohttp.ClientSession() as http:
            app = SlackApp(fake, None, f"http://127.0.0.1:{port}", http)  # type: ignore[arg-type]
            await ready(http, app.base_url, server)
            if run is burst:  # every DM's game started first, so the burst measures turns only
                await asyncio.gather(*[play_opening(app, f"D{n:04d}") for n in range(DMS)])
            started, cpu_before = time.perf_counter(), cpu_seconds(server.pid)
            await asyncio.gather(*[run(app, figures, f"D{n:04d}") for n in range(DMS)])  # type: ignore[operator]
            figures.seconds = time.perf_counter() - started
            figures.cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
        await server.wait()
        await fake.close()
    return figures


def cpu_seconds(pid: int) -> float:
    """User and system CPU of process `pid` so far (nan where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def ready(http: aiohttp.ClientSession, base_url: str, server: asyncio.subprocess.Process) -> None:
    await until_ready(http, base_url, lambda: None if server.returncode is None else
                      f"convoflow exited with {server.returncode} before it was ready")


async def play_opening(app: SlackApp, channel: str) -> None:
    await send(app, Figures(), channel, "hi")
    await replies(app, channel, 2)


async def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for store_name in os.environ.get("SLACK_E2E_STORES", "memory sqlite").split():
            for phase_name, latency, run in (("games", 0.0, play), ("burst", BURST_API_LATENCY, burst)):
                url = "memory://" if store_name == "memory" else f"sqlite:///{Path(folder) / f'{phase_name}.db'}"
                figures = await phase(url, latency, run)
                rows.append((store_name, phase_name, latency, figures))
                print(f"  {store_name}/{phase_name} done: {figures.events} events in {figures.seconds:.1f}s", file=sys.stderr)

    ms = 1000.0
    header = (f"{'store':<7} {'phase':<6} {'API ms':>6} {'events':>6} {'events/s':>8} {'ack p50':>8} {'ack p99':>8} "
              f"{'ack max':>8} {'turn p50':>9} {'turn p99':>9} {'CPU/event':>9}")
    print(f"Slack e2e: {DMS} concurrent DMs, guessbot, loopback HTTP (latencies in ms)")
    print(header)
    print("-" * len(header))
    for store_name, phase_name, latency, f in rows:
        print(f"{store_name:<7} {phase_name:<6} {latency * ms:>6.0f} {f.events:>6} {f.events / f.seconds:>8.0f} "
              f"{percentile(f.acks, 50) * ms:>8.1f} {percentile(f.acks, 99) * ms:>8.1f} {max(f.acks) * ms:>8.1f} "
              f"{percentile(f.turns, 50) * ms:>9.1f} {percentile(f.turns, 99) * ms:>9.1f} {f.cpu / f.events * ms:>9.2f}")
    for store_name, phase_name, _, f in rows:
        if f.openings:
            later = sorted(f.acks)
            for opening in f.openings:
                later.remove(opening)
            print(f"{store_name}/{phase_name}: the {len(f.openings)} opening events, sent at once, acknowledged within "
                  f"{max(f.openings) * ms:.0f} ms ({max(f.openings) / len(f.openings) * ms:.2f} ms per event); "
                  f"the other {len(later)} events' ack p50 {percentile(later, 50) * ms:.1f} ms, "
                  f"p99 {percentile(later, 99) * ms:.1f} ms")
    worst = max(max(f.acks) for *_, f in rows)
    print(f"slowest acknowledgement: {worst * ms:.0f} ms = {worst / 3.0:.1%} of Slack's 3 s deadline; "
          f"mean turn {statistics.mean(t for *_, f in rows for t in f.turns) * ms:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
