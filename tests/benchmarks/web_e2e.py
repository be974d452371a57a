"""The web chat end to end: 100 concurrent visitors, each holding its event stream open, playing
tests/support/web_guessbot.py over `POST /web/messages`, against a server in its own process (the
host's aiohttp app with the web channel, the rate limit raised so it measures convoflow rather
than the limit); on the memory and SQLite stores, and on two SQLite replicas (posts to one, the
streams held by the other, so every push crosses the store).

Each visitor sends its next message when the previous one is answered (a person waiting for the
bot). messages/s counts answered posts; turn latency is a post's round trip (its turn committed and
its replies logged); push latency is from that answer to the turn's first reply arriving on the
visitor's stream (0 when the stream had it first, as it does when it is held by the same process:
there the push precedes the answer); stream latency is from sending a post to that reply's arrival
on the stream.

    .venv/bin/python tests/benchmarks/web_e2e.py
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp  # noqa: E402

from convoflow.adapters.web.channel import WebOptions  # noqa: E402
from convoflow.stores import open_store  # noqa: E402
from tests.support.mongo_server import free_port  # noqa: E402
from tests.support.readiness import until_ready  # noqa: E402

VISITORS = 100
MESSAGES = 20
OPTIONS = WebOptions(per_second=1000, burst=1000)


def serve(store_url: str, port: int) -> None:
    """The child process: the web channel on `store_url`, until killed."""
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from convoflow.adapters.host.app import make_app
    from convoflow.adapters.host.loader import load_bot
    from convoflow.adapters.web.channel import WebChannel
    from convoflow.turn_runner import TurnRunner
    from convoflow.turns import Engine
    from tests.support.web_harness import GUESSBOT, SECRET

    async def main() -> None:
        bot = load_bot(GUESSBOT)
        store = open_store(store_url)
        channel = WebChannel(TurnRunner(Engine(bot.dialog, store, app=bot.app)), store, SECRET, OPTIONS)
        runner = web.AppRunner(make_app([channel], CollectorRegistry()), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(main())


async def visitor(http: aiohttp.ClientSession, post_url: str, stream_url: str, turns: list[float],
                  pushes: list[float], streamed: list[float]) -> int:
    async with http.post(post_url + "/web/session", json={}) as response:
        token = (await response.json())["token"]
    arrived: dict[int, float] = {}
    wanted: dict[int, asyncio.Future[float]] = {}
    opened = asyncio.Event()

    async def follow() -> None:
        async with http.get(f"{stream_url}/web/stream?token={token}&after=0", timeout=aiohttp.ClientTimeout()) as stream:
            opened.set()
            async for raw in stream.content:
                line = raw.decode()
                if line.startswith("data: "):
                    seq = json.loads(line[6:])["seq"]
                    arrived[seq] = time.perf_counter()
                    if seq in wanted and not wanted[seq].done():
                        wanted[seq].set_result(arrived[seq])

    following = asyncio.create_task(follow())
    await opened.wait()
    answered = 0
    try:
        for number in range(MESSAGES):
            text = "/start" if number == 0 else str(1 + number % 10)
            sent = time.perf_counter()
            async with http.post(post_url + "/web/messages",
                                 json={"token": token, "text": text, "id": uuid.uuid4().hex}) as response:
                assert response.status == 200, await response.text()
                replies = (await response.json())["replies"]
            answered_at = time.perf_counter()
            turns.append(answered_at - sent)
            answered += 1
            first = replies[0]["seq"]
            if first not in arrived:
                wanted[first] = asyncio.get_running_loop().create_future()
                await asyncio.wait_for(wanted[first], 30)
            pushes.append(max(0.0, arrived[first] - answered_at))
            streamed.append(arrived[first] - sent)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
    return answered


async def measure(name: str, store_urls: list[str]) -> None:
    spawn = multiprocessing.get_context("spawn")
    ports = [free_port() for _ in store_urls]
    children = [spawn.Process(target=serve, args=(url, port), daemon=True) for url, port in zip(store_urls, ports)]
    for child in children:
        child.start()
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            for url in urls:
                await until_ready(http, url, path="/healthz")
            turns: list[float] = []
            pushes: list[float] = []
            streamed: list[float] = []
            started = time.perf_counter()
            counts = await asyncio.gather(*(visitor(http, urls[0], urls[-1], turns, pushes, streamed) for _ in range(VISITORS)))
            elapsed = time.perf_counter() - started
        figures = "   ".join(f"{what} p50 {cuts[49] * 1000:6.1f} ms p99 {cuts[98] * 1000:6.1f} ms" for what, cuts in (
            ("turn", statistics.quantiles(turns, n=100)), ("push", statistics.quantiles(pushes, n=100)),
            ("stream", statistics.quantiles(streamed, n=100))))
        print(f"{name:<30} {sum(counts) / elapsed:6.0f} messages/s   {figures}")
    finally:
        for child in children:
            child.kill()
            child.join()


async def main() -> None:
    print(f"web chat: {VISITORS} concurrent visitors x {MESSAGES} messages, each with its event stream open")
    with tempfile.TemporaryDirectory() as folder:
        await measure("memory", ["memory://"])
        await measure("sqlite", [f"sqlite:///{Path(folder) / 'web.db'}"])
        shared = f"sqlite:///{Path(folder) / 'shared.db'}"
        await measure(f"sqlite, 2 replicas ({OPTIONS.poll_seconds:g} s poll)", [shared, shared])


if __name__ == "__main__":
    asyncio.run(main())
