"""Replies as Slack messages: escaping, buttons, media, and splitting within Slack's limits."""

from __future__ import annotations

from convoflow.buttons import ButtonRef, decode_button
from convoflow.messages import Media, Option, Reply, Text
from typing import Any

from convoflow.adapters.slack.render import (
    BLOCKS_PER_MESSAGE, BLOCKS_TEXT_BUDGET, BUTTON_VALUE_LIMIT, SECTION_TEXT_LIMIT, SMALL_TEXT_LIMIT, TEXT_LIMIT,
    answered_blocks, escape, posts, unescape,
)

DM = {"channel": "D1"}
THREAD = {"channel": "C1", "thread_ts": "1700000000.000100"}


def post_arguments(reply: Reply) -> dict[str, Any]:
    """The arguments of a reply that fits one message."""
    [post] = posts(reply)
    return post.arguments


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


def block_text(blocks: list[dict[str, Any]]) -> int:
    """What counts against Slack's cumulative limit: every text and value in the blocks."""
    total = 0
    for block in blocks:
        total += len(block.get("text", {}).get("text", ""))
        for element in block.get("elements", []):
            total += len(element["text"]["text"]) + len(element.get("value", ""))
    return total


def test_a_long_text_is_split_within_slacks_limit_measured_after_escaping() -> None:
    text = ("a <b> & c\n" * 5000)  # 50,000 characters, 90,000 once escaped
    parts = [post.arguments["text"] for post in posts(Reply(1, Text(text), THREAD))]
    assert len(parts) == 3 and all(len(part) <= TEXT_LIMIT for part in parts)
    assert unescape("".join(parts)) == text
    assert all(part.endswith("\n") for part in parts[:-1])  # cut at line breaks
    assert all(post.arguments["thread_ts"] == THREAD["thread_ts"] for post in posts(Reply(1, Text(text), THREAD)))


def test_a_long_question_spreads_over_messages_within_the_block_limits() -> None:
    text = "Terms & conditions. " * 650  # 13,000 characters
    found = posts(Reply(4, Text(text, (Option("Agree"), Option("Decline"))), DM))
    assert len(found) > 1
    for post in found:
        blocks = post.arguments["blocks"]
        assert len(blocks) <= BLOCKS_PER_MESSAGE and block_text(blocks) <= BLOCKS_TEXT_BUDGET
        assert all(len(b["text"]["text"]) <= SECTION_TEXT_LIMIT for b in blocks if b["type"] == "section")
    sections = [b["text"]["text"] for post in found for b in post.arguments["blocks"] if b["type"] == "section"]
    assert unescape("".join(sections)) == text
    assert [b["type"] for b in found[-1].arguments["blocks"]][-1] == "actions"  # the buttons come last


def test_thirteen_hundred_options_are_all_offered_in_several_messages() -> None:
    options = tuple(Option(f"Town {n}", {"town": n}) for n in range(1300))
    found = posts(Reply(9, Text("Where do you live?", options), DM))
    buttons = []
    for post in found:
        blocks = post.arguments["blocks"]
        assert len(blocks) <= BLOCKS_PER_MESSAGE and block_text(blocks) <= BLOCKS_TEXT_BUDGET
        assert post.arguments["text"].strip()
        for block in blocks:
            if block["type"] == "actions":
                assert len(block["elements"]) <= 25
                buttons += block["elements"]
    assert [b["action_id"] for b in buttons] == [f"convoflow:9:{n}" for n in range(1300)]
    assert [decode_button(b["value"]) for b in buttons] == [{"town": n} for n in range(1300)]


def test_a_refused_message_has_a_smaller_plain_text_form_that_numbers_its_options() -> None:
    options = tuple(Option(f"Plan <{n}>") for n in range(30))
    [post] = posts(Reply(2, Text("Which plan?", options), DM))
    plain = [smaller["text"] for smaller in post.smaller]
    assert all(len(text) <= SMALL_TEXT_LIMIT for text in plain)
    lines = unescape("".join(plain)).splitlines()
    assert lines[0] == "Which plan?" and lines[1] == "1) Plan <0>" and lines[-1] == "30) Plan <29>"
    long_text = posts(Reply(3, Text("word " * 2000), DM))[0]
    assert unescape("".join(s["text"] for s in long_text.smaller)) == "word " * 2000
    assert all(len(s["text"]) <= SMALL_TEXT_LIMIT for s in long_text.smaller)
    assert posts(Reply(3, Text("short"), DM))[0].smaller == ()  # nothing smaller to fall back on


def test_text_that_shows_nothing_posts_nothing_and_a_question_without_text_shows_its_buttons() -> None:
    assert posts(Reply(1, Text("  \n"), DM)) == []
    [post] = posts(Reply(1, Text("", (Option("Yes"), Option("No"))), DM))
    assert [b["type"] for b in post.arguments["blocks"]] == ["actions"]
    assert post.arguments["text"] == "1) Yes, 2) No"


def test_an_image_refused_has_its_link_to_fall_back_on() -> None:
    [image] = posts(Reply(1, Media("image", "https://x.example/a.png", "A & B"), DM))
    assert image.smaller == ({"channel": "D1", "text": "<https://x.example/a.png|A &amp; B>"},)
