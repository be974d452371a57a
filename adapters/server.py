"""The one aiohttp application: every channel's webhook routes plus /healthz and /metrics."""

from __future__ import annotations

from typing import Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from adapters.channel import Channel

MAX_BODY_BYTES = 1024 * 1024
"""Webhook bodies above this are refused with 413 (platform updates are far smaller)."""


def make_app(channels: Sequence[Channel], registry: CollectorRegistry = REGISTRY) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "channels": [c.name for c in channels]})

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    for channel in channels:
        app.router.add_routes(channel.routes())
    return app
