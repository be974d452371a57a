"""Socket Mode: updates over a websocket the app opens (apps.connections.open), acknowledged by
envelope id; no public HTTP endpoint needed."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from convoflow.messages import SessionKey
from convoflow.stores import MemoryStore
from tests.support.fake_slack import APP_TOKEN, FakeSlack
from tests.support.slack_harness import bot_engine, running_slack
from tests.support.slack_payloads import block_actions, dm, event_callback


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = await FakeSlack().start()
    yield slack
    await slack.close()


def envelope(number: int, kind: str, payload: dict[str, Any], retry: int = 0) -> dict[str, Any]:
    return {"envelope_id": f"env-{number}", "type": kind, "payload": payload, "retry_attempt": retry,
            "retry_reason": "timeout" if retry else "", "accepts_response_payload": kind != "events_api"}


async def test_a_conversation_with_buttons_over_socket_mode(fake: FakeSlack) -> None:
    store = MemoryStore()
    async with running_slack(bot_engine("bots/signup.py", store), fake, app_token=APP_TOKEN) as app:
        await fake.wait_connected()
        [opened] = fake.called("apps.connections.open")
        assert opened.token == APP_TOKEN
        # No signing secret, so no HTTP events route: nothing unverifiable is accepted.
        assert (await app.send(dm("hi"))).status in (404, 405)

        events = [event_callback(dm(text)) for text in ["hi", "Ann", "34", "ann@example.com"]]
        for number, event in enumerate(events, 1):
            await fake.socket_send(envelope(number, "events_api", event))
            assert await fake.socket_ack(f"env-{number}") == {"envelope_id": f"env-{number}"}
        posts = await fake.next_posts("D111", 5)
        assert posts[-1].params["text"] == "Which plan would you like?"

        # A redelivered envelope (the same event, retried) is acknowledged and not processed again.
        await fake.socket_send(envelope(9, "events_api", events[-1], retry=1))
        await fake.socket_ack("env-9")

        await fake.socket_send(envelope(10, "interactive", block_actions(posts[-1], 0)))
        await fake.socket_ack("env-10")
        [confirm] = await fake.next_posts("D111", 1)
        assert confirm.params["text"] == "Sign up Ann (34, ann@example.com) for the free plan?"
        assert len(fake.called("chat.update")) == 1
    assert fake.inbox("D111").empty()
    await fake.wait_for(lambda: not fake.socket_open, what="the app to close its socket")
    session = await store.load(SessionKey("slack:-:T111:D111", "signup"))
    assert session is not None and len(session.seen) == len(events) + 1  # four messages, one click
