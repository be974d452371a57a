"""The Slack channel end to end: real slack-bolt code, signed requests, a loopback fake Slack."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from convoflow.adapters.host.serve import serve
from convoflow.adapters.slack.channel import SlackChannel
from convoflow import Media, Option, Text, ask, dialog, send_message
from convoflow.messages import Incoming, Reply, SessionKey
from convoflow.turn_runner import TurnRunner
from convoflow.turns import Engine
from convoflow.adapters.host.loader import load_bot
from convoflow.stores import MemoryStore, Session, StoreError
from convoflow.stores.base import Conflict
from convoflow.stores.sqlite import SQLiteStore
from tests.support.fake_slack import FakeSlack
from tests.support.slack_harness import SlackApp, bot_engine, play_guessbot, running_slack
from tests.support.mongo_server import free_port
from tests.support.slack_payloads import SIGNING_SECRET, channel_message, dm, event_callback, mention, next_ts, signed_headers


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = await FakeSlack().start()
    yield slack
    await slack.close()


def texts(calls: list) -> list[str]:  # type: ignore[type-arg]
    return [c.params.get("text", "") for c in calls]


# --- conversations -------------------------------------------------------------------------------


async def test_guessbot_in_a_direct_message(fake: FakeSlack) -> None:
    store = MemoryStore()
    async with running_slack(bot_engine("bots/guessbot.py", store), fake) as app:
        assert (await app.send(dm("hi"))).status == 200
        assert texts(await fake.next_posts("D111", 2)) == ["Guess a number between 1 and 10.", "Your guess?"]

        async def guess(n: str) -> None:
            assert (await app.send(dm(n))).status == 200

        async def inbox(count: int) -> list[str]:
            return texts(await fake.next_posts("D111", count))

        assert 1 <= await play_guessbot(guess, inbox) <= 4
        await app.send(dm("ten"))
        assert "Guess a number" in texts(await fake.next_posts("D111", 1))[0]  # a new game
    assert all("thread_ts" not in c.params for c in fake.posts())  # DMs are answered in the DM
    assert {c.token for c in fake.posts()} == {"xoxb-fake-T111"}
    session = await store.load(SessionKey("slack:-:T111:D111", "guessbot"))
    assert session is not None and session.outbox == ()


async def test_signup_form_with_buttons_in_a_direct_message(fake: FakeSlack) -> None:
    store = MemoryStore()
    async with running_slack(bot_engine("bots/signup.py", store), fake) as app:
        await app.send(dm("hello"))
        assert texts(await fake.next_posts("D111", 2)) == ["Welcome! Let's get you signed up.", "What's your name?"]
        await app.send(dm("Ann &lt;b&gt; &amp; co"))  # Slack escapes these three in message text
        assert texts(await fake.next_posts("D111", 1)) == ["Nice to meet you, Ann &lt;b&gt; &amp; co. How old are you?"]
        await app.send(dm("12"))
        assert texts(await fake.next_posts("D111", 1)) == ["Please send your age as a number between 13 and 120."]
        await app.send(dm("34"))
        await fake.next_posts("D111", 1)
        await app.send(dm("ann@example.com"))
        [plans] = await fake.next_posts("D111", 1)
        blocks = plans.params["blocks"]
        assert blocks[0] == {"type": "section", "text": {"type": "mrkdwn", "text": "Which plan would you like?"}}
        buttons = blocks[1]["elements"]
        assert [b["text"]["text"] for b in buttons] == ["Free", "Pro (9/month)", "Team (29/month)"]
        assert [b["value"] for b in buttons] == ['"free"', '"pro"', '"team"']

        click = await app.click(plans, 1)
        assert click.status == 200 and click.text == ""
        [confirm] = await fake.next_posts("D111", 1)
        assert confirm.params["text"] == "Sign up Ann &lt;b&gt; &amp; co (34, ann@example.com) for the pro plan?"
        # The plans message lost its buttons before the next question was posted.
        [update] = fake.called("chat.update")
        assert fake.calls.index(update) < fake.calls.index(confirm)
        assert update.params["ts"] == plans.answer["ts"] and update.params["channel"] == "D111"
        assert [b["type"] for b in update.params["blocks"]] == ["section", "context"]
        assert update.params["blocks"][-1]["elements"][0]["text"] == "<@W222> chose Pro (9/month)"

        await app.click(confirm, 0)
        assert texts(await fake.next_posts("D111", 1)) == ["Done! Welcome aboard, Ann &lt;b&gt; &amp; co."]
    session = await store.load(SessionKey("slack:-:T111:D111", "signup"))
    assert session is not None and session.state is not None
    assert session.state["result"]["value"] == {"name": "Ann <b> & co", "age": 34, "email": "ann@example.com",
                                       "plan": "pro", "confirmed": True}


async def test_a_mention_starts_a_threaded_conversation_that_continues_without_mentions(
    fake: FakeSlack, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    try:
        async with running_slack(bot_engine("bots/signup.py", store), fake) as app:
            root = next_ts()
            await app.send(mention("sign me up", ts=root))
            posts = await fake.next_posts("C111", 2)
            assert texts(posts) == ["Welcome! Let's get you signed up.", "What's your name?"]
            assert {p.params["thread_ts"] for p in posts} == {root}

            # Not for the bot: top-level chatter, and a thread it takes no part in.
            await app.send(channel_message("lunch anyone?"))
            await app.send(channel_message("Bob", thread_ts=next_ts()))
            # Its own thread: no mention needed.
            await app.send(channel_message("Bea", thread_ts=root))
            [age] = await fake.next_posts("C111", 1)
            assert (age.params["text"], age.params["thread_ts"]) == ("Nice to meet you, Bea. How old are you?", root)
            await app.send(channel_message("41", thread_ts=root))
            await fake.next_posts("C111", 1)
            await app.send(channel_message("bea@example.com", thread_ts=root, user="W333"))  # anyone in the thread
            [plans] = await fake.next_posts("C111", 1)
            await app.click(plans, 2, user="W333")
            [confirm] = await fake.next_posts("C111", 1)
            assert confirm.params["thread_ts"] == root
            assert confirm.params["text"] == "Sign up Bea (41, bea@example.com) for the team plan?"
            await app.click(confirm, 1)
            assert texts(await fake.next_posts("C111", 1)) == ["No problem, nothing was saved. Send /start to begin again."]
            # The conversation has ended: thread chatter no longer starts it again, a mention does.
            await app.send(channel_message("thanks!", thread_ts=root))
            await app.send(mention("once more", thread_ts=root))
            assert texts(await fake.next_posts("C111", 2)) == ["Welcome! Let's get you signed up.", "What's your name?"]
            await asyncio.sleep(0.2)
            assert fake.inbox("C111").empty()
        assert len(fake.posts()) == 9
        sessions = await store.list_sessions()
        assert [s.key for s in sessions] == [SessionKey(f"slack:-:T111:C111:{root}", "signup")]
    finally:
        await store.close()


async def test_guessbot_in_a_channel_thread(fake: FakeSlack) -> None:
    async with running_slack(bot_engine("bots/guessbot.py", MemoryStore()), fake) as app:
        root = next_ts()
        await app.send(mention("let's play", channel="C222", ts=root))
        assert texts(await fake.next_posts("C222", 2)) == ["Guess a number between 1 and 10.", "Your guess?"]

        async def guess(n: str) -> None:
            await app.send(channel_message(n, channel="C222", thread_ts=root))

        async def inbox(count: int) -> list[str]:
            return texts(await fake.next_posts("C222", count))

        await play_guessbot(guess, inbox)
    assert {c.params.get("thread_ts") for c in fake.posts()} == {root}


# --- requests that are not from Slack, repeats, and events that are not turns -------------------------


@pytest.mark.parametrize("tamper", ["unsigned", "forged", "stale", "other secret", "body changed"])
async def test_requests_not_signed_by_slack_are_refused_and_nothing_happens(fake: FakeSlack, tamper: str) -> None:
    store = MemoryStore()
    async with running_slack(bot_engine("bots/guessbot.py", store), fake) as app:
        body = json.dumps(event_callback(dm("hi")))
        headers = signed_headers(body)
        if tamper == "unsigned":
            headers = {"Content-Type": "application/json"}
        elif tamper == "forged":
            headers["X-Slack-Signature"] = "v0=" + "0" * 64
        elif tamper == "stale":
            headers = signed_headers(body, timestamp=int(time.time()) - 6 * 60)
        elif tamper == "other secret":
            headers = signed_headers(body, secret="not-the-secret")
        else:
            body = body.replace('"hi"', '"yo"')
        reply = await app.post(body, headers)
        assert reply.status == 401
        await asyncio.sleep(0.2)
    assert [c.method for c in fake.calls] == ["auth.test"]  # the channel's own, at start
    assert await store.list_sessions() == []


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(("body", "content_type", "why"), [
    ("{not json", "application/json", "body is not JSON"),
    ("payload=%7Bnot+json", "application/json", "body is not JSON"),
    ("payload=%7Bnot+json", FORM, "the form's payload is not JSON"),
    ("[" * 5000 + "]" * 5000, "application/json", "body is nested too deeply to read"),
    ("payload=" + "%5B" * 5000 + "%5D" * 5000, FORM, "the form's payload is nested too deeply to read"),
    ("just words", "text/plain", "body is neither JSON nor form data"),
])
async def test_bodies_that_are_not_json_or_form_data_get_400_when_signed_and_401_when_not(
    fake: FakeSlack, caplog: pytest.LogCaptureFixture, body: str, content_type: str, why: str
) -> None:
    store = MemoryStore()
    async with running_slack(bot_engine("bots/guessbot.py", store), fake) as app:
        signed = await app.post(body, signed_headers(body, content_type=content_type))
        assert (signed.status, signed.text) == (400, why), body[:50]
        assert (await app.post(body, {"Content-Type": content_type})).status == 401
    assert why in caplog.text
    assert fake.called("chat.postMessage") == [] and await store.list_sessions() == []


async def test_a_body_that_is_not_utf8_gets_400_when_signed(fake: FakeSlack) -> None:
    async with running_slack(bot_engine("bots/guessbot.py", MemoryStore()), fake) as app:
        body = b'{"type": "event_callback", "text": "\xff\xfe"}'.replace(b"\\xff\\xfe", b"\xff\xfe")
        stamp = str(int(time.time()))
        signature = "v0=" + hmac.new(SIGNING_SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}
        async with app.http.post(app.base_url + "/slack/events", data=body, headers=headers) as response:
            assert (response.status, await response.text()) == (400, "body is not UTF-8 text")
        async with app.http.post(app.base_url + "/slack/events", data=body,
                                 headers={**headers, "X-Slack-Signature": "v0=" + "0" * 64}) as response:
            assert response.status == 401


@pytest.mark.parametrize("headers", [
    {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"},
    {"X-Slack-Request-Timestamp": "１２３", "X-Slack-Signature": "v0=00"},
    {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=é"},
])
async def test_signature_headers_that_are_no_signature_get_401(fake: FakeSlack, headers: dict[str, str]) -> None:
    async with running_slack(bot_engine("bots/guessbot.py", MemoryStore()), fake) as app:
        body = json.dumps(event_callback(dm("hi")))
        assert (await app.post(body, {"Content-Type": "application/json", **headers})).status == 401


def mistyped(change: str) -> tuple[str, str]:
    """A realistic payload with one field mistyped; (body, content type)."""
    event = event_callback(dm("hi"))
    if change == "type false":
        return json.dumps({**event, "type": False}), "application/json"
    if change == "enterprise_id list":
        return json.dumps({**event, "enterprise_id": ["E1"], "authorizations": None}), "application/json"
    if change == "event not an object":
        return json.dumps({**event, "event": "nope"}), "application/json"
    if change == "channel a list":
        return json.dumps({**event, "event": {**event["event"], "channel": ["D111"]}}), "application/json"
    if change == "user a number":
        return json.dumps({**event, "event": {**event["event"], "user": 7}}), "application/json"
    if change == "text NaN":
        return json.dumps({**event, "event": {**event["event"], "text": float("nan")}}), "application/json"
    if change == "subtype a list":
        return json.dumps({**event, "event": {**event["event"], "subtype": []}}), "application/json"
    if change == "team an int":
        return json.dumps({**event, "authorizations": [{**event["authorizations"][0], "team_id": 5}]}), "application/json"
    if change == "channel with a slash":
        return json.dumps({**event, "event": {**event["event"], "channel": "D1/../x"}}), "application/json"
    if change == "a JSON list":
        return "[1, 2]", "application/json"
    if change == "actions not a list":
        return urlencode({"payload": json.dumps({"type": "block_actions", "actions": 7})}), FORM
    if change == "unknown payload type":
        return json.dumps({**event, "type": "something_new"}), "application/json"
    raise AssertionError(change)


@pytest.mark.parametrize(("change", "reason"), [
    ("type false", "malformed"), ("enterprise_id list", "malformed"), ("event not an object", "malformed"),
    ("channel a list", "malformed"), ("user a number", "malformed"), ("text NaN", "malformed"),
    ("subtype a list", "malformed"), ("team an int", "malformed"), ("channel with a slash", "malformed"),
    ("actions not a list", "malformed"), ("a JSON list", "not_an_update"), ("unknown payload type", "unsupported"),
])
async def test_signed_payloads_slack_would_never_send_are_acknowledged_logged_and_not_handled(
    fake: FakeSlack, caplog: pytest.LogCaptureFixture, change: str, reason: str
) -> None:
    """A retry cannot help, and failures make Slack disable the event subscription: 200."""
    store = MemoryStore()
    async with running_slack(bot_engine("bots/guessbot.py", store), fake) as app:
        body, content_type = mistyped(change)
        reply = await app.post(body, signed_headers(body, content_type=content_type))
        assert (reply.status, reply.text) == (200, f"unhandled: {reason}")
        assert (await app.post(body, {"Content-Type": content_type})).status == 401
        await asyncio.sleep(0.1)
        assert fake.called("chat.postMessage") == [] and await store.list_sessions() == []
        [warning] = [r for r in caplog.records if r.name == "convoflow.webhooks"]
        assert warning.levelname == "WARNING" and f"({reason})" in warning.getMessage()
        if content_type != FORM and reason != "not_an_update":
            assert f"slack update {json.loads(body)['event_id']} not handled" in warning.getMessage()
        await app.send(dm("hi"))  # and the next update is handled as ever
        assert texts(await fake.next_posts("D111", 2)) == ["Guess a number between 1 and 10.", "Your guess?"]


async def test_url_verification_is_answered_with_the_challenge(fake: FakeSlack) -> None:
    async with running_slack(bot_engine("bots/guessbot.py", MemoryStore()), fake) as app:
        body = json.dumps({"token": "legacy", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                           "type": "url_verification"})
        reply = await app.post(body, signed_headers(body))
        assert reply.status == 200
        assert json.loads(reply.text) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
        assert (await app.post(body, {"Content-Type": "application/json"})).status == 401


async def test_a_retry_storm_is_processed_once(fake: FakeSlack) -> None:
    store, outcomes = MemoryStore(), []
    async with running_slack(bot_engine("bots/guessbot.py", store, outcomes), fake) as app:
        await app.send(dm("hi"))
        await fake.next_posts("D111", 2)
        event = dm("5")
        replies = await asyncio.gather(*[app.send(event, event_id="Ev0STORM", retry=n or None) for n in range(4)])
        assert [r.status for r in replies] == [200] * 4
        [answer] = texts(await fake.next_posts("D111", 1))
        if answer != "You got it in 1 guess! Send anything to play again.":
            assert texts(await fake.next_posts("D111", 1)) == ["Your guess?"]
        await asyncio.sleep(0.3)
        assert fake.inbox("D111").empty()  # nothing more came
    assert outcomes.count("duplicate") == 3 and len(outcomes) == 5
    session = await store.load(SessionKey("slack:-:T111:D111", "guessbot"))
    assert session is not None and session.seen.count(f"slack:T111:D111:{event['ts']}") == 1


async def test_auth_test_is_asked_once_at_start_not_by_each_first_update(fake: FakeSlack) -> None:
    async with running_slack(bot_engine("bots/guessbot.py", MemoryStore()), fake) as app:
        assert len(fake.called("auth.test")) == 1  # before any update
        channels = [f"D{n:03d}" for n in range(20)]
        replies = await asyncio.gather(*[app.send(dm("hi", channel=c, user=f"W{c}")) for c in channels])
        assert [r.status for r in replies] == [200] * len(channels)
        for channel in channels:
            assert texts(await fake.next_posts(channel, 2))[0] == "Guess a number between 1 and 10."
    assert len(fake.called("auth.test")) == 1


async def test_a_token_refused_at_start_is_asked_about_again_with_the_first_update(
    fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail("auth.test", "invalid_auth")
    with caplog.at_level(logging.ERROR, logger="convoflow.slack"):
        async with running_slack(bot_engine("bots/guessbot.py", MemoryStore()), fake) as app:
            assert "auth.test refused the bot token (invalid_auth)" in caplog.text
            assert (await app.send(dm("hi"))).status == 200  # Bolt asked again, and was answered
            assert texts(await fake.next_posts("D111", 2))[0] == "Guess a number between 1 and 10."
    assert len(fake.called("auth.test")) == 2


async def test_a_slow_auth_test_at_start_does_not_hold_the_start_up(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("convoflow.adapters.slack.channel.AUTH_TEST_SECONDS", 0.05)
    slow = await FakeSlack(latency=0.3).start()
    try:
        with caplog.at_level(logging.WARNING, logger="convoflow.slack"):
            async with running_slack(bot_engine("bots/guessbot.py", MemoryStore()), slow) as app:
                assert "auth.test could not reach Slack" in caplog.text  # gave up waiting, started
                assert (await app.send(dm("hi"))).status == 200  # Bolt asked again, and was answered
                assert texts(await slow.next_posts("D111", 2))[0] == "Guess a number between 1 and 10."
    finally:
        await slow.close()


async def test_the_same_message_as_app_mention_and_as_message_is_one_turn(fake: FakeSlack) -> None:
    outcomes: list[str] = []
    async with running_slack(bot_engine("bots/signup.py", MemoryStore(), outcomes), fake) as app:
        root = next_ts()
        await app.send(mention("hi", ts=root))
        await fake.next_posts("C111", 2)
        for name, first_kind in [("Ann", "app_mention"), ("34", "message")]:
            ts = next_ts()
            kinds = [mention(name, ts=ts, thread_ts=root), channel_message(f"<@UBOT> {name}", ts=ts, thread_ts=root)]
            if first_kind == "message":
                kinds.reverse()
            await asyncio.gather(*[app.send(event) for event in kinds])
            await fake.next_posts("C111", 1)
        await asyncio.sleep(0.3)
        assert fake.inbox("C111").empty()
    assert texts(fake.posts())[2:] == ["Nice to meet you, Ann. How old are you?", "Your email address?"]
    assert outcomes.count("duplicate") == 2 and len(outcomes) == 5


@pytest.mark.parametrize("event", [
    dm("I am the bot", user="UBOT"),
    dm("a bot", bot_id="B999"),
    dm("hook", subtype="bot_message"),
    dm("edited", subtype="message_changed"),
    dm("", subtype="message_deleted"),
    channel_message("<@W222> has joined the channel", subtype="channel_join"),
    {"type": "reaction_added", "user": "W222", "reaction": "thumbsup", "item": {"type": "message", "channel": "D111", "ts": "1.2"}},
])
async def test_events_that_are_not_turns_are_acknowledged_and_ignored(fake: FakeSlack, event: dict) -> None:  # type: ignore[type-arg]
    store = MemoryStore()
    async with running_slack(bot_engine("bots/guessbot.py", store), fake) as app:
        assert (await app.send(event)).status == 200
        await asyncio.sleep(0.2)
    assert fake.called("chat.postMessage") == []
    assert await store.list_sessions() == []


async def test_a_click_on_a_button_we_never_made_is_acknowledged_and_ignored(fake: FakeSlack) -> None:
    store = MemoryStore()
    async with running_slack(bot_engine("bots/signup.py", store), fake) as app:
        assert fake.posts() == []  # none yet: craft a message with a button value we never encode
        from tests.support.fake_slack import Call

        posted = Call("chat.postMessage", {"channel": "D111", "text": "x", "blocks": [
            {"type": "actions", "elements": [{"type": "button", "action_id": "convoflow:1:0",
                                              "text": {"type": "plain_text", "text": "X"}, "value": "not json"}]}]},
                      "xoxb-fake-T111", {"ok": True, "ts": "1.1"})
        assert (await app.click(posted, 0)).status == 200
        await asyncio.sleep(0.2)
    assert fake.called("chat.postMessage") == [] and fake.called("chat.update") == []
    assert await store.list_sessions() == []


# --- delivery failures ---------------------------------------------------------------------------


async def test_rate_limited_posts_are_retried_after_retry_after(fake: FakeSlack) -> None:
    async with running_slack(bot_engine("bots/guessbot.py", MemoryStore()), fake) as app:
        fake.fail("chat.postMessage", "ratelimited", retry_after=1)
        started = time.perf_counter()
        await app.send(dm("hi"))
        assert texts(await fake.next_posts("D111", 2)) == ["Guess a number between 1 and 10.", "Your guess?"]
        assert time.perf_counter() - started >= 1.0
    attempts = fake.called("chat.postMessage")
    assert [c.ok for c in attempts] == [False, True, True]
    assert attempts[0].params["text"] == attempts[1].params["text"]


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "is_archived"])
async def test_a_reply_that_can_never_be_delivered_is_dropped_and_logged(
    fake: FakeSlack, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    async with running_slack(bot_engine("bots/guessbot.py", store), fake) as app:
        fake.fail("chat.postMessage", error)
        with caplog.at_level(logging.WARNING, logger="convoflow.engine"):
            await app.send(dm("hi"))
            assert texts(await fake.next_posts("D111", 1)) == ["Your guess?"]  # the first reply was dropped
        assert any(error in r.getMessage() and "dropping reply" in r.getMessage() for r in caplog.records)
        session = await store.load(SessionKey("slack:-:T111:D111", "guessbot"))
        assert session is not None and session.outbox == ()
        await app.send(dm("5"))  # the conversation goes on
        assert texts(await fake.next_posts("D111", 1))[0] in ("Higher!", "Lower!", "You got it in 1 guess! Send anything to play again.")


async def test_a_transient_failure_keeps_the_reply_and_delivers_it_on_retry(fake: FakeSlack) -> None:
    store = MemoryStore()
    async with running_slack(bot_engine("bots/guessbot.py", store), fake) as app:
        fake.fail("chat.postMessage", "internal_error", times=2)
        await app.send(dm("hi"))
        assert texts(await fake.next_posts("D111", 2)) == ["Guess a number between 1 and 10.", "Your guess?"]
    assert [c.ok for c in fake.called("chat.postMessage")] == [False, False, True, True]
    session = await store.load(SessionKey("slack:-:T111:D111", "guessbot"))
    assert session is not None and session.outbox == ()


# --- acknowledging first, finishing turns on shutdown ----------------------------------------------


release = asyncio.Event()


@dialog()
async def slow_lookup() -> str:
    await release.wait()
    return "looked up"


@dialog()
def slow_bot():
    answer = yield slow_lookup()
    yield send_message(answer)
    yield ask("More?")


class SlowCommits(MemoryStore):
    async def commit(self, session: Session) -> None:
        await asyncio.sleep(0.3)
        await super().commit(session)


async def test_an_event_is_acknowledged_once_its_turn_has_committed(fake: FakeSlack) -> None:
    store = SlowCommits()
    async with running_slack(bot_engine("bots/guessbot.py", store), fake, ack_seconds=30) as app:
        reply = await app.send(dm("hi"))
        assert reply.status == 200
        # the ack came after the commit: a process dying now loses nothing
        session = await store.load(SessionKey("slack:-:T111:D111", "guessbot"))
        assert session is not None and session.state is not None and "slack:T111:D111:" in session.seen[-1]


async def test_a_turn_not_committed_in_time_is_answered_503_and_its_retry_acknowledged_once_committed(
    fake: FakeSlack,
) -> None:
    global release
    release = asyncio.Event()
    store = MemoryStore()
    engine = Engine(slow_bot, store, app="slow")
    async with running_slack(engine, fake, ack_seconds=0.2) as app:
        event = dm("go")
        first = await app.send(event, event_id="Ev1")
        assert first.status == 503  # not safe in the store yet: Slack will deliver it again
        assert fake.posts() == [] and await store.list_sessions() == []
        release.set()
        while not await store.list_sessions():  # the first attempt commits
            await asyncio.sleep(0.01)
        retry = await app.send(event, event_id="Ev1", retry=1)
        assert retry.status == 200  # the first attempt has committed by now
        await asyncio.sleep(0.1)
    assert texts(fake.posts()) == ["looked up", "More?"]  # processed once


class FailingStore(MemoryStore):
    """A store that fails fast when switched off (a database refusing connections), or whose
    every commit loses to another writer."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.conflicting = False

    async def load(self, key: SessionKey) -> Session | None:
        if self.down:
            raise StoreError("database unreachable")
        return await super().load(key)

    async def commit(self, session: Session) -> None:
        if self.down:
            raise StoreError("database unreachable")
        if self.conflicting:
            raise Conflict(session.key, session.revision - 1)
        await super().commit(session)


