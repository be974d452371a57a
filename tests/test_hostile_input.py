"""Fuzzing both webhooks and the web chat's routes of `convoflow run guessbot --channel all` with
hostile requests: realistic Telegram updates, Slack payloads and web chat posts mutated by
hypothesis, signed or not (tests/support/hostile.py).

Every request gets the status the one status table gives it (never a 5xx other than 503), a
refused or unhandled request changes nothing in the store, every unhandled one is counted in
/metrics, nothing logs a traceback, the server stays up, and normal updates work afterwards.
The bulk runs against the server in this process; a smaller run against a real process.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from convoflow.adapters.host.cli import parser, run_server
from convoflow.adapters.host.loader import load_bot
from convoflow.adapters.telegram.channel import SECRET_HEADER
from convoflow.stores import Store, open_store
from tests.support.api_harness import wait_ready
from tests.support.convoflow_process import ConvoflowProcess
from tests.support.fake_slack import FakeSlack
from tests.support.fake_telegram import TOKEN, FakeTelegram, message, private_chat
from tests.support.hostile import Hostile, slack_requests, telegram_requests, web_requests
from tests.support.mongo_server import free_port
from tests.support.slack_payloads import SIGNING_SECRET, dm, event_callback, signed_headers

WEBHOOK_SECRET = "fuzz-webhook_Secret"
WEB_SECRET = "fuzz-web-secret-0123456789"
IN_PROCESS_EXAMPLES = 300
PROCESS_EXAMPLES = 60


def settings_for(telegram: FakeTelegram, slack: FakeSlack) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": telegram.url,
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.org/telegram/webhook", "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SLACK_BOT_TOKEN": slack.teams[0].bot_token, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url, "CONVOFLOW_WEB_SECRET": WEB_SECRET,
    }


Conversation = tuple[str, tuple[str, ...]]
"""A session as far as a committed update changes it: its replay state (as JSON) and its seen ids
(delivery, which may still run for an earlier update, changes only the outbox and revision)."""


class Target:
    """A running `--channel all` server, the fakes it talks to, and what the fuzzing saw."""

    def __init__(self, url: str, store: Store, telegram: FakeTelegram, slack: FakeSlack) -> None:
        self.url, self.store, self.telegram, self.slack = url, store, telegram, slack
        self.http = aiohttp.ClientSession()
        self.unhandled: collections.Counter[tuple[str, str]] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()

    async def check(self, case: Hostile) -> None:
        before = await self.conversations()
        async with self.http.post(self.url + case.path, data=case.body, headers=case.headers) as response:
            status, text = response.status, await response.text()
        self.statuses[status] += 1
        assert status < 500 or status == 503, f"{status} {text}"
        assert status in case.expected, f"got {status} {text!r}, expected {set(case.expected)}"
        if status == 503:  # a turn that did not commit in time goes on: let it land before the next
            await self.settled()
        refused = status >= 400 or text.startswith("unhandled: ")
        if text.startswith("unhandled: "):
            self.unhandled[(case.channel, text.removeprefix("unhandled: "))] += 1
        if refused and status != 503:
            assert await self.conversations() == before, "a refused request changed the store"

    async def conversations(self) -> dict[str, Conversation]:
        sessions = await self.store.list_sessions(limit=1_000_000)
        return {str(s.key): (json.dumps(s.state, sort_keys=True), s.seen) for s in sessions}

    async def settled(self) -> None:
        previous = await self.conversations()
        for _ in range(100):
            await asyncio.sleep(0.1)
            now = await self.conversations()
            if now == previous:
                return
            previous = now

    async def afterwards(self) -> None:
        """The server is up, every unhandled update was counted, and normal updates still play."""
        async with self.http.get(self.url + "/healthz?ready=1") as response:
            assert response.status == 200
        async with self.http.get(self.url + "/metrics") as response:
            counted = {(s.labels["channel"], s.labels["reason"]): s.value
                       for family in text_string_to_metric_families(await response.text())
                       if family.name == "convoflow_unhandled_updates" for s in family.samples
                       if s.name.endswith("_total")}
        assert counted == {key: float(n) for key, n in self.unhandled.items()}
        assert self.unhandled, "the fuzzing never reached an unhandled update"
        assert sum(n for status, n in self.statuses.items() if status in (400, 401, 403)) > 0

        before = len(self.telegram.texts(99))
        update = message(private_chat(99), text="/start")
        async with self.http.post(self.url + "/telegram/webhook", data=json.dumps(update),
                                  headers={SECRET_HEADER: WEBHOOK_SECRET}) as response:
            assert response.status == 200
        await self.telegram.wait_for(lambda: len(self.telegram.texts(99)) >= before + 2)
        assert self.telegram.texts(99)[before:] == ["Guess a number between 1 and 10.", "Your guess?"]
        body = json.dumps(event_callback(dm("/start", channel="D999")))
        async with self.http.post(self.url + "/slack/events", data=body, headers=signed_headers(body)) as response:
            assert response.status == 200
        posts = await self.slack.next_posts("D999", 2)
        assert [p.params["text"] for p in posts] == ["Guess a number between 1 and 10.", "Your guess?"]
        async with self.http.post(self.url + "/web/session", json={}) as response:
            token = (await response.json())["token"]
        async with self.http.post(self.url + "/web/messages", json={"token": token, "text": "/start", "id": "x"}) as response:
            assert response.status == 200
            replies = (await response.json())["replies"]
        assert [r["text"] for r in replies] == ["Guess a number between 1 and 10.", "Your guess?"]

    async def close(self) -> None:
        await self.http.close()
        await self.store.close()


HOSTILE = st.one_of(telegram_requests(WEBHOOK_SECRET), slack_requests(), web_requests(WEB_SECRET))
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True)


def fuzz(loop: asyncio.AbstractEventLoop, target: Target, examples: int) -> None:
    @settings(FUZZ, max_examples=examples)
    @given(case=HOSTILE)
    def one(case: Hostile) -> None:
        loop.run_until_complete(target.check(case))

    one()


def run(loop: asyncio.AbstractEventLoop, work: Callable[[], Awaitable[Any]]) -> Any:
    return loop.run_until_complete(work())


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """This test's own event loop, run between hypothesis examples (which are synchronous)."""
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


