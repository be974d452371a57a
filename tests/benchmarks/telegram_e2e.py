"""Telegram end to end: webhook updates/s and turn latency with many chats playing the guessbot.

    .venv/bin/python tests/benchmarks/telegram_e2e.py [--chats 100] [--turns 20] [--rounds 1]

This process runs the fake Bot API and the players; each bot runs in a process of its own:
convoflow (`bots/guessbot.py` behind the Telegram channel, as `convoflow run` serves it) on the
memory and SQLite stores, and the same game written with aiogram 3 (its FSM, memory storage, its
own aiohttp webhook handler; installed into `.bench-venv/`, never a convoflow dependency). A raw
aiohttp bot (no framework, state in a dict) shows the harness's own ceiling. A turn is one update
posted to the webhook, timed until the fake API received that turn's last reply (convoflow answers
the webhook once the turn has committed, the others once they have handled it). Flood limits are off on both sides (the fake API has
none; aiogram has no limiter); logging is at WARNING on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from tests.support.fake_telegram import TOKEN, Call, FakeTelegram, private_chat  # noqa: E402

SECRET = "bench-Secret_1"
BENCH_VENV = ROOT / ".bench-venv"
AIOGRAM = "aiogram>=3,<4"
TERMINAL = ("Your guess?", "You got it")
FLOOD_LIMITS_OFF = dict(overall_max_rate=0, group_max_rate=0)
"""convoflow's TelegramOptions here: PTB's AIORateLimiter stays in the send path (it still waits out
a 429 RetryAfter, which the fake never sends) but limits no rate, as aiogram, which has no limiter."""
UPDATE_IDS = iter(range(1, 10**9))
"""Update ids, unique across runs (a store that outlives a run would take repeats as redeliveries)."""


# --- the bots under test (each in its own process) -----------------------------------------------


async def serve_convoflow(store_url: str, port: int, api_url: str) -> None:
    """What `convoflow run bots/guessbot.py --channel telegram` runs, with flood limits off."""
    import logging

    from prometheus_client import CollectorRegistry

    from convoflow.adapters.host.loader import load_bot
    from convoflow.adapters.host.metrics import MeteredStore, Metrics
    from convoflow.adapters.host.serve import serve
    from convoflow.adapters.telegram.channel import TelegramChannel, TelegramOptions
    from convoflow.turn_runner import TurnRunner
    from convoflow.turns import Engine
    from convoflow.stores import open_store

    logging.basicConfig(level=logging.WARNING)
    bot = load_bot("bots/guessbot.py")
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    opened = open_store(store_url)
    store = MeteredStore(opened, metrics)
    engine = Engine(bot.dialog, store, bot.fallback, app=bot.app, on_turn=metrics.on_turn)
    channel = TelegramChannel(TurnRunner(engine), TOKEN, webhook_secret=SECRET, webhook_url="https://bench.example.org/telegram/webhook",
                              api_url=api_url, options=TelegramOptions(**FLOOD_LIMITS_OFF))
    await serve([channel], store, registry, "127.0.0.1", port)


async def serve_raw(port: int, api_url: str) -> None:
    """The harness's ceiling: no framework, no persistence, replies posted over one aiohttp session."""
    games: dict[int, dict[str, int]] = {}
    http = aiohttp.ClientSession()
    await (await http.post(f"{api_url}/bot{TOKEN}/setWebhook", data={"url": "https://bench.example.org/raw"})).release()

    async def send(chat: int, text: str) -> None:
        async with http.post(f"{api_url}/bot{TOKEN}/sendMessage", data={"chat_id": str(chat), "text": text}) as response:
            await response.read()

    async def webhook(request: web.Request) -> web.Response:
        message = json.loads(await request.read())["message"]
        chat, text = message["chat"]["id"], message.get("text", "")
        game = games.get(chat)
        if game is None or text == "/start":
            games[chat] = {"secret": random.randint(1, 10), "guesses": 0}
            await send(chat, "Guess a number between 1 and 10.")
            await send(chat, "Your guess?")
        elif not text.isdigit():
            await send(chat, "Numbers only, please.")
        else:
            game["guesses"] += 1
            if int(text) == game["secret"]:
                del games[chat]
                await send(chat, f"You got it in {game['guesses']} guesses! Send anything to play again.")
            else:
                await send(chat, "Higher!" if int(text) < game["secret"] else "Lower!")
                await send(chat, "Your guess?")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    await http.close()


# --- the players ---------------------------------------------------------------------------------


@dataclass
class Contestant:
    name: str
    command: list[str]
    path: str
    port: int = 0


@dataclass
class Result:
    name: str
    turns: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    cpu_seconds: float = float("nan")
    """CPU time the bot's process spent during the timed part (steadier than wall time on a busy machine)."""

    @property
    def per_second(self) -> float:
        return self.turns / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