async def test_an_update_whose_turn_did_not_commit_is_never_acknowledged(fake: FakeSlack) -> None:
    store = FailingStore()
    async with running_slack(Engine(load_bot("bots/signup.py").dialog, store, app="signup", max_conflicts=3), fake) as app:
        root = next_ts()
        await app.send(mention("sign me up", ts=root))
        assert texts(await fake.next_posts("C111", 2)) == ["Welcome! Let's get you signed up.", "What's your name?"]

        store.down = True
        in_thread, direct = channel_message("Bea", thread_ts=root), dm("hello")
        assert (await app.send(in_thread, event_id="EvThread")).status == 503  # whether it is ours is unknown
        assert (await app.send(direct, event_id="EvDM")).status == 503
        store.down = False
        store.conflicting = True
        assert (await app.send(in_thread, event_id="EvThread", retry=1)).status == 503  # other writers keep winning
        assert (await app.send(direct, event_id="EvDM", retry=1)).status == 503
        store.conflicting = False

        # Slack's next retries go through: nothing was lost.
        assert (await app.send(in_thread, event_id="EvThread", retry=2)).status == 200
        assert texts(await fake.next_posts("C111", 1)) == ["Nice to meet you, Bea. How old are you?"]
        assert (await app.send(direct, event_id="EvDM", retry=2)).status == 200
        assert texts(await fake.next_posts("D111", 2)) == ["Welcome! Let's get you signed up.", "What's your name?"]

        # Left alone by design (no conversation in that thread): acknowledged, nothing stored.
        other_thread = next_ts()
        assert (await app.send(channel_message("lunch?", thread_ts=other_thread))).status == 200
        assert await store.load(SessionKey(f"slack:-:T111:C111:{other_thread}", "signup")) is None


