"""Many conversations through several `convoflow run` processes behind a round-robin proxy, with
Telegram's and Slack's redelivery played by the test: what the scale-out test and benchmark share.

Each process gets its own API root at the fakes (`p0`, `p1`, ...), so every reply is recorded with
the process that sent it. The bot is tests/support/numbered_guessbot.py: every reply of a game is unique,
so a reply that arrives twice, or never, shows in the replies themselves.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from convoflow.adapters.host.sessions import describe
from convoflow.adapters.telegram.channel import SECRET_HEADER
from convoflow.stores import open_store
from tests.support.convoflow_process import ConvoflowProcess
from tests.support.fake_slack import Call as SlackCall
from tests.support.fake_slack import FakeSlack
from tests.support.fake_telegram import BOT_ID, TOKEN, FakeTelegram, message, private_chat
from tests.support.numbered_guessbot import HIGHEST, expected_replies
from tests.support.slack_payloads import SIGNING_SECRET, dm, event_callback, signed_headers

BOT = "tests/support/numbered_guessbot.py"
APP = "numbered_guessbot"
WEBHOOK_SECRET = "scale-Webhook_secret"
TELEGRAM_RETRY_SECONDS = 0.25
"""Telegram redelivers a webhook call not answered 2xx (after a growing pause; here a short one)."""
TELEGRAM_ATTEMPTS = 400
SLACK_ACK_SECONDS = 3.0
"""Slack counts an event not answered 2xx within 3 seconds as failed and retries it."""
SLACK_RETRY_SECONDS = (0.5, 1.0, 2.0)
"""Slack retries a failed event three times (at once, after 1 and after 5 minutes; shortened)."""
REPLY_SECONDS = 90.0
"""How long a user waits for a reply before it counts as lost."""
PROXY_DOWN_SECONDS = 2.0
"""A backend that refused a connection is skipped this long (passive health checking)."""
BACKEND_HEADER = "X-Proxy-Backend"
"""Which backend answered (or failed to): for the users' traces."""
HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


# --- the load balancer ---------------------------------------------------------------------------


class Proxy:
    """A round-robin reverse proxy for the webhook routes. A backend that refuses or drops the
    connection gets that request answered 502 (the platform redelivers) and is skipped for
    PROXY_DOWN_SECONDS."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = list(backends)
        self.down_until = {backend: 0.0 for backend in backends}
        self.forwarded = 0
        self.refused = 0
        self._turn = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> Proxy:
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                           timeout=aiohttp.ClientTimeout(total=70))
        app = web.Application()
        app.router.add_post("/telegram/webhook", self._forward)
        app.router.add_post("/slack/events", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    def _next(self) -> str:
        now = time.monotonic()
        for _ in self.backends:
            backend = self.backends[self._turn % len(self.backends)]
            self._turn += 1
            if self.down_until[backend] <= now:
                return backend
        return self.backends[self._turn % len(self.backends)]  # all down: try anyway

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        backend = self._next()
        try:
            async with self._http.post(backend + request.path, data=body, headers=headers) as response:
                payload = await response.read()
                self.forwarded += 1
                return web.Response(status=response.status, body=payload, headers={
                    "Content-Type": response.headers.get("Content-Type", "text/plain"), BACKEND_HEADER: backend})
        except aiohttp.ClientConnectionError as error:
            self.down_until[backend] = time.monotonic() + PROXY_DOWN_SECONDS
            self.refused += 1
            return web.Response(status=502, text=f"bad gateway: {type(error).__name__}", headers={BACKEND_HEADER: backend})


# --- the bot processes ---------------------------------------------------------------------------


def fleet_settings(origin: str, telegram: FakeTelegram, slack: FakeSlack, store_url: str) -> dict[str, str]:
    """A process's environment: both channels (webhook mode), its own API roots, the shared store."""
    return {
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": telegram.url_for(origin),
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.org/telegram/webhook", "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SLACK_BOT_TOKEN": slack.teams[0].bot_token, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url_for(origin), "CONVOFLOW_STORE": store_url,
        "CONVOFLOW_WEB_SECRET": "scale-out-web-secret-0123",
    }


def bot_process(origin: str, telegram: FakeTelegram, slack: FakeSlack, store_url: str, log_dir: Path,
                *args: str) -> ConvoflowProcess:
    """`convoflow run tests/support/numbered_guessbot.py --channel all ARGS`, its calls recorded as `origin`."""
    return ConvoflowProcess(log_dir / f"{origin}.log", BOT, "--channel", "all", *args,
                            settings=fleet_settings(origin, telegram, slack, store_url))


def fleet(size: int, telegram: FakeTelegram, slack: FakeSlack, store_url: str, log_dir: Path,
          *args: str) -> list[ConvoflowProcess]:
    """`size` bot processes, named p0, p1, ..."""
    return [bot_process(f"p{n}", telegram, slack, store_url, log_dir, *args) for n in range(size)]


