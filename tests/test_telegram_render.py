"""convoflow replies as Bot API calls: keyboards within Telegram's limits, long texts, media."""

from __future__ import annotations

from convoflow.buttons import ButtonRef, decode_button
from convoflow.messages import Media, Option, Reply, Text
from convoflow.adapters.telegram.render import keyboard, render, split_text

CHAT = {"chat_id": 42}


def rows(reply: Reply) -> list[list[str]]:
    markup = render(reply)[-1].kwargs["reply_markup"]
    return [[button.text for button in row] for row in markup.inline_keyboard]


def test_plain_text_never_asks_for_markup_parsing() -> None:
    [send] = render(Reply(1, Text("<b>*not* markup</b>"), CHAT))
    assert (send.method, send.kwargs) == ("send_message", {"chat_id": 42, "text": "<b>*not* markup</b>"})


def test_option_rows_wrap_by_width_and_by_telegrams_eight_per_row() -> None:
    numbers = Text("Pick", tuple(Option(str(n)) for n in range(1, 11)))
    assert rows(Reply(1, numbers, CHAT)) == [["1", "2", "3", "4", "5", "6", "7", "8"], ["9", "10"]]
    plans = Text("Plan?", (Option("Free"), Option("Pro (9/month)"), Option("Team (29/month)"), Option("A very long label that fills a row")))
    assert rows(Reply(1, plans, CHAT)) == [["Free", "Pro (9/month)"], ["Team (29/month)"], ["A very long label that fills a row"]]


def test_callback_data_fits_64_bytes_and_decodes_to_the_answer() -> None:
    fits = "é" * 30  # 60 bytes of UTF-8 plus quotes: 62
    too_long = "é" * 32
    options = (Option("a", fits), Option("b", too_long), Option("c", {"id": 7}), Option("d"))
    markup = keyboard(options, seq=12)
    data = [button.callback_data for row in markup.inline_keyboard for button in row]
    assert all(isinstance(d, str) and 1 <= len(d.encode()) <= 64 for d in data)
    assert [decode_button(str(d)) for d in data] == [fits, ButtonRef(12, 1), {"id": 7}, "d"]


def test_more_options_than_a_keyboard_holds_become_a_numbered_list() -> None:
    many = Text("Country?", tuple(Option(f"Country {n}") for n in range(1, 151)))
    [send] = render(Reply(1, many, CHAT))
    assert "reply_markup" not in send.kwargs
    lines = send.kwargs["text"].splitlines()
    assert lines[0] == "Country?" and lines[1] == "1) Country 1" and lines[-1] == "150) Country 150"


def test_long_text_is_split_with_the_keyboard_on_the_last_part() -> None:
    paragraph = "word " * 1000
    reply = Reply(3, Text(paragraph * 2, (Option("OK"),)), {"chat_id": -100, "thread_id": 7, "reply_to": 55})
    sends = render(reply)
    assert len(sends) == 3
    assert " ".join(s.kwargs["text"] for s in sends).split() == (paragraph * 2).split()
    assert [("reply_parameters" in s.kwargs, "reply_markup" in s.kwargs) for s in sends] == [(True, False), (False, False), (False, True)]
    assert all(s.kwargs["message_thread_id"] == 7 and s.kwargs["chat_id"] == -100 for s in sends)
    assert sends[0].kwargs["reply_parameters"].message_id == 55


def test_split_counts_utf16_units_as_telegram_does() -> None:
    emoji = "😀" * 3000  # 6000 UTF-16 units
    parts = split_text(emoji)
    assert [len(p) for p in parts] == [2048, 952] and "".join(parts) == emoji
    assert split_text("short") == ["short"]


def test_media_by_url_or_file_id_with_caption() -> None:
    [photo] = render(Reply(1, Media("image", "https://example.org/a.png", "Look"), {"chat_id": 42, "thread_id": 3}))
    assert (photo.method, photo.kwargs) == ("send_photo", {"chat_id": 42, "message_thread_id": 3,
                                                         "photo": "https://example.org/a.png", "caption": "Look"})
    [document] = render(Reply(1, Media("file", "BQACAgI-id"), CHAT))
    assert (document.method, document.kwargs) == ("send_document", {"chat_id": 42, "document": "BQACAgI-id", "caption": None})
    long_caption = "c" * 1500
    media, text = render(Reply(1, Media("image", "AgAC-id", long_caption), CHAT))
    assert media.kwargs["caption"] is None and text.kwargs == {"chat_id": 42, "text": long_caption}


def texts_of(reply: Reply) -> list[str]:
    return [send.kwargs["text"] for send in render(reply) if send.method == "send_message"]


def test_a_long_run_of_spaces_gives_no_empty_part_and_loses_no_tail() -> None:
    text = "x" * 4000 + " " * 5000 + "tail"
    parts = texts_of(Reply(1, Text(text), CHAT))
    assert "".join(parts) == text
    assert all(part.strip() and len(part) <= 4096 for part in parts)


def test_text_goes_out_as_written_with_cuts_at_line_breaks() -> None:
    text = "".join(f"  item {n}:\tdone  \n" for n in range(600))  # leading and trailing whitespace
    parts = texts_of(Reply(1, Text(text), CHAT))
    assert "".join(parts) == text and len(parts) > 1
    assert all(part.endswith("\n") for part in parts)


def test_grapheme_clusters_stay_whole_across_parts() -> None:
    for cluster in ("e\u0301", "👨\u200d👩\u200d👧\u200d👦", "#\ufe0f\u20e3", "🇺🇦"):
        text = "a" * 4095 + cluster + "b" * 10  # the 4,096th unit falls inside the cluster
        first, second = texts_of(Reply(1, Text(text), CHAT))
        assert first == "a" * 4095 and second == cluster + "b" * 10


def test_a_reply_that_shows_nothing_sends_nothing_and_a_blank_question_still_shows_its_keyboard() -> None:
    assert render(Reply(1, Text(" \n "), CHAT)) == []
    [send] = render(Reply(1, Text("", (Option("Yes"), Option("No"))), CHAT))
    assert send.kwargs["text"].strip() and "reply_markup" in send.kwargs


def test_a_caption_counts_utf16_units() -> None:
    fits = "😀" * 512  # 1,024 units: a caption
    [photo] = render(Reply(1, Media("image", "AgAC-id", fits), CHAT))
    assert photo.kwargs["caption"] == fits
    too_long = "😀" * 513
    photo, text = render(Reply(1, Media("image", "AgAC-id", too_long), CHAT))
    assert photo.kwargs["caption"] is None and text.kwargs["text"] == too_long