async def test_stop_finishes_turns_in_flight(fake: FakeSlack) -> None:
    global release
    release = asyncio.Event()
    store = MemoryStore()
    engine = Engine(slow_bot, store, app="slow")
    async with running_slack(engine, fake, ack_seconds=0.2) as app:
        assert (await app.send(dm("go"))).status == 503
        asyncio.get_running_loop().call_later(0.3, release.set)
    # Leaving the block stopped the server and the channel; the turn was finished, not dropped.
    assert texts(fake.posts()) == ["looked up", "More?"]
    assert (await store.load(SessionKey("slack:-:T111:D111", "slow"))) is not None


async def test_stop_gives_up_on_turns_that_outlast_the_drain_time(
    fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    global release
    release = asyncio.Event()  # never set: the turn would wait forever
    store = MemoryStore()
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="convoflow.runner"):
        async with running_slack(Engine(slow_bot, store, app="slow"), fake, drain_seconds=0.3, ack_seconds=0.1) as app:
            assert (await app.send(dm("go"))).status == 503
            await asyncio.sleep(0.1)
    assert time.perf_counter() - started < 5
    assert any("cancelling 1 turns still running" in r.getMessage() for r in caplog.records)
    assert fake.posts() == [] and await store.list_sessions() == []  # nothing half-done was committed


