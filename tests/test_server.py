"""The shared HTTP server: health, readiness, metrics, body limit, graceful stop."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from convoflow.adapters.host.serve import serve
from convoflow.adapters.host.app import MAX_BODY_BYTES
from convoflow import Incoming, Reply, SessionKey, Text, dialog, get_client_response, send_message
from convoflow.delivery import DeliveryFailed
from convoflow.turns import Engine
from convoflow.stores import MemoryStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RecordingChannel:
    """A channel with one route whose handler takes a while, to observe shutdown."""

    name = "recording"

    def __init__(self) -> None:
        self.events: list[str] = []
        self.release = asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        async def slow(request: web.Request) -> web.Response:
            await request.read()
            self.events.append("request in")
            await self.release.wait()
            self.events.append("request done")
            return web.Response(text="done")

        return [web.post("/recording", slow)]

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")

    async def send(self, reply: Reply) -> None:
        raise AssertionError("nothing to deliver here")


class ClosableStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.down = False

    async def load(self, key):  # type: ignore[no-untyped-def]
        if self.down:
            raise ConnectionError("store down")
        return await super().load(key)

    async def close(self) -> None:
        self.closed = True


async def test_health_readiness_metrics_and_graceful_stop() -> None:
    port = free_port()
    channel, store, stop = RecordingChannel(), ClosableStore(), asyncio.Event()
    server = asyncio.create_task(serve([channel], store, CollectorRegistry(), "127.0.0.1", port, stop))
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(f"{base}/healthz?ready=1") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.02)
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
            assert (await response.json())["channels"] == ["recording"]
        store.down = True
        async with http.get(f"{base}/healthz?ready=1") as response:
            assert response.status == 503
            assert (await response.json())["reason"] == "store unreachable: ConnectionError"
        store.down = False
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200
            assert response.content_type == "text/plain"
        async with http.post(f"{base}/recording", data=b"x" * (MAX_BODY_BYTES + 1)) as response:
            assert response.status == 413

        in_flight = asyncio.create_task(http.post(f"{base}/recording", data=b"{}"))
        while "request in" not in channel.events:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.sleep(0.05)
        assert not server.done()  # still finishing the request in flight
        channel.release.set()
        response = await in_flight
        assert response.status == 200 and await response.text() == "done"
        await asyncio.wait_for(server, 10)
    assert channel.events == ["start", "request in", "request done", "stop"]
    assert store.closed


@dialog()
def echo():
    while True:
        said = yield get_client_response()
        yield send_message(f"echo {said}")


class OutletChannel:
    """A channel without routes; records what it delivers."""

    name = "outlet"

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.got_one = asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, reply: Reply) -> None:
        assert isinstance(reply.message, Text) and reply.key is not None
        self.delivered.append(f"{reply.key.partition} {reply.address}: {reply.message.text}")
        self.got_one.set()


async def test_replies_left_waiting_are_swept_up_and_delivered_through_their_channel() -> None:
    """The sweep routes each reply by its address: the channel it names (`via`), or, for addresses
    stored before they named one, the first part of the partition."""
    store = MemoryStore()
    crashed = Engine(echo, store)  # commits, then its delivery fails (as if it died)

    async def unreachable(reply: Reply) -> None:
        raise ConnectionError("platform down")

    addressed = {"outlet:1": {}, "elsewhere:2": {}, "web:3": {"via": "outlet", "to": 3}, "outlet:4": {"via": "elsewhere"}}
    for partition, address in addressed.items():
        await crashed.handle(Incoming(SessionKey(partition, "echo"), "u0", text="start", address=address))
        try:
            await crashed.handle(Incoming(SessionKey(partition, "echo"), "u1", text="hello", address=address), unreachable)
        except DeliveryFailed:
            pass

    channel, stop = OutletChannel(), asyncio.Event()
    engine = Engine(echo, store, handoff_seconds=0.05)  # the replica that started after the crash
    server = asyncio.create_task(
        serve([channel], store, CollectorRegistry(), "127.0.0.1", free_port(), stop, engine=engine, sweep_seconds=0.05)
    )
    while len(channel.delivered) < 2:
        await asyncio.wait_for(channel.got_one.wait(), 10)
        channel.got_one.clear()
    await asyncio.sleep(0.2)  # more sweeps: nothing is sent twice
    stop.set()
    await asyncio.wait_for(server, 10)
    assert sorted(channel.delivered) == ["outlet:1 {}: echo hello", "web:3 {'via': 'outlet', 'to': 3}: echo hello"]
    for partition in ("elsewhere:2", "outlet:4"):
        left = await store.load(SessionKey(partition, "echo"))
        assert left is not None and len(left.outbox) == 1  # no channel here for it: left alone