def test_hostile_requests_to_both_webhooks_in_this_process(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    store_url = f"sqlite:///{tmp_path / 'bot.db'}"

    async def start() -> tuple[Target, asyncio.Event, asyncio.Task[None]]:
        telegram, slack = await FakeTelegram().start(), await FakeSlack().start()
        port = free_port()
        args = parser().parse_args(["run", "guessbot", "--channel", "all", "--store", store_url,
                                    "--host", "127.0.0.1", "--port", str(port)])
        stop = asyncio.Event()
        server = asyncio.create_task(run_server(args, settings_for(telegram, slack), load_bot("guessbot"), stop))
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, f"http://127.0.0.1:{port}", server)
        return Target(f"http://127.0.0.1:{port}", open_store(store_url, read_only=True), telegram, slack), stop, server

    target, stop, server = run(loop, start)
    try:
        fuzz(loop, target, IN_PROCESS_EXAMPLES)
        run(loop, target.afterwards)
        assert not server.done()
    finally:
        stop.set()
        loop.run_until_complete(asyncio.wait_for(server, 30))
        run(loop, target.close)
        run(loop, target.telegram.close)
        run(loop, target.slack.close)
    # A flow failing on an answer it cannot take is the flow's own business (the user gets the
    # apology): guessbot's int() of a photo. Anything else logged with a traceback is a bug.
    tracebacks = [record for record in caplog.records if record.exc_info and not is_flow_failure(record)]
    assert not tracebacks, [record.getMessage() for record in tracebacks]


def is_flow_failure(record: logging.LogRecord) -> bool:
    return record.name == "convoflow.engine" and record.getMessage().startswith("flow failed in session")


def test_hostile_requests_to_both_webhooks_of_a_real_process(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'bot.db'}"

    async def start() -> tuple[Target, ConvoflowProcess]:
        telegram, slack = await FakeTelegram().start(), await FakeSlack().start()
        process = ConvoflowProcess(tmp_path / "bot.log", "guessbot", "--channel", "all", "--store", store_url,
                                   settings=settings_for(telegram, slack))
        await process.start()
        return Target(process.url, open_store(store_url, read_only=True), telegram, slack), process

    target, process = run(loop, start)
    try:
        fuzz(loop, target, PROCESS_EXAMPLES)
        run(loop, target.afterwards)
        assert run(loop, process.stop) == 0
    finally:
        run(loop, process.kill)
        run(loop, target.close)
        run(loop, target.telegram.close)
        run(loop, target.slack.close)
    failures = [record for record in log_records(process.log())
                if (" ERROR " in record or "Traceback" in record) and "flow failed in session" not in record]
    assert not failures, failures


def log_records(log: str) -> list[str]:
    """The process's log lines, each with the traceback lines that follow it."""
    return re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log)
