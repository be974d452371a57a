"""Run channels behind the HTTP server until SIGTERM/SIGINT, then shut down gracefully:
stop taking updates, let turns in flight finish and deliver, close the store. A second signal
exits at once."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry

from adapters.channel import Channel
from adapters.server import Readiness, make_app
from engine.stores.base import Store

log = logging.getLogger("convoflow.server")

SHUTDOWN_SECONDS = 25.0
"""How long turns in flight may take to finish after SIGTERM (below Kubernetes' default 30 s)."""


async def serve(
    channels: Sequence[Channel],
    store: Store,
    registry: CollectorRegistry,
    host: str = "0.0.0.0",
    port: int = 8080,
    stop: asyncio.Event | None = None,
) -> None:
    stop = stop or asyncio.Event()
    readiness = Readiness(store)
    runner = web.AppRunner(make_app(channels, registry, readiness), shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("listening on %s:%d for %s", host, port, ", ".join(c.name for c in channels))
    _on_signals(stop)
    started: list[Channel] = []
    try:
        for channel in channels:
            await channel.start()
            started.append(channel)
        readiness.started = True
        await stop.wait()
        log.info("shutting down: no new updates; finishing turns in flight")
    finally:
        readiness.started = False
        # Webhook turns run inside requests: stop listening and let those finish first, then
        # stop the channels (polling, sockets, acknowledged turns still running), then the store.
        await runner.cleanup()
        for channel in reversed(started):
            await channel.stop()
        await store.close()
        log.info("stopped")


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def first() -> None:
        if stop.is_set():
            log.warning("second signal: exiting now")
            os._exit(1)
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, first)
