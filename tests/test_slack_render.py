"""Replies as Slack messages: escaping, buttons within Slack's limits, media."""

from __future__ import annotations

from convoflow.buttons import ButtonRef, decode_button
from convoflow.messages import Media, Option, Reply, Text
from convoflow.adapters.slack.render import (
    BUTTON_VALUE_LIMIT, SECTION_TEXT_LIMIT, answered_blocks, escape, post_arguments, unescape,
)

DM = {"channel": "D1"}
THREAD = {"channel": "C1", "thread_ts": "1700000000.000100"}


def test_user_text_cannot_become_markup() -> None:
    text = "<@U123> & <!channel> <https://evil.example|click>"
    assert escape(text) == "&lt;@U123&gt; &amp; &lt;!channel&gt; &lt;https://evil.example|click&gt;"
    assert unescape(escape(text)) == text
    assert escape("*bold* _it_ `code`") == "*bold* _it_ `code`"  # mrkdwn styling stays available


def test_plain_text_goes_to_the_dm_or_the_thread() -> None:
    assert post_arguments(Reply(1, Text("a < b"), DM)) == {"channel": "D1", "text": "a &lt; b"}
    assert post_arguments(Reply(1, Text("hi"), THREAD)) == {**THREAD, "text": "hi"}


def test_options_become_buttons_whose_values_come_back_as_the_answers() -> None:
    long_answer = {"sku": "x" * 3000}
    options = (Option("Yes", True), Option("Maybe <later>"), Option("L" * 100, long_answer))
    arguments = post_arguments(Reply(7, Text("Sure?", options), THREAD))
    assert arguments["text"] == "Sure?" and arguments["thread_ts"] == THREAD["thread_ts"]
    section, actions = arguments["blocks"]
    assert section == {"type": "section", "text": {"type": "mrkdwn", "text": "Sure?"}}
    buttons = actions["elements"]
    assert [b["action_id"] for b in buttons] == ["convoflow:7:0", "convoflow:7:1", "convoflow:7:2"]
    assert [b["text"]["text"] for b in buttons] == ["Yes", "Maybe <later>", "L" * 74 + "\u2026"]
    assert [decode_button(b["value"]) for b in buttons] == [True, "Maybe <later>", ButtonRef(7, 2)]
    assert all(len(b["value"]) <= BUTTON_VALUE_LIMIT for b in buttons)


def test_many_options_and_long_questions_stay_within_block_limits() -> None:
    options = tuple(Option(str(n)) for n in range(30))
    text = "<" * (SECTION_TEXT_LIMIT // 2)  # escapes to twice its length
    blocks = post_arguments(Reply(1, Text(text, options), DM))["blocks"]
    sections = [b for b in blocks if b["type"] == "section"]
    assert [len(s["text"]["text"]) for s in sections] == [3000, 3000]
    assert "".join(s["text"]["text"] for s in sections) == escape(text)
    assert [len(b["elements"]) for b in blocks if b["type"] == "actions"] == [25, 5]


def test_images_and_files() -> None:
    image = post_arguments(Reply(1, Media("image", "https://x.example/a.png", "A & B"), DM))
    assert image["text"] == "A &amp; B"
    assert image["blocks"] == [{"type": "image", "alt_text": "A & B", "image_url": "https://x.example/a.png",
                                "title": {"type": "plain_text", "text": "A & B"}}]
    uploaded = post_arguments(Reply(1, Media("image", "F0123"), DM))
    assert uploaded["blocks"] == [{"type": "image", "alt_text": "image", "slack_file": {"id": "F0123"}}]
    assert post_arguments(Reply(1, Media("file", "https://x.example/r.pdf"), DM))["text"] == "<https://x.example/r.pdf|r.pdf>"
    assert post_arguments(Reply(1, Media("file", "https://x.example/r.pdf", "Q3 <draft>"), DM))["text"] == \
        "<https://x.example/r.pdf|Q3 &lt;draft&gt;>"
    assert post_arguments(Reply(1, Media("file", "F0123", "report"), DM))["text"] == "report (file F0123)"


def test_an_answered_question_keeps_its_text_and_shows_the_choice_instead_of_buttons() -> None:
    blocks = post_arguments(Reply(3, Text("Plan?", (Option("Free"), Option("Pro"))), DM))["blocks"]
    assert answered_blocks(blocks, "W1", "Pro <b>") == [
        blocks[0], {"type": "context", "elements": [{"type": "mrkdwn", "text": "<@W1> chose Pro &lt;b&gt;"}]},
    ]
