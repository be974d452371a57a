"""Slack's message limits and refusals, end to end: the real SlackChannel (slack-bolt, slack-sdk)
against the fake Slack, which holds messages to Slack's limits. Long texts and long questions
arrive whole, in order, exactly once; a refused message is re-sent smaller or dropped and counted,
and the conversation goes on; a transient failure keeps the reply for later."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from convoflow import Option, ask, dialog, get_client_response, send_message
from convoflow.adapters.host.metrics import ChannelDeliveries
from convoflow.adapters.slack.render import unescape
from convoflow.messages import SessionKey
from convoflow.turns import Engine
from convoflow.stores import MemoryStore
from tests.support.fake_slack import Call, FakeSlack
from tests.support.slack_harness import SlackApp, running_slack
from tests.support.slack_payloads import dm

KEY = SessionKey("slack:-:T111:D111", "limits")
HUGE = "if a < b && c > d then <@U1>\n" * 1700  # 50,000 characters, 83,300 once escaped
TERMS = "Read these terms & conditions carefully. " * 320  # 13,120 characters
TOWNS = [f"Town {n}" for n in range(1, 1301)]


@dialog()
def limits() -> Any:
    while True:
        said = yield get_client_response()
        if said == "huge":
            yield send_message(HUGE)
        elif said == "terms":
            agreed = yield ask(TERMS, choices=["Agree", "Decline"])
            yield send_message(f"you chose {agreed}")
        elif said == "towns":
            town = yield ask("Where do you live?", choices=[Option(name, n) for n, name in enumerate(TOWNS, 1)])
            yield send_message(f"town {town}")
        else:
            yield send_message(f"echo {said}")


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = await FakeSlack().start()
    yield slack
    await slack.close()


async def started(app: SlackApp) -> None:
    await say(app, "hi")  # the conversation begins, waiting for a message


async def say(app: SlackApp, text: str) -> None:
    """Send a DM and wait until its turn is over, replies delivered (the event is acknowledged
    once the turn has committed, before its replies go out)."""
    assert (await app.send(dm(text))).status == 200
    await app.channel.runner.drain()


def shown(fake: FakeSlack) -> list[str]:
    return [unescape(text) for text in fake.texts(channel="D111")]


def blocks_of(calls: list[Call]) -> list[dict[str, Any]]:
    return [block for call in calls for block in call.params.get("blocks") or []]


async def test_a_huge_text_arrives_whole_in_several_messages(fake: FakeSlack) -> None:
    async with running_slack(Engine(limits, MemoryStore(), app="limits"), fake) as app:
        await started(app)
        await say(app, "huge")
        await say(app, "after")
        texts = shown(fake)
    assert "".join(texts[:-1]) == HUGE and len(texts) == 4  # Slack would cut one message after 40,000
    assert texts[-1] == "echo after"
    assert all(call.ok for call in fake.called("chat.postMessage"))


async def test_a_question_longer_than_slack_takes_in_one_message_is_asked_in_several(fake: FakeSlack) -> None:
    async with running_slack(Engine(limits, MemoryStore(), app="limits"), fake) as app:
        await started(app)
        await say(app, "terms")
        posts = fake.posts(channel="D111")
        sections = [b["text"]["text"] for b in blocks_of(posts) if b["type"] == "section"]
        assert unescape("".join(sections)) == TERMS and len(posts) > 1
        assert all(call.ok for call in fake.called("chat.postMessage"))  # none msg_blocks_too_long
        assert (await app.click(posts[-1], 0)).status == 200
        await app.channel.runner.drain()
        assert shown(fake)[-1] == "you chose Agree"


async def test_thirteen_hundred_options_are_all_offered_and_any_can_be_chosen(fake: FakeSlack) -> None:
    async with running_slack(Engine(limits, MemoryStore(), app="limits"), fake) as app:
        await started(app)
        await say(app, "towns")
        posts = fake.posts(channel="D111")
        assert all(call.ok for call in fake.called("chat.postMessage"))  # none invalid_blocks
        assert all(len(call.params["blocks"]) <= 50 for call in posts)
        labels = [e["text"]["text"] for b in blocks_of(posts) if b["type"] == "actions" for e in b["elements"]]
        assert labels == TOWNS
        last = posts[-1]
        assert (await app.click(last, sum(len(b["elements"]) for b in last.params["blocks"]) - 1)).status == 200
        await app.channel.runner.drain()
        assert shown(fake)[-1] == "town 1300"
        await say(app, "towns")
        await say(app, "Town 777")  # typed instead of clicked
        assert shown(fake)[-1] == "town 777"


async def test_blocks_slack_finds_too_long_are_sent_again_as_plain_text(fake: FakeSlack) -> None:
    fake.blocks_text_limit = 5000  # Slack's cumulative limit is undocumented: here it is lower than we budget
    async with running_slack(Engine(limits, MemoryStore(), app="limits"), fake) as channel_app:
        await started(channel_app)
        await say(channel_app, "terms")
        refused = [call for call in fake.called("chat.postMessage") if not call.ok]
        assert refused and {call.answer["error"] for call in refused} == {"msg_blocks_too_long"}
        assert "".join(shown(fake)) == TERMS  # all of it, in order, once
        last = fake.posts(channel="D111")[-1]
        assert [e["text"]["text"] for e in blocks_of([last])[-1]["elements"]] == ["Agree", "Decline"]
        await say(channel_app, "2")  # the option's number, typed
        assert shown(fake)[-1] == "you chose Decline"
        assert channel_app.channel.deliveries.rerendered["msg_blocks_too_long"] >= 1
        session = await channel_app.channel.runner.engine.store.load(KEY)
        assert session is not None and session.outbox == ()


@pytest.mark.parametrize("error", ["invalid_blocks", "msg_blocks_too_long"])
async def test_a_question_whose_blocks_are_refused_can_still_be_answered(fake: FakeSlack, error: str) -> None:
    async with running_slack(Engine(limits, MemoryStore(), app="limits"), fake) as app:
        await started(app)
        fake.fail("chat.postMessage", error, matching=lambda params: bool(params.get("blocks")))
        await say(app, "towns")
        texts = shown(fake)
        assert texts[0].startswith("Where do you live?\n1) Town 1\n")  # the refused message, as text
        assert sum(len(call.params.get("blocks") or []) for call in fake.posts()) > 0  # the rest kept their buttons
        await say(app, "3")
        assert shown(fake)[-1] == "town 3"


@pytest.mark.parametrize("error", ["restricted_action", "invalid_arguments", "msg_too_long", "no_text"])
async def test_a_permanent_refusal_drops_the_reply_counts_it_and_the_conversation_goes_on(
    fake: FakeSlack, error: str,
) -> None:
    store = MemoryStore()
    async with running_slack(Engine(limits, store, app="limits"), fake) as app:
        await started(app)
        fake.fail("chat.postMessage", error, matching=lambda params: "echo one" in params.get("text", ""))
        await say(app, "one")
        await say(app, "two")
        assert shown(fake) == ["echo two"]
        session = await store.load(KEY)
        assert session is not None and session.outbox == ()
        registry = CollectorRegistry()
        registry.register(ChannelDeliveries([app.channel]))
        dropped = registry.get_sample_value("convoflow_replies_dropped_total",
                                            {"channel": "slack", "reason": error})
        assert dropped == 1


@pytest.mark.parametrize(("error", "status"), [("internal_error", 200), ("fatal_error", 200), ("service_unavailable", 503)])
async def test_a_transient_failure_mid_reply_keeps_it_and_repeats_no_part(fake: FakeSlack, error: str, status: int) -> None:
    store = MemoryStore()
    async with running_slack(Engine(limits, store, app="limits"), fake) as app:
        await started(app)

        def second_part(params: dict[str, Any]) -> bool:
            return sum(call.ok for call in fake.called("chat.postMessage")) == 1

        fake.fail("chat.postMessage", error, status=status, matching=second_part)
        await say(app, "huge")  # the channel's retry of the turn finishes the reply
        texts = shown(fake)
        assert "".join(texts) == HUGE and len(texts) == 3
        assert [call.ok for call in fake.called("chat.postMessage")] == [True, False, True, True]
        session = await store.load(KEY)
        assert session is not None and session.outbox == ()


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")  # the blank text, on purpose
async def test_the_fake_holds_messages_to_slacks_limits(fake: FakeSlack) -> None:
    client = AsyncWebClient(token=fake.teams[0].bot_token, base_url=fake.api_url)
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x"}}
    refused = {
        "no_text": {"text": " "},
        "invalid_blocks": {"text": "t", "blocks": [section] * 51},
    }
    refused_blocks = [
        [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}],
        [{"type": "actions", "elements": [{"type": "button", "action_id": f"a{n}", "value": "v",
                                            "text": {"type": "plain_text", "text": "b"}} for n in range(26)]}],
        [{"type": "actions", "elements": [{"type": "button", "action_id": "a", "value": "v",
                                            "text": {"type": "plain_text", "text": "b" * 76}}]}],
    ]
    for error, arguments in refused.items():
        with pytest.raises(SlackApiError) as caught:
            await client.chat_postMessage(channel="D111", **arguments)
        assert caught.value.response["error"] == error
    for blocks in refused_blocks:
        with pytest.raises(SlackApiError) as caught:
            await client.chat_postMessage(channel="D111", text="t", blocks=blocks)
        assert caught.value.response["error"] == "invalid_blocks"
    with pytest.raises(SlackApiError) as caught:
        await client.chat_postMessage(channel="D111", text="t", blocks=[
            {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3000}}] * 5)
    assert caught.value.response["error"] == "msg_blocks_too_long"
    await client.chat_postMessage(channel="D111", text="y" * 40_001)
    assert fake.texts() == ["y" * 40_000]  # Slack cuts what it does not refuse
