"""What keeps one visitor (or one site) from taking more than its share: a per-token rate limit,
and cross-origin access only for the origins the bot is configured to trust."""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from aiohttp import web

MAX_BUCKETS = 100_000
"""Visitors whose rate this process tracks at once (the least recently seen are forgotten)."""


class RateLimit:
    """A token bucket per session: `burst` requests at once, refilled at `per_second`. Per process:
    behind a load balancer each replica counts its own share."""

    def __init__(self, per_second: float, burst: int) -> None:
        if not (per_second > 0 and burst >= 1):
            raise ValueError("a rate limit needs per_second > 0 and burst >= 1")
        self.per_second, self.burst = per_second, burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, who: str, now: float | None = None) -> float | None:
        """Count one request of `who`: None when it may go ahead, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        tokens, then = self._buckets.pop(who, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.per_second)
        if tokens < 1:
            self._buckets[who] = (tokens, now)
            return (1 - tokens) / self.per_second
        self._buckets[who] = (tokens - 1, now)
        while len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        return None


def too_many(retry_after: float) -> web.Response:
    return web.json_response({"error": "too many requests", "retry_after": math.ceil(retry_after)},
                             status=429, headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


class Origins:
    """CORS for the configured origins only (`https://shop.example.com`); a request from any other
    origin gets no CORS headers, so browsers keep its page from reading the answer."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.allowed = frozenset(origin.rstrip("/") for origin in allowed)

    def headers(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if origin is None or origin not in self.allowed:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Expose-Headers": "Retry-After"}

    def preflight(self, request: web.Request) -> web.Response:
        found = self.headers(request)
        if not found:
            return web.Response(status=403, text="origin not allowed")
        return web.Response(status=204, headers={
            **found, "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, Last-Event-ID", "Access-Control-Max-Age": "600",
        })

    def frame_ancestors(self) -> str:
        """The page may be framed by itself and the configured origins (a Content-Security-Policy)."""
        return " ".join(("frame-ancestors 'self'", *sorted(self.allowed)))