async def metric_samples(process: ConvoflowProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the process's /metrics, by name and labels."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{process.url}/metrics") as response:
            text = await response.text()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (found, found_labels), value in samples.items() if found == name and wanted <= found_labels)


# --- users and platforms -------------------------------------------------------------------------


@dataclass
class Conversation:
    """One user's game on one platform, and every reply it received, with the process that sent it."""

    channel: str
    address: int | str
    user: str = ""
    received: list[tuple[str, str]] = field(default_factory=list)
    inbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    turns: int = 0
    redeliveries: int = 0
    gave_up: int = 0
    """Messages the platform stopped redelivering (Slack tries four times in all)."""
    latencies: list[float] = field(default_factory=list)
    finished: bool = False
    problem: str | None = None
    trace: list[str] = field(default_factory=list)
    """What happened to each message: when it was posted, where, and the answer."""

    def note(self, what: str) -> None:
        self.trace.append(f"{time.monotonic():.2f} {what}")

    @property
    def partition(self) -> str:
        return f"telegram:{BOT_ID}:{self.address}" if self.channel == "telegram" else f"slack:-:T111:{self.address}"

    @property
    def key(self) -> str:
        return f"{self.partition}/{APP}"

    def arrive(self, text: str, origin: str) -> None:
        self.note(f"reply {text!r} from {origin}")
        self.received.append((text, origin))
        self.inbox.put_nowait(text)

    async def next_reply(self, seen: set[str]) -> str:
        """The next reply not received before (a repeat is a duplicate: recorded, not read)."""
        while True:
            try:
                text = await asyncio.wait_for(self.inbox.get(), REPLY_SECONDS)
            except TimeoutError:
                raise AssertionError(f"no reply within {REPLY_SECONDS:g} s") from None
            if text not in seen:
                seen.add(text)
                return text


@dataclass
class Progress:
    turns: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self) -> None:
        self.turns += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def reached(self, turns: int) -> None:
        while self.turns < turns:
            await self._changed.wait()


class Platforms:
    """Telegram and Slack as the bot sees them: each user message posted to the proxy, redelivered
    as the platform does when the answer is not 2xx (or, for Slack, not within 3 seconds)."""

    def __init__(self, telegram: FakeTelegram, slack: FakeSlack, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.conversations: dict[tuple[str, int | str], Conversation] = {}
        self.progress = Progress()
        self.stray: list[str] = []
        """Replies to nobody we know (must stay empty)."""
        telegram.listeners.append(self._on_telegram)
        slack.listeners.append(self._on_slack)

    async def close(self) -> None:
        await self.http.close()

    def telegram_chat(self, chat_id: int) -> Conversation:
        return self.conversations.setdefault(("telegram", chat_id), Conversation("telegram", chat_id))

    def slack_dm(self, n: int) -> Conversation:
        return self.conversations.setdefault(("slack", f"D{n:04d}"), Conversation("slack", f"D{n:04d}", f"W{n:04d}"))

    def _on_telegram(self, call: Any) -> None:
        found = self.conversations.get(("telegram", call.chat_id))
        if found is None:
            self.stray.append(f"telegram {call.chat_id}: {call.text}")
        else:
            found.arrive(call.text, call.origin)

    def _on_slack(self, call: SlackCall) -> None:
        found = self.conversations.get(("slack", call.params["channel"]))
        if found is None:
            self.stray.append(f"slack {call.params['channel']}: {call.params.get('text')}")
        else:
            found.arrive(call.params.get("text", ""), call.origin)

    async def say(self, conversation: Conversation, text: str) -> None:
        conversation.turns += 1
        self.progress.count()
        if conversation.channel == "telegram":
            await self._telegram(conversation, text)
        else:
            await self._slack(conversation, text)

    async def _telegram(self, conversation: Conversation, text: str) -> None:
        """Telegram posts an update until it is answered 2xx, and holds the chat's later updates
        back meanwhile."""
        body = json.dumps(message(private_chat(int(conversation.address)), text=text))
        headers = {SECRET_HEADER: WEBHOOK_SECRET, "Content-Type": "application/json"}
        for attempt in range(TELEGRAM_ATTEMPTS):
            conversation.note(f"{text!r} #{attempt} posted")
            try:
                async with self.http.post(f"{self.url}/telegram/webhook", data=body, headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=60)) as response:
                    await response.read()
                    conversation.note(f"{text!r} #{attempt}: {response.status} from {response.headers.get(BACKEND_HEADER)}")
                    if 200 <= response.status < 300:
                        return
            except (aiohttp.ClientError, TimeoutError) as error:
                conversation.note(f"{text!r} #{attempt}: {error!r}")
            conversation.redeliveries += 1
            await asyncio.sleep(TELEGRAM_RETRY_SECONDS)
        conversation.gave_up += 1
        conversation.note(f"{text!r}: the platform gave up")

    async def _slack(self, conversation: Conversation, text: str) -> None:
        """Slack posts an event, and retries it three times, with X-Slack-Retry-Num, when it is not
        acknowledged within 3 seconds."""
        body = json.dumps(event_callback(dm(text, user=conversation.user, channel=str(conversation.address))))
        reason = ""
        for attempt, pause in enumerate((*SLACK_RETRY_SECONDS, None)):
            conversation.note(f"{text!r} #{attempt} posted")
            headers = signed_headers(body, retry=attempt or None)
            if attempt:
                headers["X-Slack-Retry-Reason"] = reason
            try:
                async with self.http.post(f"{self.url}/slack/events", data=body, headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=SLACK_ACK_SECONDS)) as response:
                    await response.read()
                    conversation.note(f"{text!r} #{attempt}: {response.status} from {response.headers.get(BACKEND_HEADER)}")
                    if response.status == 200:
                        return
                    reason = "http_error"
            except TimeoutError:
                conversation.note(f"{text!r} #{attempt}: no answer within {SLACK_ACK_SECONDS:g} s")
                reason = "http_timeout"
            except aiohttp.ClientError as error:
                conversation.note(f"{text!r} #{attempt}: {error!r}")
                reason = "connection_failed"
            if pause is None:
                break
            conversation.redeliveries += 1
            await asyncio.sleep(pause)
        conversation.gave_up += 1
        conversation.note(f"{text!r}: the platform gave up")


