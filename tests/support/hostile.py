"""Hostile webhook requests for fuzzing: realistic Telegram updates and Slack payloads, mutated
(wrong types, deletions, added fields, huge and negative integers, NaN, deep nesting, unicode,
broken bodies, bad credentials), and the status each must get by the one status table:

- authentication fails: 403 (Telegram's secret) or 401 (Slack's signature, a web token);
- the body is not JSON or form data at all: 400; over the size limit: 413;
- authenticated and readable: 200 (handled, ignored, or acknowledged unhandled), or 503 when a
  turn did not commit in time.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from hypothesis import strategies as st

from convoflow.adapters.host.app import MAX_BODY_BYTES
from convoflow.adapters.telegram.channel import SECRET_HEADER, WEBHOOK_PATH
from convoflow.adapters.web.channel import WebOptions
from convoflow.adapters.web.payloads import BadRequest, posted
from convoflow.adapters.web.tokens import USER_ID, Tokens, Visitor
from tests.support.fake_telegram import BOT_USER, group_chat, mention, message, press, private_chat, user
from tests.support.slack_payloads import SIGNING_SECRET, dm, event_callback, signed_headers
from tests.support.slack_payloads import mention as slack_mention

JSON_TYPE = "application/json"
FORM = "application/x-www-form-urlencoded"
DEEP = "\x00deeply nested\x00"
"""Stands for 5,000 levels of nesting (json.dumps could not write it), put in after dumping."""
DEEP_JSON = "[" * 5000 + "]" * 5000

EXTREME_INTS = [0, -1, 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, -(2**64), 10**40]
ODD_TEXTS = ["", " ", "\x00", "\ud800", "\udfff", "💥" * 50, "\u202eRTL", "e\u0301", "/start", "/start@other_bot",
             "@guess_bot", "<@UBOT>", "#1.0", "#999999999999999999.999999", '"yes"', "NaN", "[[[[[[]]]]]]",
             "x" * 70_000, "D111", "1726133700.000001", "null", "\\u0000"]
WEIRD: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.sampled_from(EXTREME_INTS), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(ODD_TEXTS), st.text(max_size=20),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.just("[" * 40 + "]" * 40).map(json.loads), st.just(DEEP),
).map(copy.deepcopy)
"""Values no platform would put where they land (fresh objects: later mutations change them)."""
FIELD_NAMES = ["update_id", "message", "edited_message", "callback_query", "chat", "from", "id", "type", "text",
               "caption", "data", "message_thread_id", "is_topic_message", "migrate_to_chat_id", "reply_to_message",
               "entities", "photo", "document", "is_bot", "date", "message_id", "event", "user", "channel",
               "channel_type", "ts", "thread_ts", "subtype", "bot_id", "files", "team", "team_id", "enterprise",
               "enterprise_id", "authorizations", "actions", "container", "value", "action_ts", "action_id",
               "is_enterprise_install", "is_ext_shared_channel", "challenge", "response_url", "view"]
"""Fields the platforms send, which translation or Bolt reads: added where they do not belong."""


def telegram_updates() -> list[dict[str, Any]]:
    """Realistic updates (made once: hypothesis needs the same bases in every run)."""
    team = group_chat(-100300)
    return [
        message(private_chat(4201), text="/start"),
        message(private_chat(4202), text="5"),
        message(team, user(4203), "@guess_bot hi", **mention("@guess_bot hi")),
        press(private_chat(4204), '"yes"'),
        press(team, "#3.1", user(4205)),
        message(private_chat(4206), text="fixed", edited=True),
        message(private_chat(4207), photo=[{"file_id": "AgAC", "file_unique_id": "AQAD", "width": 9, "height": 9}],
                caption="look"),
        {"update_id": 77, "message": {"message_id": 3, "date": 1700000000, "chat": private_chat(4208),
                                      "from": user(4208), "text": "hi", "reply_to_message": {
                                          "message_id": 2, "date": 1700000000, "chat": private_chat(4208),
                                          "from": BOT_USER, "text": "Your guess?"}}},
    ]


def slack_payloads() -> list[tuple[dict[str, Any], str]]:
    """Realistic payloads and how each travels (JSON events, form-encoded interactivity)."""
    click = {
        "type": "block_actions", "user": {"id": "W301", "team_id": "T111"}, "api_app_id": "A0FAKEAPP",
        "container": {"type": "message", "message_ts": "1700000001.000001", "channel_id": "D301", "is_ephemeral": False},
        "trigger_id": "1.2.3", "team": {"id": "T111", "domain": "fake"}, "enterprise": None,
        "is_enterprise_install": False, "channel": {"id": "D301", "name": "directmessage"},
        "message": {"type": "message", "user": "UBOT", "bot_id": "BBOT", "text": "Pick", "ts": "1700000001.000001",
                    "blocks": [{"type": "actions", "elements": []}]},
        "response_url": "https://hooks.slack.test/actions/1",
        "actions": [{"action_id": "convoflow:1:0", "block_id": "b1", "text": {"type": "plain_text", "text": "Yes"},
                     "value": '"yes"', "type": "button", "action_ts": f"{time.time():.6f}"}],
    }
    return [
        (event_callback(dm("hi", channel="D302")), JSON_TYPE),
        (event_callback(dm("/start", channel="D303")), JSON_TYPE),
        (event_callback(slack_mention("hello", channel="C304")), JSON_TYPE),
        (event_callback(dm("a file", channel="D305", files=[{"id": "F1", "url_private": "https://f.test/1",
                                                              "mimetype": "image/png"}])), JSON_TYPE),
        (click, FORM),
        ({"token": "legacy", "challenge": "abc", "type": "url_verification"}, JSON_TYPE),
    ]


TELEGRAM_UPDATES = telegram_updates()
SLACK_PAYLOADS = slack_payloads()


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """`base` with one to three mutations at places drawn from its own tree."""
    tree = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        places = _places(tree)
        path = draw(st.sampled_from(places))
        operation = draw(st.sampled_from(["replace", "replace", "delete", "wrap", "add"]))
        target = _at(tree, path)
        if operation == "add":
            if isinstance(target, dict):
                target[draw(st.sampled_from(FIELD_NAMES))] = draw(WEIRD)
        elif not path:  # the root itself
            tree = draw(WEIRD) if operation == "replace" else [tree]
        else:
            parent, key = _at(tree, path[:-1]), path[-1]
            if operation == "replace":
                parent[key] = draw(WEIRD)
            elif operation == "delete":
                del parent[key]
            else:
                parent[key] = draw(st.sampled_from([[target], {"id": target}]))
    return tree


@dataclass(frozen=True)
class Hostile:
    """One request and what the status table says it must get."""

    channel: str
    path: str
    body: bytes
    headers: dict[str, str]
    expected: frozenset[int]

    def __repr__(self) -> str:  # falsifying examples are printed: bodies can be a megabyte
        body = self.body if len(self.body) <= 600 else self.body[:600] + b"...(%d bytes)" % len(self.body)
        return f"Hostile({self.channel}, body={body!r}, headers={self.headers}, expected={set(self.expected)})"


@st.composite
def telegram_requests(draw: st.DrawFn, secret: str) -> Hostile:
    body = _encoded(draw(mutated(draw(st.sampled_from(TELEGRAM_UPDATES)))))
    body = draw(_broken(body))
    credential = draw(st.sampled_from(["right"] * 8 + ["wrong", "missing", "non-ascii"]))
    headers = {"Content-Type": JSON_TYPE}
    if credential == "right":
        headers[SECRET_HEADER] = secret
    elif credential == "wrong":
        headers[SECRET_HEADER] = secret[:-1] + "x"
    elif credential == "non-ascii":
        headers[SECRET_HEADER] = secret + "é"
    if credential != "right":
        expected = {403}
    elif len(body) > MAX_BODY_BYTES:
        expected = {413}
    else:
        expected = {200, 503} if _json_readable(body) else {400}
    return Hostile("telegram", WEBHOOK_PATH, body, headers, frozenset(expected))


@st.composite
def slack_requests(draw: st.DrawFn) -> Hostile:
    payload, content_type = draw(st.sampled_from(SLACK_PAYLOADS))
    changed = draw(mutated(payload))
    encoded = _encoded(changed)
    body = draw(_broken(urlencode({"payload": encoded}).encode() if content_type == FORM else encoded))
    content_type = draw(st.sampled_from([content_type] * 6 + [JSON_TYPE, FORM, "text/plain"]))
    text = body.decode("utf-8", "surrogateescape")
    credential = draw(st.sampled_from(["signed"] * 8 + ["unsigned", "other secret", "stale", "odd stamp"]))
    headers = {"Content-Type": content_type}
    if credential == "signed":
        headers = signed_headers(text, content_type=content_type) if _is_utf8(body) else _signed_bytes(body, content_type)
    elif credential == "other secret":
        headers = signed_headers(text, secret="not-the-secret", content_type=content_type) if _is_utf8(body) else headers
    elif credential == "stale":
        headers = signed_headers(text, timestamp=int(time.time()) - 600, content_type=content_type) \
            if _is_utf8(body) else headers
    elif credential == "odd stamp":
        headers = {**headers, "X-Slack-Request-Timestamp": "１７００", "X-Slack-Signature": "v0=é"}
    if len(body) > MAX_BODY_BYTES:
        expected = {413}
    elif credential != "signed":
        expected = {401}
    else:
        expected = {200, 503} if _slack_readable(body, content_type) else {400}
    return Hostile("slack", "/slack/events", body, headers, frozenset(expected))


def _places(tree: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    places = [path]
    if isinstance(tree, dict):
        for key, value in tree.items():
            places += _places(value, (*path, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            places += _places(value, (*path, index))
    return places


def _at(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _encoded(tree: Any) -> bytes:
    return json.dumps(tree).replace(json.dumps(DEEP), DEEP_JSON).encode()  # ASCII: escapes throughout


@st.composite
def _broken(draw: st.DrawFn, body: bytes) -> bytes:
    """Mostly the body as it is; sometimes cut short, followed by garbage, not UTF-8, replaced by
    deep nesting, or padded past the size limit."""
    how = draw(st.sampled_from(["whole"] * 12 + ["cut", "garbage", "latin-1", "deep", "huge"]))
    if how == "cut":
        return body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    if how == "garbage":
        return body + draw(st.binary(min_size=1, max_size=8))
    if how == "latin-1":
        return body.replace(b"e", b"\xe9", 1) + b"\xff"
    if how == "deep":
        return DEEP_JSON.encode()
    if how == "huge":
        return body + b" " * (MAX_BODY_BYTES + 1)
    return body


def _json_readable(data: bytes | str) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return False
    return True


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _slack_readable(body: bytes, content_type: str) -> bool:
    """JSON, or form data whose `payload` (if any) is JSON: what Slack sends."""
    if not _is_utf8(body):
        return False
    text = body.decode("utf-8")
    if content_type == JSON_TYPE or text.startswith("{"):
        return _json_readable(text)
    if content_type != FORM:
        return False
    fields = dict(parse_qsl(text, keep_blank_values=True))
    return "payload" not in fields or _json_readable(fields["payload"])


def _signed_bytes(body: bytes, content_type: str) -> dict[str, str]:
    """Slack's signature over a body that is not UTF-8 (slack_sdk signs text only)."""
    stamp = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}



