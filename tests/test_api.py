"""The HTTP API for the outside world (`POST /events`, `POST /conversations`) of a real
`convoflow run --channel all` server, against the fake Telegram and Slack: bearer auth, refusals
that name the field and change nothing, events processed once, conversations the bot starts on
Telegram and Slack and continued by the user's answer."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convoflow.adapters.channel import routed
from convoflow.adapters.console.channel import ConsoleChannel
from convoflow.adapters.host.api import api_routes
from convoflow.adapters.host.app import make_app
from convoflow.adapters.host.loader import load_bot
from convoflow.adapters.host.starts import Starter
from convoflow.messages import SessionKey
from convoflow.stores import MemoryStore
from convoflow.stores.base import Session, StoreError
from convoflow.turn_runner import TurnRunner
from convoflow.turns import Engine
from tests.support.api_harness import API_TOKEN, OUTREACH, Served, serving
from tests.support.fake_telegram import BOT_ID

CHAT = 4242
SESSION = f"telegram:{BOT_ID}:{CHAT}/outreach"


async def test_without_a_token_set_the_routes_do_not_exist(tmp_path: Path) -> None:
    async with serving(tmp_path, api_token=None) as served:
        for path in ("/events", "/conversations"):
            status, _ = await served.call(path, {"session": SESSION, "name": "paid", "id": "1"})
            assert status == 404


async def test_calls_without_the_right_bearer_token_are_refused_and_change_nothing(tmp_path: Path) -> None:
    async with serving(tmp_path) as served:
        await served.telegram_says(CHAT, "/start")
        await served.telegram.wait_for(lambda: served.telegram.texts(CHAT) == ["Waiting for the payment."])
        before = await served.settled()
        event = {"session": SESSION, "name": "paid", "data": {"order": "A1"}, "id": "pay-1"}
        start = {"to": "telegram:77", "dialog": "promo", "args": ["X"], "id": "c-1"}
        for token, headers in [(None, {}), ("wrong-token-0123456789", {}), (API_TOKEN + "x", {}),
                               (None, {"Authorization": API_TOKEN}), (None, {"Authorization": f"Basic {API_TOKEN}"}),
                               (None, {"Authorization": f"bearer  {API_TOKEN}"})]:
            for path, body in (("/events", event), ("/conversations", start)):
                status, answer = await served.call(path, body, token=token, headers=headers)
                assert status == 401, (path, token, headers, answer)
                assert answer["field"] == "authorization"
        assert await served.snapshot() == before
        assert served.telegram.texts(CHAT) == ["Waiting for the payment."]
        assert served.telegram.texts(77) == []


MALFORMED: list[tuple[str, Any, str]] = [
    ("/events", b"{not json", "body"),
    ("/events", b"\xff\xfe", "body"),
    ("/events", b'{"session": NaN}', "body"),
    ("/events", b'{"session": "a/b", "name": "paid", "id": "\\ud800"}', "body"),
    ("/events", [1, 2], "body"),
    ("/events", {"name": "paid", "id": "1"}, "session"),
    ("/events", {"session": "no-app-here", "name": "paid", "id": "1"}, "session"),
    ("/events", {"session": 5, "name": "paid", "id": "1"}, "session"),
    ("/events", {"session": f"telegram:{BOT_ID}:{CHAT}/guessbot", "name": "paid", "id": "1"}, "session"),
    ("/events", {"session": SESSION, "id": "1"}, "name"),
    ("/events", {"session": SESSION, "name": "", "id": "1"}, "name"),
    ("/events", {"session": SESSION, "name": "paid"}, "id"),
    ("/events", {"session": SESSION, "name": "paid", "id": 7}, "id"),
    ("/events", {"session": SESSION, "name": "paid", "id": "1", "extra": True}, "extra"),
    ("/conversations", {"dialog": "promo", "id": "c"}, "to"),
    ("/conversations", {"to": "telegram:77", "dialog": "promo", "args": ["X"]}, "id"),
    ("/conversations", {"to": "fax:77", "id": "c"}, "to"),
    ("/conversations", {"to": "telegram:seventy", "id": "c"}, "to"),
    ("/conversations", {"to": "slack:T111", "id": "c"}, "to"),
    ("/conversations", {"to": "slack:T999:U777", "id": "c"}, "to"),
    ("/conversations", {"to": "telegram:77", "dialog": "nope", "id": "c"}, "dialog"),
    ("/conversations", {"to": "telegram:77", "dialog": 3, "id": "c"}, "dialog"),
    ("/conversations", {"to": "telegram:77", "dialog": "promo", "args": "X", "id": "c"}, "args"),
    ("/conversations", {"to": "telegram:77", "dialog": "promo", "args": [], "id": "c"}, "args"),
    ("/conversations", {"to": "telegram:77", "dialog": "promo", "args": ["X", "Y"], "id": "c"}, "args"),
    ("/conversations", {"to": "telegram:77", "args": ["X"], "id": "c"}, "args"),
    ("/conversations", {"to": "telegram:77", "id": "c", "if_running": "later"}, "if_running"),
]


@pytest.mark.parametrize(("path", "body", "field"), MALFORMED, ids=[f"{p}-{f}-{i}" for i, (p, _, f) in enumerate(MALFORMED)])
async def test_a_malformed_call_gets_400_naming_the_field_and_changes_nothing(
    tmp_path: Path, path: str, body: Any, field: str
) -> None:
    async with serving(tmp_path) as served:
        await served.telegram_says(CHAT, "/start")
        await served.telegram.wait_for(lambda: served.telegram.texts(CHAT) == ["Waiting for the payment."])
        before = await served.settled()
        raw = body if isinstance(body, bytes) else None
        status, answer = await served.call(path, None if raw else body, raw=raw)
        assert status == 400, answer
        assert answer["field"] == field, answer
        assert field in answer["error"]
        assert await served.snapshot() == before
        assert served.telegram.texts(CHAT) == ["Waiting for the payment."]
        assert served.telegram.texts(77) == [] and served.slack.called("conversations.open") == []


async def test_an_event_reaches_its_session_once_however_often_it_is_posted(tmp_path: Path) -> None:
    async with serving(tmp_path) as served:
        await served.telegram_says(CHAT, "/start")
        await served.telegram.wait_for(lambda: served.telegram.texts(CHAT) == ["Waiting for the payment."])
        event = {"session": SESSION, "name": "paid", "data": {"order": "A1"}, "id": "pay-1"}
        assert await served.call("/events", event) == (200, {"status": "delivered", "session": SESSION})
        assert served.telegram.texts(CHAT) == ["Waiting for the payment.", "Paid order A1."]
        for _ in range(3):
            assert await served.call("/events", event) == (200, {"status": "duplicate", "session": SESSION})
        assert served.telegram.texts(CHAT) == ["Waiting for the payment.", "Paid order A1."]


async def test_an_event_no_wait_takes_yet_is_kept_and_one_for_no_session_is_404(tmp_path: Path) -> None:
    async with serving(tmp_path) as served:
        await served.telegram_says(CHAT, "/start")
        await served.telegram.wait_for(lambda: served.telegram.texts(CHAT) == ["Waiting for the payment."])
        early = {"session": SESSION, "name": "shipped", "data": None, "id": "ship-1"}
        assert await served.call("/events", early) == (200, {"status": "kept", "session": SESSION})
        before = await served.settled()
        nobody = f"telegram:{BOT_ID}:999/outreach"
        status, answer = await served.call("/events", {"session": nobody, "name": "paid", "id": "pay-9"})
        assert (status, answer["status"]) == (404, "unknown")
        assert await served.snapshot() == before


async def test_a_conversation_started_on_telegram_is_continued_by_the_users_answer(tmp_path: Path) -> None:
    async with serving(tmp_path) as served:
        start = {"to": "telegram:77", "dialog": "promo", "args": ["SPRING"], "id": "spring-77"}
        session = f"telegram:{BOT_ID}:77/outreach"
        assert await served.call("/conversations", start) == (200, {"status": "started", "session": session})
        assert served.telegram.texts(77) == ["Spring sale, code SPRING. Interested?"]
        assert await served.call("/conversations", start) == (200, {"status": "duplicate", "session": session})
        again = {**start, "id": "spring-77-again"}
        assert await served.call("/conversations", again) == (200, {"status": "skipped", "session": session})
        assert served.telegram.texts(77) == ["Spring sale, code SPRING. Interested?"]
        await served.telegram_says(77, "yes please")
        await served.telegram.wait_for(lambda: len(served.telegram.texts(77)) == 2)
        assert served.telegram.texts(77)[1] == "Noted: yes please."


async def test_a_conversation_started_with_a_slack_user_goes_to_their_dm_and_their_answer_continues_it(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as served:
        start = {"to": "slack:T111:U777", "dialog": "promo", "args": ["SPRING"], "id": "spring-U777"}
        status, answer = await served.call("/conversations", start)
        assert (status, answer) == (200, {"status": "started", "session": "slack:-:T111:D777/outreach"})
        [opened] = served.slack.called("conversations.open")
        assert opened.params["users"] == "U777"
        assert served.slack.texts(channel="D777") == ["Spring sale, code SPRING. Interested?"]
        await served.slack_says("D777", "U777", "sure")
        await served.slack.wait_for_posts(2, channel="D777")
        assert served.slack.texts(channel="D777") == ["Spring sale, code SPRING. Interested?", "Noted: sure."]


async def test_a_conversation_started_in_a_slack_channel_and_with_the_bots_own_dialog(tmp_path: Path) -> None:
    async with serving(tmp_path) as served:
        status, answer = await served.call("/conversations", {"to": "slack:T111:C555", "id": "c-555"})
        assert (status, answer) == (200, {"status": "started", "session": "slack:-:T111:C555/outreach"})
        assert served.slack.called("conversations.open") == []
        assert served.slack.texts(channel="C555") == ["Waiting for the payment."]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = st.sampled_from(["session", "name", "data", "id", "to", "dialog", "args", "if_running", "other"])
PLAUSIBLE = {
    "session": st.sampled_from([SESSION, "a/b", "/", "x/", "telegram:1/outreach"]) | st.text(max_size=30),
    "name": st.sampled_from(["paid", "shipped", ""]) | st.text(max_size=10),
    "id": st.text(max_size=12) | st.integers(),
    "to": st.sampled_from(["telegram:77", "telegram:-100", "telegram:0", "slack:T111:U9", "slack:T111:C1",
                           "slack:T111:", "slack::U1", "console:x", "telegram:" + "9" * 30]) | st.text(max_size=20),
    "dialog": st.sampled_from(["promo", "main", "nope", "__init__"]) | JSON_VALUES,
    "args": st.lists(JSON_VALUES, max_size=3) | JSON_VALUES,
    "if_running": st.sampled_from(["skip", "replace", "queue", "SKIP"]) | JSON_VALUES,
}
BODIES = st.one_of(
    st.dictionaries(FIELDS, JSON_VALUES, max_size=6),
    st.fixed_dictionaries({}, optional={name: strategy for name, strategy in PLAUSIBLE.items()}),
    JSON_VALUES,
)
RAW = st.one_of(BODIES.map(lambda body: json.dumps(body).encode()), st.binary(max_size=60),
                st.text(max_size=40).map(lambda text: text.encode("utf-8", "surrogatepass")))
AUTH = st.sampled_from([API_TOKEN, None, "", API_TOKEN[:-1], API_TOKEN + " "])


def test_fuzzed_calls_get_a_4xx_or_their_answer_never_another_5xx_and_refusals_change_nothing(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    served: Served = loop.run_until_complete(stack.enter_async_context(serving(tmp_path)))
    statuses: collections.Counter[int] = collections.Counter()

    async def check(path: str, raw: bytes, token: str | None) -> None:
        before = await served.settled()
        status, answer = await served.call(path, raw=raw, token=token)
        statuses[status] += 1
        assert status in (200, 400, 401, 404, 503), (status, answer)
        if status == 200:
            assert isinstance(answer, dict) and answer["status"] in (
                "delivered", "kept", "duplicate", "failed", "started", "replaced", "queued", "skipped", "blocked")
        elif status != 503:
            assert isinstance(answer, dict) and isinstance(answer["field"], str) and answer["error"], answer
            assert await served.settled() == before, f"a refused call ({status} {answer}) changed the store"

    @settings(deadline=None, database=None, suppress_health_check=list(HealthCheck), max_examples=150)
    @given(path=st.sampled_from(["/events", "/conversations"]), raw=RAW, token=AUTH)
    def one(path: str, raw: bytes, token: str | None) -> None:
        loop.run_until_complete(check(path, raw, token))

    try:
        loop.run_until_complete(served.telegram_says(CHAT, "/start"))
        one()
        assert statuses[400] and statuses[401], statuses
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


class OutageStore(MemoryStore):
    """A memory store that can be taken down: every read and write fails while it is."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def load(self, key: SessionKey) -> Session | None:
        if self.down:
            raise StoreError("the store is down")
        return await super().load(key)

    async def commit(self, session: Session) -> None:
        if self.down:
            raise StoreError("the store is down")
        await super().commit(session)


