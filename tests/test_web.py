"""The web channel's HTTP API, driven as the chat page drives it: sessions and tokens, messages
and their replies, the event stream, history, and every refusal of the status table."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from convoflow import ManualClock
from convoflow.adapters.web.channel import WebOptions
from convoflow.adapters.web.tokens import Tokens, Visitor
from convoflow.messages import SessionKey
from convoflow.scheduler import Scheduler
from convoflow.stores import MemoryStore
from convoflow.stores.sqlite import SQLiteStore
from tests.support.convoflow_process import convoflow_command
from tests.support.web_harness import SECRET, WebBot, open_stream, web_bot

FAST = WebOptions(poll_seconds=0.05)


def texts(replies: list[dict[str, Any]]) -> list[str]:
    return [reply.get("text") or reply.get("caption", "") for reply in replies]


def partition_of(token: str) -> str:
    return Tokens(SECRET, 60).verify(token, time.time()).partition


async def play(bot: WebBot, token: str) -> list[dict[str, Any]]:
    """A whole game by bisection, answers typed and pressed in turn; every reply, in order."""
    replies = await bot.say(token, "/start")
    assert texts(replies) == ["Guess a number between 1 and 10.", "Your guess?"]
    low, high, guesses = 1, 10, 0
    while True:
        guess = (low + high) // 2
        question = replies[-1]
        if guesses % 2:  # press the button of that number
            [button] = [b["button"] for b in question["buttons"] if b["label"] == str(guess)]
            answer = await bot.say(token, button=button)
        else:
            answer = await bot.say(token, str(guess))
        guesses += 1
        assert answer[0]["said"] == str(guess)
        replies += answer
        if answer[0].get("media"):
            assert texts(answer) == [f"You got it in {guesses}!", "Your score card"]
            assert [a["media"] for a in answer] == ["image", "file"]
            return replies
        assert texts(answer) in (["Higher!", "Your guess?"], ["Lower!", "Your guess?"]), answer
        low, high = (guess + 1, high) if answer[0]["text"] == "Higher!" else (low, guess - 1)


async def test_a_whole_game_over_the_api_and_its_history(tmp_path: Path) -> None:
    async with web_bot(SQLiteStore(tmp_path / "web.db"), FAST) as bot:
        token = await bot.token()
        assert await bot.history(token) == []
        replies = await play(bot, token)
        assert [r["seq"] for r in replies] == list(range(1, len(replies) + 1))
        assert replies[-3]["buttons"][0] == {"label": "1", "button": f"#{replies[-3]['seq']}.0"}
        assert await bot.history(token) == replies  # what a reloaded page shows
        status, after, _ = await bot.call("GET", f"/web/history?token={token}&after={len(replies) - 1}")
        assert (status, after["replies"]) == (200, replies[-1:])
        session = await bot.engine.store.load(SessionKey(partition_of(token), "web_guessbot"))
        assert session is not None and session.outbox == ()  # delivered: logged, nothing waits


async def test_a_retried_post_is_processed_once_and_answered_alike() -> None:
    async with web_bot(MemoryStore(), FAST) as bot:
        token = await bot.token()
        first = await bot.say(token, "/start", message_id="m-1")
        again = await bot.say(token, "/start", message_id="m-1")
        assert again == first and texts(first) == ["Guess a number between 1 and 10.", "Your guess?"]
        guess = await bot.say(token, "5", message_id="m-2")
        assert await bot.say(token, "5", message_id="m-2") == guess
        assert len(await bot.history(token)) == 4  # each turn once


async def test_tokens_name_their_session_and_forged_altered_or_expired_ones_get_401() -> None:
    store = MemoryStore()
    async with web_bot(store, FAST) as bot:
        token = await bot.token()
        other = await bot.token()
        assert partition_of(token) != partition_of(other) and partition_of(token).startswith("web:")
        renewed = await bot.token({"token": token})
        assert partition_of(renewed) == partition_of(token)
        body, mac = token.split(".")
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        swapped = base64.urlsafe_b64encode(
            json.dumps({**payload, "p": partition_of(other)}).encode()).rstrip(b"=").decode()
        expired = Tokens(SECRET, 60).issue(Visitor(partition_of(token)), time.time() - 3600)
        forged = Tokens("another-secret-0123456789", 3600).issue(Visitor(partition_of(token)), time.time())
        for bad in (f"{swapped}.{mac}", f"{body}.{mac[:-2]}AA", expired, forged, "nonsense", "", 42, None):
            for method, path, sent in (("POST", "/web/messages", {"token": bad, "text": "hi", "id": "x"}),
                                       ("POST", "/web/session", {"token": bad}),
                                       ("GET", f"/web/history?token={bad}", None),
                                       ("GET", f"/web/stream?token={bad}", None)):
                status, answer, _ = await bot.call(method, path, sent)
                assert status == 401, (bad, path, status, answer)
        status, _, _ = await bot.call("POST", "/web/messages", {"text": "hi", "id": "x"})
        assert status == 401
        assert await store.list_sessions() == []  # nothing was stored for any of them


async def test_a_signed_site_user_gets_one_conversation_on_every_device() -> None:
    async with web_bot(MemoryStore(), FAST) as bot:
        signature = hmac.new(SECRET.encode(), b"user:alice@shop", hashlib.sha256).hexdigest()
        laptop = await bot.token({"user": "alice@shop", "signature": signature})
        phone = await bot.token({"user": "alice@shop", "signature": signature.upper()})
        assert partition_of(laptop) == partition_of(phone) == "web:user:alice@shop"
        started = await bot.say(laptop, "/start")
        assert await bot.history(phone) == started
        for body in ({"user": "alice@shop", "signature": signature[:-1] + "0"}, {"user": "bob", "signature": signature},
                     {"user": "alice@shop"}, {"user": "a/b", "signature": signature}):
            status, _, _ = await bot.call("POST", "/web/session", body)
            assert status == 401, body


@pytest.mark.parametrize("body", [
    b"not json", b"[1, 2]", b'"text"', b"{\"token\": NaN}", b"[" * 5_000 + b"]" * 5_000,
])
async def test_a_body_that_is_no_json_object_gets_400(body: bytes) -> None:
    async with web_bot(MemoryStore(), FAST) as bot:
        for path in ("/web/messages", "/web/session"):
            status, answer, _ = await bot.call("POST", path, raw=body)
            assert status == 400, (path, answer)


async def test_malformed_messages_get_400_naming_the_field_and_change_nothing() -> None:
    store = MemoryStore()
    async with web_bot(store, FAST) as bot:
        token = await bot.token()
        started = await bot.say(token, "/start")
        key = SessionKey(partition_of(token), "web_guessbot")
        before = await store.load(key)
        for body, culprit in [
            ({"token": token, "text": "5"}, "id"), ({"token": token, "text": "5", "id": ""}, "id"),
            ({"token": token, "text": "5", "id": 7}, "id"), ({"token": token, "text": "5", "id": "x" * 129}, "id"),
            ({"token": token, "id": "a"}, "text"), ({"token": token, "id": "a", "text": "5", "button": "#2.0"}, "text"),
            ({"token": token, "id": "a", "text": "   "}, "text"), ({"token": token, "id": "a", "text": ["5"]}, "text"),
            ({"token": token, "id": "a", "text": "9" * 4001}, "text"),
            ({"token": token, "id": "a", "button": "5"}, "button"), ({"token": token, "id": "a", "button": "#x.1"}, "button"),
            ({"token": token, "id": "a", "button": {"seq": 2}}, "button"),
            ({"token": token, "id": "a", "text": "5", "chat_id": 1}, "chat_id"),
        ]:
            status, answer, _ = await bot.call("POST", "/web/messages", body)
            assert (status, answer["field"]) == (400, culprit), body
        for query in ("after=-1", "after=x", "after=" + "9" * 30):
            status, _, _ = await bot.call("GET", f"/web/history?token={token}&{query}")
            assert status == 400
        status, _, _ = await bot.call("GET", f"/web/stream?token={token}", headers={"Last-Event-ID": "zz"})
        assert status == 400
        assert await store.load(key) == before
        assert await bot.history(token) == started


async def test_a_body_over_the_limit_gets_413() -> None:
    async with web_bot(MemoryStore(), WebOptions(poll_seconds=0.05, max_body=1024)) as bot:
        token = await bot.token()
        status, _, _ = await bot.call("POST", "/web/messages", {"token": token, "id": "a", "text": "x" * 2000})
        assert status == 413
        assert await bot.history(token) == []


async def test_a_token_over_its_rate_gets_429_with_retry_after_and_others_go_on() -> None:
    async with web_bot(MemoryStore(), WebOptions(poll_seconds=0.05, per_second=0.01, burst=3)) as bot:
        token, other = await bot.token(), await bot.token()
        await bot.say(token, "/start")
        await bot.say(token, "5")
        assert len(await bot.history(token)) == 4  # the third request
        status, answer, headers = await bot.call("POST", "/web/messages", {"token": token, "text": "6", "id": "b"})
        assert status == 429 and int(headers["Retry-After"]) >= 1 and answer["retry_after"] >= 1
        assert texts(await bot.say(other, "/start"))[0] == "Guess a number between 1 and 10."


async def test_cors_only_for_the_configured_origins() -> None:
    options = WebOptions(poll_seconds=0.05, origins=("https://shop.example.com",))
    async with web_bot(MemoryStore(), options) as bot:
        allowed, other = {"Origin": "https://shop.example.com"}, {"Origin": "https://evil.example.net"}
        status, _, headers = await bot.call("POST", "/web/session", {}, headers=allowed)
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
        status, _, headers = await bot.call("POST", "/web/session", {}, headers=other)
        assert "Access-Control-Allow-Origin" not in headers
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        status, _, headers = await bot.call("OPTIONS", "/web/messages", headers={**allowed, **preflight})
        assert status == 204 and "POST" in headers["Access-Control-Allow-Methods"]
        assert "Content-Type" in headers["Access-Control-Allow-Headers"]
        status, _, headers = await bot.call("OPTIONS", "/web/messages", headers={**other, **preflight})
        assert status == 403 and "Access-Control-Allow-Origin" not in headers
        status, page, headers = await bot.call("GET", "/web/")
        assert status == 200 and 'aria-live="polite"' in page
        assert headers["Content-Security-Policy"] == "frame-ancestors 'self' https://shop.example.com"


async def test_the_page_and_its_scripts_are_served() -> None:
    async with web_bot(MemoryStore(), FAST) as bot:
        for path, kind in (("/web/", "text/html"), ("/web/chat.js", "text/javascript"),
                           ("/web/chat.css", "text/css"), ("/web/embed.js", "text/javascript")):
            status, body, headers = await bot.call("GET", path)
            assert status == 200 and headers["Content-Type"].startswith(kind) and body
        status, _, headers = await bot.call("GET", "/web/")
        assert headers["Content-Security-Policy"] == "frame-ancestors 'self'"


async def test_an_old_button_is_no_longer_active() -> None:
    async with web_bot(MemoryStore(), FAST) as bot:
        token = await bot.token()
        first_question = (await bot.say(token, "/start"))[-1]
        await bot.say(token, "5")
        answer = await bot.say(token, button=first_question["buttons"][0]["button"])
        assert texts(answer) == ["That button is no longer active. Please answer the latest message."]


async def test_the_stream_pushes_a_timers_reply_and_resumes_from_last_event_id() -> None:
    clock = ManualClock()
    store = MemoryStore()
    async with web_bot(store, FAST, bot="bots/reminder.py", clock=clock) as bot:
        token = await bot.token()
        hello = await bot.say(token, "hi")
        async with open_stream(bot, token) as stream:
            okay = await bot.say(token, "remind me in 10 minutes to stretch")
            assert texts(okay) == ["Okay, in 10 minutes I'll remind you to stretch."]
            pushed = await stream.next()  # this tab's own reply, pushed as well (other tabs see it)
            assert (pushed["id"], pushed["event"], pushed["reply"]) == (str(okay[0]["seq"]), "reply", okay[0])
            clock.advance(timedelta(minutes=10))
            assert await Scheduler(bot.engine, bot.channel.send).fire_due() == 1
            reminder = await stream.next()
            assert reminder["reply"]["text"] == "⏰ Reminder: stretch" and "said" not in reminder["reply"]
        key = SessionKey(partition_of(token), "reminder")
        session = await store.load(key)
        assert session is not None and session.outbox == ()
        async with open_stream(bot, token, headers={"Last-Event-ID": str(hello[-1]["seq"])}) as resumed:
            assert [(await resumed.next())["reply"] for _ in range(2)] == [okay[0], reminder["reply"]]
        async with open_stream(bot, token, after=0) as from_start:
            assert (await from_start.next())["reply"] == hello[0]


async def test_a_reply_committed_by_one_replica_reaches_a_stream_held_by_another(tmp_path: Path) -> None:
    """Two engines and servers on one SQLite file: the stream on B follows the store, so it gets
    what A committed and logged (B's process never hears of it otherwise)."""
    async with web_bot(SQLiteStore(tmp_path / "shared.db"), FAST) as one, \
            web_bot(SQLiteStore(tmp_path / "shared.db"), FAST) as two:
        token = await one.token()
        async with open_stream(two, token) as stream:
            replies = await one.say(token, "/start")
            assert [(await stream.next())["reply"] for _ in replies] == replies
            answer = await two.say(token, "5")  # and back the other way, in the same conversation
            assert [(await stream.next())["reply"] for _ in answer] == answer
        assert await one.history(token) == replies + answer


async def test_conversations_the_bot_starts_reach_a_web_visitor() -> None:
    async with web_bot(MemoryStore(), FAST) as bot:
        token = await bot.token()
        key, address = await bot.channel.open(partition_of(token))
        started = await bot.engine.start(key, None, address, "promo-1", deliver=bot.channel.send)
        assert started.status == "started"
        assert texts(await bot.history(token)) == ["Guess a number between 1 and 10.", "Your guess?"]


async def test_a_store_that_is_down_gets_503_and_the_post_can_be_sent_again(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "web.db")
    async with web_bot(store, FAST) as bot:
        token = await bot.token()
        await store.close()
        status, _, _ = await bot.call("POST", "/web/messages", {"token": token, "text": "/start", "id": "m-1"})
        assert status == 503
        status, _, _ = await bot.call("GET", f"/web/history?token={token}")
        assert status == 503


async def test_the_cli_names_a_missing_or_malformed_web_setting() -> None:
    code, _, error = await convoflow_command("run", "guessbot", "--channel", "web", "--store", "memory://")
    assert code != 0 and "CONVOFLOW_WEB_SECRET" in error and "Traceback" not in error
    code, _, error = await convoflow_command("run", "guessbot", "--channel", "web", "--store", "memory://",
                                             CONVOFLOW_WEB_SECRET=SECRET, CONVOFLOW_WEB_ORIGINS="shop.example.com")
    assert code != 0 and "CONVOFLOW_WEB_ORIGINS" in error and "Traceback" not in error

