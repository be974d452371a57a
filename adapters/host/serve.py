"""Run channels behind the HTTP server until SIGTERM/SIGINT, then shut down gracefully:
stop taking updates, let turns in flight finish and deliver, close the store. A second signal
exits at once. Meanwhile, replies left waiting in outboxes (their process died between commit and
delivery, or the platform was down) are swept up and delivered through their channel, and the
timers of the served channels' sessions fire (convoflow.scheduler), their replies routed likewise."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Callable, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry

from convoflow.adapters.channel import Channel, router
from convoflow.adapters.host.app import Readiness, make_app
from convoflow.adapters.webhooks import Unhandled
from convoflow.delivery import Route
from convoflow.messages import Reply, SessionKey
from convoflow.scheduler import Scheduler
from convoflow.stores.base import Store, StoreError
from convoflow.turns import Engine

log = logging.getLogger("convoflow.server")

SHUTDOWN_SECONDS = 25.0
"""How long turns in flight may take to finish after SIGTERM (below Kubernetes' default 30 s)."""
SWEEP_SECONDS = 30.0
"""How often waiting replies are looked for (they wait at least the Engine's handoff time first)."""


class ListenFailed(Exception):
    """The HTTP server could not listen on the address and port it was given."""


async def serve(
    channels: Sequence[Channel],
    store: Store,
    registry: CollectorRegistry,
    host: str = "0.0.0.0",
    port: int = 8080,
    stop: asyncio.Event | None = None,
    engine: Engine | None = None,
    sweep_seconds: float = SWEEP_SECONDS,
    on_unhandled: Callable[[Unhandled], None] | None = None,
    routes: Sequence[web.RouteDef] = (),
) -> None:
    """Serve until `stop` is set or a signal comes. With `engine`, its replies left waiting are
    delivered every `sweep_seconds` (and once at start, after a crash), each through the channel
    its address names, and its sessions' timers fire (those of the channels served here). `routes`
    are served besides the channels'."""
    stop = stop or asyncio.Event()
    readiness = Readiness(store)
    runner = web.AppRunner(make_app(channels, registry, readiness, on_unhandled, routes), shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:  # the port is taken, the address is not this host's, ...
        await runner.cleanup()
        raise ListenFailed(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
    log.info("listening on %s:%d for %s", host, port, ", ".join(c.name for c in channels))
    _on_signals(stop)
    started: list[Channel] = []
    sweeper: asyncio.Task[None] | None = None
    timers: asyncio.Task[None] | None = None
    try:
        for channel in channels:
            await channel.start()
            started.append(channel)
        readiness.started = True
        if engine is not None:
            sweeper = asyncio.create_task(_sweep(engine, router(started), sweep_seconds), name="outbox-sweep")
            timers = asyncio.create_task(scheduler_for(engine, started).run(), name="timers")
        await stop.wait()
        log.info("shutting down: no new updates; finishing turns in flight")
    finally:
        readiness.started = False
        for task in (timers, sweeper):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        # Stop listening and let the requests in flight be answered first, then stop the channels
        # (polling, sockets; each lets the turns in flight finish delivering), then the store.
        await runner.cleanup()
        for channel in reversed(started):
            await channel.stop()
        await store.close()
        log.info("stopped")


def scheduler_for(engine: Engine, channels: Sequence[Channel], only: SessionKey | None = None) -> Scheduler:
    """The Scheduler firing the timers of the sessions of `channels` (a session's key starts with
    its channel's name), or of the one session `only`, each reply sent by the channel its address
    names."""
    route = router(channels)
    names = {channel.name for channel in channels}

    async def send(reply: Reply) -> None:
        deliver = route(reply)
        if deliver is None:  # kept in the outbox for a process that serves its channel
            raise LookupError(f"no {reply.channel!r} channel in this process for reply {reply.seq} of {reply.key}")
        await deliver(reply)

    if only is not None:
        return Scheduler(engine, send, wanted=lambda key: key == only)
    return Scheduler(engine, send, wanted=lambda key: key.partition.partition(":")[0] in names)


async def _sweep(engine: Engine, route: Route, every: float) -> None:
    while True:
        try:
            await engine.redeliver_waiting(route)
        except StoreError as error:
            log.warning("could not look for waiting replies: %s", error)
        except Exception:  # noqa: BLE001 - the sweep must outlive any one failure
            log.exception("sweeping waiting replies failed")
        await asyncio.sleep(every)


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def first() -> None:
        if stop.is_set():
            log.warning("second signal: exiting now")
            os._exit(1)
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, first)