# --- files and media -----------------------------------------------------------------------------


@dialog()
def media_bot():
    upload = yield ask("Send me a picture.")
    yield send_message(Media("image", "https://img.example/cat.png", f"got {upload['media']} {upload['caption']}"))
    yield send_message(Media("file", "https://files.example/report.pdf", "the report"))
    yield send_message(Media("image", upload["source"]))
    yield ask("Which?", choices=[Option("A <tag>", 1), Option("x" * 100, {"long": "y" * 3000})])


async def test_file_shares_arrive_as_media_and_media_replies_render(fake: FakeSlack) -> None:
    async with running_slack(Engine(media_bot, MemoryStore(), app="media"), fake) as app:
        await app.send(dm("start"))
        await fake.next_posts("D111", 1)
        files = [{"id": "F0CAT", "name": "cat.jpg", "mimetype": "image/jpeg",
                  "url_private": "https://files.slack.test/files-pri/T111-F0CAT/cat.jpg"}]
        await app.send(dm("my cat", subtype="file_share", files=files))
        image, report, echo, question = await fake.next_posts("D111", 4)
        assert image.params["text"] == "got image my cat"
        assert image.params["blocks"] == [{"type": "image", "alt_text": "got image my cat",
                                           "image_url": "https://img.example/cat.png",
                                           "title": {"type": "plain_text", "text": "got image my cat"}}]
        assert report.params["text"] == "<https://files.example/report.pdf|the report>"
        assert echo.params["blocks"][0]["image_url"] == files[0]["url_private"]
        short, long = question.params["blocks"][1]["elements"]
        assert short["text"]["text"] == "A <tag>" and short["value"] == "1"
        assert len(long["text"]["text"]) == 75 and long["value"] == f"#{question.params['blocks'][1]['elements'][1]['action_id'].split(':')[1]}.1"
        await app.click(question, 1)
        await asyncio.sleep(0.3)
    update = fake.called("chat.update")[0]
    assert update.params["blocks"][-1]["elements"][0]["text"].startswith("<@W222> chose xxx")