class Players:
    """`chats` users playing the guessbot at once, each posting `turns` updates one after another."""

    def __init__(self, fake: FakeTelegram, url: str, chats: int, turns: int) -> None:
        self.url, self.chats, self.turns = url, chats, turns
        self.inbox: dict[int, list[str]] = {}
        self.waiting: dict[int, asyncio.Future[None]] = {}
        fake.listeners.append(self.received)

    def received(self, call: Call) -> None:
        chat, text = call.params["chat_id"], call.params.get("text", "")
        self.inbox.setdefault(chat, []).append(text)
        waiter = self.waiting.get(chat)
        if text.startswith(TERMINAL) and waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, name: str, pid: int) -> Result:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            # Warm up first (lazy imports, schema building, first connections), in chats of their own.
            warm = self.turns
            self.turns = 5
            await asyncio.gather(*(self.play(http, 20_000_000 + n) for n in range(10)))
            self.turns = warm
            started, cpu = time.perf_counter(), cpu_seconds(pid)
            latencies = await asyncio.gather(*(self.play(http, 10_000_000 + n) for n in range(self.chats)))
            seconds, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
        return Result(name, self.chats * self.turns, seconds, [t for chat in latencies for t in chat], cpu)

    async def play(self, http: aiohttp.ClientSession, chat_id: int) -> list[float]:
        latencies: list[float] = []
        low, high, text = 1, 10, "/start"
        for _ in range(self.turns):
            self.inbox[chat_id] = []
            waiter = self.waiting[chat_id] = asyncio.get_running_loop().create_future()
            update = {"update_id": next(UPDATE_IDS), "message": {
                "message_id": len(latencies) + 1, "date": int(time.time()), "text": text,
                "chat": private_chat(chat_id), "from": {"id": chat_id, "is_bot": False, "first_name": "Ann"}}}
            began = time.perf_counter()
            async with http.post(self.url, data=json.dumps(update), headers={
                    "X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}) as response:
                if response.status != 200:
                    raise RuntimeError(f"webhook answered {response.status}: {await response.text()}")
            await asyncio.wait_for(waiter, 30)
            latencies.append(time.perf_counter() - began)
            answer = self.inbox[chat_id]
            if answer[-1].startswith("You got it"):
                low, high, text = 1, 10, "again"
                continue
            if answer[0] == "Higher!":
                low = int(text) + 1
            elif answer[0] == "Lower!":
                high = int(text) - 1
            text = str((low + high) // 2)
        return latencies


async def start_bot(contestant: Contestant, fake: FakeTelegram) -> subprocess.Popen[bytes]:
    registered = len(fake.of("setWebhook"))
    process = subprocess.Popen(contestant.command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(fake.of("setWebhook")) == registered:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{contestant.name} did not start: {process.stderr.read().decode() if process.stderr else ''}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # the webhook route is served before setWebhook; let start-up settle
    return process


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_bot(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def ensure_bench_venv() -> Path:
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        print(f"installing {AIOGRAM} into {BENCH_VENV.relative_to(ROOT)}/ ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import aiogram"], capture_output=True)
    if check.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", AIOGRAM], check=True)
    return python


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def bench(args: argparse.Namespace) -> None:
    fake = await FakeTelegram().start()
    fake.record = False
    fake.calls = []
    db = Path(tempfile.mkdtemp()) / "bench.db"
    me = [sys.executable, str(Path(__file__).resolve())]
    aiogram_python = ensure_bench_venv()
    contestants = [
        Contestant("convoflow, memory store", [*me, "--serve", "memory://"], "/telegram/webhook"),
        Contestant("convoflow, SQLite store", [*me, "--serve", f"sqlite:///{db}"], "/telegram/webhook"),
        Contestant("aiogram 3 FSM, memory storage",
                   [str(aiogram_python), str(ROOT / "tests" / "benchmarks" / "aiogram_guessbot.py"),
                    "--token", TOKEN, "--secret", SECRET], "/webhook"),
        Contestant("raw aiohttp, no framework (ceiling)", [*me, "--serve-raw"], "/webhook"),
    ]
    results: list[Result] = []
    for round_ in range(args.rounds):
        for contestant in contestants:
            contestant.port = free_port()
            command = [*contestant.command, "--port", str(contestant.port), "--api", fake.url]
            fake.record = True  # only setWebhook calls are kept, to see the bot start
            process = await start_bot(Contestant(contestant.name, command, contestant.path), fake)
            fake.record = False
            try:
                players = Players(fake, f"http://127.0.0.1:{contestant.port}{contestant.path}", args.chats, args.turns)
                result = await players.run(contestant.name, process.pid)
            finally:
                fake.listeners.clear()
                stop_bot(process)
            results.append(result)
            print(f"round {round_ + 1}: {result.name}: {result.per_second:,.0f} turns/s, "
                  f"{result.cpu_seconds / result.turns * 1000:.2f} ms CPU per turn", flush=True)
    await fake.close()

    print()
    print(f"Telegram webhook end to end: {args.chats} chats x {args.turns} turns, {os.cpu_count()} cores, "
          f"best of {args.rounds} round(s); convoflow's flood limits off ({FLOOD_LIMITS_OFF}), as aiogram has none")
    print(f"{'bot':<38} {'turns/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs aiogram':>11} {'CPU ms/turn':>12}")
    best: dict[str, Result] = {}
    for result in results:
        if result.name not in best or result.per_second > best[result.name].per_second:
            best[result.name] = result
    aiogram = best[contestants[2].name].per_second
    for contestant in contestants:
        r = best[contestant.name]
        print(f"{r.name:<38} {r.per_second:>9,.0f} {r.percentile(50):>8.1f} {r.percentile(99):>8.1f} "
              f"{r.per_second / aiogram:>10.2f}x {r.cpu_seconds / r.turns * 1000:>12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--serve", metavar="STORE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--api", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_convoflow(args.serve, args.port, args.api))
    elif args.serve_raw:
        asyncio.run(serve_raw(args.port, args.api))
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
