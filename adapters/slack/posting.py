"""Posting a reply's messages to Slack, and what Slack's refusals mean for it.

Slack answers a Web API call it will not carry out with an error code. Transient ones (rate
limits, Slack's own faults, HTTP 429 and 5xx) keep the reply in the outbox for a later attempt,
which skips the messages already posted (see `convoflow.adapters.sent_parts`). Any other code is a
permanent refusal of this message, which no retry would cure: a message refused for its blocks or
its length is posted again as smaller plain-text messages; otherwise the reply is dropped (the
Engine's Undeliverable), logged and counted, and the outbox moves on, so a refused reply never
holds up the conversation behind it.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from slack_sdk.errors import SlackApiError

from convoflow.adapters.sent_parts import Deliveries, Progress
from convoflow.adapters.slack.render import Post, posts
from convoflow.messages import Reply
from convoflow.delivery import Undeliverable

log = logging.getLogger("convoflow.slack")

TRANSIENT = frozenset({
    "ratelimited", "rate_limited", "message_limit_exceeded",  # too many messages: later
    "internal_error", "fatal_error", "service_unavailable",  # Slack's own faults, not the request's
    "request_timeout",  # the request arrived incomplete
    "team_added_to_org",  # a workspace migrating into an org: "intermittently unavailable"
    "token_expired",  # a rotating token: the next authorization refreshes it
})
"""chat.postMessage errors that a later attempt can get past. fatal_error counts here: Slack calls
it a catastrophic error on its side, in which part of the call may have succeeded; nothing says
the request was at fault."""
SHRINKABLE = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long", "msg_too_long"})
"""Refusals of a message's blocks or length: the same content is posted again as smaller plain
text (options as a numbered list, which can be answered by typing)."""

Poster = Callable[[dict[str, Any]], Awaitable[Any]]
"""Calls chat.postMessage with these arguments; raises SlackApiError when Slack refuses."""


def error_code(error: SlackApiError) -> str:
    return str(error.response.get("error") or f"http_{error.response.status_code}")


def is_transient(error: SlackApiError) -> bool:
    status = error.response.status_code
    return status == 429 or status >= 500 or error_code(error) in TRANSIENT


async def post_reply(deliveries: Deliveries, reply: Reply, post: Poster) -> None:
    """Post every message of `reply` in order, each once (see the module for failures)."""
    progress = deliveries.of(reply)
    channel = reply.address.get("channel")
    for index, message in enumerate(posts(reply)):
        await _post_once(progress, str(index), message, post, channel)
    progress.finish()


async def _post_once(progress: Progress, label: str, message: Post, post: Poster, channel: Any) -> None:
    if progress.sent(label):
        return
    shrunk = f"{label}<"  # marks a message refused already: a retry goes on with its smaller form
    if not progress.sent(shrunk):
        try:
            await post(message.arguments)
            progress.mark(label)
            return
        except SlackApiError as error:
            if is_transient(error):
                raise
            code = error_code(error)
            if code not in SHRINKABLE or not message.smaller:
                progress.drop(code)
                raise Undeliverable(f"chat.postMessage to {channel}: {code}") from error
            log.warning("chat.postMessage to %s refused (%s): sending it as %d plain messages",
                        channel, code, len(message.smaller))
            progress.rerendered(code)
            progress.mark(shrunk)
    for n, smaller in enumerate(message.smaller):
        await _post_once(progress, f"{label}.{n}", Post(smaller), post, channel)
    progress.mark(label)