# --- the web channel ---------------------------------------------------------------------------

WEB_VISITORS = [Visitor(f"web:fuzz-visitor-{n:02d}-abcdefgh") for n in range(20)]
"""Visitors the fuzzing posts as (several, so the per-token rate limit leaves most requests through)."""


def web_tokens(secret: str) -> list[str]:
    return [Tokens(secret, 3600).issue(visitor, time.time()) for visitor in WEB_VISITORS]


def web_bodies(tokens: list[str]) -> list[tuple[str, dict[str, Any]]]:
    signature = hmac.new(tokens[0].encode(), b"", hashlib.sha256).hexdigest()  # a wrong one, of the right shape
    return [
        ("/web/messages", {"token": tokens[0], "text": "/start", "id": "m-1"}),
        ("/web/messages", {"token": tokens[1], "text": "5", "id": "m-2"}),
        ("/web/messages", {"token": tokens[2], "button": "#2.3", "id": "m-3"}),
        ("/web/session", {}),
        ("/web/session", {"token": tokens[3]}),
        ("/web/session", {"user": "alice", "signature": signature}),
    ]


@st.composite
def web_requests(draw: st.DrawFn, secret: str) -> Hostile:
    tokens = web_tokens(secret)
    path, base = draw(st.sampled_from(web_bodies(tokens)))
    tree = draw(mutated(base))
    if isinstance(tree, dict) and "token" in tree:
        credential = draw(st.sampled_from(["right"] * 6 + ["another visitor", "altered", "expired", "other secret"]))
        if credential == "another visitor":
            tree["token"] = draw(st.sampled_from(tokens))
        elif credential == "altered" and isinstance(tree["token"], str):
            tree["token"] = tree["token"][:-2] + ("AA" if not tree["token"].endswith("AA") else "BB")
        elif credential == "expired":
            tree["token"] = Tokens(secret, 60).issue(WEB_VISITORS[4], time.time() - 3600)
        elif credential == "other secret":
            tree["token"] = Tokens("not-the-web-secret-0123", 3600).issue(WEB_VISITORS[4], time.time())
    body = draw(_broken(_encoded(tree)))
    headers = {"Content-Type": draw(st.sampled_from([JSON_TYPE] * 6 + ["text/plain", FORM]))}
    return Hostile("web", path, body, headers, frozenset(_web_expected(path, body, set(tokens), secret)))


