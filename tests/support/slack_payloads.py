"""What Slack sends an app: Events API callbacks and interactivity payloads, signed as Slack signs
them (`v0=HMAC-SHA256(secret, "v0:{timestamp}:{body}")`)."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from tests.support.fake_slack import APP_ID, Call

SIGNING_SECRET = "fake-signing-secret"
_numbers = itertools.count(1)


def next_ts() -> str:
    n = next(_numbers)
    return f"{1726133700 + n}.{n:06d}"


def signed_headers(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None,
                   content_type: str = "application/json", retry: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body),
    }
    if retry is not None:
        headers["X-Slack-Retry-Num"] = str(retry)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return headers


def event_callback(event: dict[str, Any], *, team: str = "T111", enterprise: str | None = None,
                   bot_user: str = "UBOT", event_id: str | None = None) -> dict[str, Any]:
    return {
        "token": "legacy-verification-token",
        "team_id": team,
        "enterprise_id": enterprise,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_numbers):08d}",
        "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": enterprise, "team_id": team, "user_id": bot_user, "is_bot": True,
                            "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    }


def dm(text: str, *, user: str = "W222", channel: str = "D111", team: str = "T111", ts: str | None = None,
       **extra: Any) -> dict[str, Any]:
    ts = ts or next_ts()
    return {"type": "message", "channel": channel, "channel_type": "im", "user": user, "text": text, "ts": ts,
            "event_ts": ts, "team": team, **extra}


def mention(text: str, *, user: str = "W222", channel: str = "C111", team: str = "T111", ts: str | None = None,
            thread_ts: str | None = None, bot_user: str = "UBOT") -> dict[str, Any]:
    ts = ts or next_ts()
    event = {"type": "app_mention", "channel": channel, "user": user, "text": f"<@{bot_user}> {text}", "ts": ts,
             "event_ts": ts, "team": team}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def channel_message(text: str, *, user: str = "W222", channel: str = "C111", team: str = "T111",
                    ts: str | None = None, thread_ts: str | None = None, channel_type: str = "channel",
                    **extra: Any) -> dict[str, Any]:
    ts = ts or next_ts()
    event = {"type": "message", "channel": channel, "channel_type": channel_type, "user": user, "text": text,
             "ts": ts, "event_ts": ts, "team": team, **extra}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def block_actions(posted: Call, index: int, *, user: str = "W222", team: str = "T111",
                  enterprise: str | None = None, action_ts: str | None = None) -> dict[str, Any]:
    """A click on button `index` of a message the app posted (its chat.postMessage call as the
    fake recorded it), as Slack's interactivity payload."""
    message_ts = posted.answer["ts"]
    posted_params = posted.params
    blocks = posted_params["blocks"]
    buttons = [element for block in blocks if block["type"] == "actions" for element in block["elements"]]
    button = buttons[index]
    channel = posted_params["channel"]
    container: dict[str, Any] = {"type": "message", "message_ts": message_ts, "channel_id": channel,
                                 "is_ephemeral": False}
    message: dict[str, Any] = {"type": "message", "user": "UBOT", "bot_id": "BBOT", "text": posted_params.get("text", ""),
                               "ts": message_ts, "blocks": blocks}
    if posted_params.get("thread_ts"):
        container["thread_ts"] = posted_params["thread_ts"]
        message["thread_ts"] = posted_params["thread_ts"]
    return {
        "type": "block_actions",
        "user": {"id": user, "username": "ann", "name": "ann", "team_id": team},
        "api_app_id": APP_ID,
        "token": "legacy-verification-token",
        "container": container,
        "trigger_id": "1.2.3",
        "team": {"id": team, "domain": "fake"},
        "enterprise": {"id": enterprise} if enterprise else None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "directmessage" if channel.startswith("D") else "general"},
        "message": message,
        "response_url": "https://hooks.slack.test/actions/1",
        "actions": [{
            "action_id": button["action_id"], "block_id": "b1", "text": button["text"], "value": button["value"],
            "type": "button", "action_ts": action_ts or f"{time.time():.6f}",
        }],
    }


def form_body(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


def slash_command(text: str, *, command: str = "/guessbot", user: str = "W222", channel: str = "D111",
                  team: str = "T111") -> str:
    """The form body Slack posts for a slash command (`/guessbot help`)."""
    n = next(_numbers)
    return urlencode({
        "token": "legacy-verification-token", "team_id": team, "team_domain": "acme", "channel_id": channel,
        "channel_name": "directmessage" if channel.startswith("D") else "general", "user_id": user,
        "user_name": "ann", "command": command, "text": text, "api_app_id": APP_ID, "is_enterprise_install": "false",
        "response_url": f"https://hooks.slack.test/commands/{team}/{n}/x", "trigger_id": f"{n}.1726133700.a1b2c3d4{n}",
    })
