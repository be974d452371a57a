"""What every webhook answers a request it does not take, one status table for all channels:

- authentication fails: 403 (Telegram's secret) or 401 (Slack's signature), answered by the channel;
- the body is not JSON or form data at all: 400 (`unreadable`); over the size limit: 413 (aiohttp);
- authenticated and readable, but nothing the bot can handle: 200 (`acknowledge_unhandled`),
  logged at WARNING with the platform's id and counted by the host (`convoflow_unhandled_updates`).
  Retrying cannot help: Telegram retries any non-2xx and holds back that chat's later updates,
  and Slack disables event subscriptions that fail too often;
- a turn attempted that did not commit: 503, so the platform delivers the update again.

Nothing reaches the store for a refused or unhandled request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

log = logging.getLogger("convoflow.webhooks")

UnhandledReason = Literal["not_an_update", "malformed", "unsupported"]
"""Why an update was acknowledged unhandled (a metric label, so a fixed few):
`not_an_update`: readable, but not the platform's kind of object at all;
`malformed`: fields missing, or of the wrong type or range;
`unsupported`: a well-formed payload of a kind the bot takes no part in (Slack: no listener)."""

@dataclass(frozen=True)
class Unhandled:
    channel: str
    reason: UnhandledReason
    update: int | str | None = None
    """The platform's id for it (Telegram update_id, Slack event_id), when it has a readable one."""


class UnhandledResponse(web.Response):
    """The 200 answer to an unhandled update; the host counts it by its `unhandled`."""

    def __init__(self, unhandled: Unhandled) -> None:
        super().__init__(text=f"unhandled: {unhandled.reason}")
        self.unhandled = unhandled


def acknowledge_unhandled(unhandled: Unhandled, detail: str) -> UnhandledResponse:
    log.warning("%s update %s not handled (%s): %.300s", unhandled.channel, "without an id" if unhandled.update is None else unhandled.update,
                unhandled.reason, detail)
    return UnhandledResponse(unhandled)


def unreadable(channel: str, detail: str) -> web.Response:
    """400: the platform never sends such a body, so nobody retries it."""
    log.warning("%s webhook body refused: %s", channel, detail)
    return web.Response(status=400, text=detail)