def _web_expected(path: str, body: bytes, tokens: set[str], secret: str) -> set[int]:
    """The status table for the web routes: 413 over the limit, 400 for no JSON object, 401 for a
    token or user signature that is not ours, 400 for a malformed field, else 200 (202 or 503 for a
    turn); 429 whenever the token's rate is used up."""
    if len(body) > WebOptions().max_body:
        return {413}
    try:
        tree = json.loads(body or b"{}", parse_constant=_refuse)  # an empty body reads as {}
    except (ValueError, RecursionError):
        return {400}
    if not isinstance(tree, dict):
        return {400}
    if path == "/web/session":
        if "token" in tree:
            return {200} if _ours(tree["token"], tokens) else {401}
        user = tree.get("user")
        if user is None:
            return {200}
        if not isinstance(user, str):
            return {400}
        signature = tree.get("signature")
        signed = isinstance(signature, str) and hmac.compare_digest(
            Tokens(secret, 60).user_signature(user), signature.lower())
        return {200} if signed and USER_ID.fullmatch(user) else {401}
    if not _ours(tree.get("token"), tokens):
        return {401}
    try:
        posted(tree, WebOptions().max_text)
    except BadRequest:
        return {400, 429}
    return {200, 202, 503, 429}


def _ours(token: Any, tokens: set[str]) -> bool:
    return isinstance(token, str) and token in tokens


def _refuse(name: str) -> None:
    raise ValueError(name)