# --- beside other channels -----------------------------------------------------------------------


class EchoChannel:
    """Another HTTP channel on the same server, engine and store (as `--channel all` runs them)."""

    name = "echo"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def routes(self) -> list[web.RouteDef]:
        async def turn(request: web.Request) -> web.Response:
            data = await request.json()
            incoming = Incoming(SessionKey(f"echo:{data['user']}", self.engine.app), data["id"], "text", data["text"])
            replies = await self.engine.handle(incoming)
            return web.json_response([r.message.text for r in replies if isinstance(r.message, Text)])

        return [web.post("/echo", turn)]

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, reply: Reply) -> None:
        raise AssertionError("its replies go out in its responses")


async def test_slack_serves_beside_another_channel_on_one_server_engine_and_store(fake: FakeSlack, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    engine = bot_engine("bots/signup.py", store)
    slack = SlackChannel(TurnRunner(engine), signing_secret=SIGNING_SECRET, bot_token="xoxb-fake-T111", api_url=fake.api_url)
    port, stop = free_port(), asyncio.Event()
    server = asyncio.create_task(serve([slack, EchoChannel(engine)], store, CollectorRegistry(), "127.0.0.1", port, stop))
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get(f"{base}/healthz?ready=1") as ready:
                    if ready.status == 200:
                        assert (await ready.json())["channels"] == ["slack", "echo"]
                        break
            await asyncio.sleep(0.02)
        app = SlackApp(fake, slack, base, http)
        await app.send(dm("hi"))
        async with http.post(f"{base}/echo", json={"user": "ann", "id": "e1", "text": "hi"}) as echoed:
            assert await echoed.json() == ["Welcome! Let's get you signed up.", "What's your name?"]
        await fake.next_posts("D111", 2)
        await app.send(dm("Sam"))
        async with http.post(f"{base}/echo", json={"user": "ann", "id": "e2", "text": "Ann"}) as echoed:
            assert await echoed.json() == ["Nice to meet you, Ann. How old are you?"]
        assert texts(await fake.next_posts("D111", 1)) == ["Nice to meet you, Sam. How old are you?"]
        stop.set()
        await asyncio.wait_for(server, 30)
    reopened = SQLiteStore(tmp_path / "sessions.db")
    try:
        keys = {str(s.key) for s in await reopened.list_sessions()}
    finally:
        await reopened.close()
    assert keys == {"slack:-:T111:D111/signup", "echo:ann/signup"}