async def play(conversation: Conversation, platforms: Platforms) -> None:
    """One game by bisection, as a user plays it: send, wait for the replies, answer. Stops at the
    first reply that is missing or wrong, noting it in `conversation.problem`."""
    seen: set[str] = set()

    async def turn(text: str, replies: int) -> list[str]:
        started = time.perf_counter()
        await platforms.say(conversation, text)
        answer = [await conversation.next_reply(seen) for _ in range(replies)]
        conversation.latencies.append(time.perf_counter() - started)
        return answer

    try:
        start = await turn("/start" if conversation.channel == "telegram" else "hi", 2)
        assert start == [f"Guess a number between 1 and {HIGHEST}.", "Guess 1?"], start
        low, high, guesses = 1, HIGHEST, 0
        while True:
            guess = (low + high) // 2
            guesses += 1
            [answer] = await turn(str(guess), 1)
            if answer.startswith("Yes, "):
                assert answer == f"Yes, {guess}! Found in {guesses}.", answer
                conversation.finished = True
                return
            assert answer in (f"{guess} is too low.", f"{guess} is too high."), answer
            low, high = (guess + 1, high) if answer.endswith("low.") else (low, guess - 1)
            assert await conversation.next_reply(seen) == f"Guess {guesses + 1}?"
    except AssertionError as error:
        conversation.problem = f"after {conversation.turns} messages: {error}; lately: {conversation.trace[-6:]}"


# --- checking ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What one conversation received, compared with what its stored game says it should have."""

    key: str
    lost: list[str]
    """Expected replies never received."""
    duplicates: list[tuple[str, list[str]]]
    """Replies received more than once, with the process that sent each copy."""
    misordered: bool
    repeated_turns: list[int]
    """The turns (0: the first) whose replies came more than once."""
    outbox: int
    """Replies still undelivered in the stored session."""
    finished: bool


@dataclass(frozen=True)
class StoredGame:
    secret: int | None
    outbox: int
    """Replies still undelivered."""
    finished: bool
    seen: int
    """How many of the user's messages the session has taken."""


async def stored_games(store_url: str) -> dict[str, StoredGame]:
    """Every stored session of the bot, read through the store and the `sessions show` view."""
    store = open_store(store_url)
    try:
        games: dict[str, StoredGame] = {}
        for session in await store.list_sessions(limit=100_000):
            drawn = re.search(r"draw_secret: (\d+)", describe(session))
            finished = session.state is not None and "result" in session.state
            games[str(session.key)] = StoredGame(int(drawn[1]) if drawn else None, len(session.outbox), finished,
                                                 len(session.seen))
        return games
    finally:
        await store.close()


def verdict(conversation: Conversation, stored: StoredGame) -> Verdict:
    expected = expected_replies(stored.secret) if stored.secret is not None else []
    texts = [text for text, _ in conversation.received]
    first_copies = list(dict.fromkeys(texts))
    copies: dict[str, list[str]] = {}
    for text, origin in conversation.received:
        copies.setdefault(text, []).append(origin)
    return Verdict(
        key=conversation.key,
        lost=[text for text in expected if text not in copies],
        duplicates=[(text, origins) for text, origins in copies.items() if len(origins) > 1],
        # Each turn has two replies (an answer and the next question) but the last, which has one.
        repeated_turns=sorted({expected.index(t) // 2 for t, origins in copies.items() if len(origins) > 1 and t in expected}),
        misordered=[t for t in first_copies if t in expected] != [t for t in expected if t in copies]
        or any(t not in expected for t in first_copies),
        outbox=stored.outbox,
        finished=stored.finished,
    )
