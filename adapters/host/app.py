"""The one aiohttp application: every channel's webhook routes plus /healthz and /metrics (and the
API's routes, when it has a token)."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from convoflow.adapters.channel import Channel
from convoflow.adapters.webhooks import Unhandled, UnhandledResponse
from convoflow.messages import SessionKey
from convoflow.stores.base import Store

PROBE_KEY = SessionKey("healthz", "probe")
PROBE_SECONDS = 2.0


class Readiness:
    """Ready when every channel has started and the store answers a read."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self.started = False

    async def check(self) -> str | None:
        """None when ready, else why not."""
        if not self.started:
            return "channels not started"
        if self.store is not None:
            try:
                await asyncio.wait_for(self.store.load(PROBE_KEY), PROBE_SECONDS)
            except Exception as error:  # noqa: BLE001 - any failure means "not ready"
                return f"store unreachable: {type(error).__name__}"
        return None

MAX_BODY_BYTES = 1024 * 1024
"""Webhook bodies above this are refused with 413 (platform updates are far smaller)."""


def make_app(
    channels: Sequence[Channel], registry: CollectorRegistry = REGISTRY, readiness: Readiness | None = None,
    on_unhandled: Callable[[Unhandled], None] | None = None, routes: Sequence[web.RouteDef] = (),
) -> web.Application:
    """`/healthz` answers 200 while the process serves (liveness); `/healthz?ready=1` answers 503
    until the channels have started and whenever the store does not answer (readiness).
    `on_unhandled` hears of every update a channel acknowledged without handling it. `routes` are
    served besides the channels' (the API for the outside world, convoflow.adapters.host.api)."""

    @web.middleware
    async def count_unhandled(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        if on_unhandled is not None and isinstance(response, UnhandledResponse):
            on_unhandled(response.unhandled)
        return response

    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[count_unhandled])

    async def healthz(request: web.Request) -> web.Response:
        names = [c.name for c in channels]
        if "ready" in request.query and readiness is not None:
            problem = await readiness.check()
            if problem is not None:
                return web.json_response({"status": "unavailable", "reason": problem, "channels": names}, status=503)
        return web.json_response({"status": "ok", "channels": names})

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    for channel in channels:
        app.router.add_routes(channel.routes())
        closing = getattr(channel, "closing", None)  # a channel holding requests open (web streams) ends them
        if callable(closing):
            app.on_shutdown.append(_on_shutdown(closing))
    app.router.add_routes(routes)
    return app


def _on_shutdown(closing: Callable[[], None]) -> Callable[[web.Application], Awaitable[None]]:
    async def shutdown(_: web.Application) -> None:
        closing()

    return shutdown
