"""Slack payloads as updates: session keys per DM and per thread, ids that de-duplicate."""

from __future__ import annotations

from convoflow.buttons import ButtonRef
from convoflow.messages import SessionKey
from convoflow.adapters.slack.events import Workspace, from_action, from_message
from tests.support.fake_slack import Call
from tests.support.slack_payloads import block_actions, channel_message, dm, mention

ACME = Workspace("T1", None, "UBOT")
GRID = Workspace("T2", "E9", "UBOT")


def test_a_direct_message() -> None:
    translated = from_message(dm("/start now", ts="1.000001", channel="D5"), ACME, "bot")
    assert translated is not None and not translated.in_thread
    incoming = translated.incoming
    assert incoming.key == SessionKey("slack:-:T1:D5", "bot")
    assert (incoming.id, incoming.kind, incoming.text, incoming.user) == ("slack:T1:D5:1.000001", "command", "/start now", "W222")
    assert incoming.address == {"channel": "D5"}


def test_a_mention_starts_a_thread_and_both_deliveries_of_it_share_one_id() -> None:
    top = from_message(mention("hi &lt;3", ts="5.000001", channel="C1"), GRID, "bot")
    assert top is not None
    assert top.incoming.key == SessionKey("slack:E9:T2:C1:5.000001", "bot")
    assert top.incoming.address == {"channel": "C1", "thread_ts": "5.000001"}
    assert top.incoming.text == "hi <3"
    as_mention = from_message(mention("again", ts="6.000001", thread_ts="5.000001", channel="C1"), GRID, "bot")
    as_message = from_message(channel_message("<@UBOT> again", ts="6.000001", thread_ts="5.000001", channel="C1"),
                              GRID, "bot")
    assert as_mention is not None and as_message is not None
    assert as_mention.incoming == as_message.incoming
    assert as_message.in_thread and not as_mention.in_thread


def test_channel_messages_outside_threads_are_not_for_the_bot() -> None:
    assert from_message(channel_message("hello all"), ACME, "bot") is None
    parent = channel_message("a thread parent", ts="7.1", thread_ts="7.1")
    assert from_message(parent, ACME, "bot") is None


def test_what_is_skipped() -> None:
    for event in [dm("mine", user="UBOT"), dm("other bot", bot_id="B2"), dm("x", subtype="message_changed"),
                  dm("x", subtype="message_deleted"), channel_message("j", subtype="channel_join", thread_ts="1.0"),
                  {"type": "message", "channel": "D1", "channel_type": "im", "ts": "1.0"}]:
        assert from_message(event, ACME, "bot") is None, event


def test_a_file_share_is_media() -> None:
    files = [{"id": "F1", "mimetype": "application/pdf", "url_private": "https://files.slack.test/F1/r.pdf"}]
    translated = from_message(dm("the report", subtype="file_share", files=files), ACME, "bot")
    assert translated is not None
    incoming = translated.incoming
    assert incoming.kind == "media" and incoming.media is not None
    assert (incoming.media.kind, incoming.media.source, incoming.media.caption) == ("file", files[0]["url_private"], "the report")
    assert incoming.response == {"media": "file", "source": files[0]["url_private"], "caption": "the report"}


def posted(channel: str, value: str, thread: str | None = None) -> Call:
    params = {"channel": channel, "text": "Q?", "blocks": [{"type": "actions", "elements": [
        {"type": "button", "action_id": "convoflow:4:0", "text": {"type": "plain_text", "text": "A"}, "value": value}]}]}
    if thread:
        params["thread_ts"] = thread
    return Call("chat.postMessage", params, "xoxb", {"ok": True, "ts": "9.000001"})


def test_clicks_in_a_dm_and_in_a_thread() -> None:
    in_dm = from_action(block_actions(posted("D5", '{"a":1}'), 0, action_ts="10.5", team="T1"), ACME, "bot")
    assert in_dm is not None
    assert (in_dm.key, in_dm.id, in_dm.kind, in_dm.value) == (SessionKey("slack:-:T1:D5", "bot"), "slack:T1:D5:10.5", "button", {"a": 1})
    in_thread = from_action(block_actions(posted("C1", "#4.0", thread="3.3"), 0, team="T2"), GRID, "bot")
    assert in_thread is not None
    assert in_thread.key == SessionKey("slack:E9:T2:C1:3.3", "bot")
    assert (in_thread.button, in_thread.value, in_thread.address) == (ButtonRef(4, 0), None, {"channel": "C1", "thread_ts": "3.3"})


def test_a_click_with_a_value_we_never_made_is_not_an_update() -> None:
    assert from_action(block_actions(posted("D5", "rm -rf"), 0), ACME, "bot") is None
    assert from_action({"type": "block_actions", "actions": []}, ACME, "bot") is None