async def test_a_call_whose_turn_did_not_commit_gets_503_and_succeeds_when_called_again() -> None:
    bot = load_bot(OUTREACH)
    store = OutageStore()
    engine = Engine(bot.dialog, store, app=bot.app)
    screen = io.StringIO()
    console = ConsoleChannel(TurnRunner(engine), stdin=io.StringIO(), stdout=screen)
    routes = api_routes(API_TOKEN, Starter(engine, [console], bot.dialogs), routed([console]))
    server = TestServer(make_app([], routes=routes), host="127.0.0.1")
    await server.start_server()
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    start = {"to": "console:ann", "dialog": "promo", "args": ["DOWN"], "id": "down-1"}
    event = {"session": "console:ann/outreach", "name": "paid", "id": "pay-1"}
    try:
        async with aiohttp.ClientSession() as http:
            store.down = True
            for path, body in (("/conversations", start), ("/events", event)):
                async with http.post(server.make_url(path), json=body, headers=headers) as response:
                    assert response.status == 503 and response.headers["Retry-After"] == "1"
            assert screen.getvalue() == ""
            store.down = False
            async with http.post(server.make_url("/conversations"), json=start, headers=headers) as response:
                assert (response.status, await response.json()) == (
                    200, {"status": "started", "session": "console:ann/outreach"})
            assert "Spring sale, code DOWN. Interested?" in screen.getvalue()
            async with http.post(server.make_url("/events"), json=event, headers=headers) as response:
                assert (response.status, (await response.json())["status"]) == (200, "kept")
    finally:
        await server.close()
