"""Telegram updates (their JSON, checked by parse_update) as convoflow Incoming messages."""

from __future__ import annotations

from typing import Any

import pytest
from convoflow.adapters.telegram.updates import BotIdentity, Ignored, MalformedUpdate, Migration, parse_update, translate
from convoflow.buttons import ButtonRef
from convoflow.messages import Incoming, Media, SessionKey
from tests.support.fake_telegram import BOT_ID, BOT_USER, USERNAME, group_chat, message, press, private_chat, user

ME = BotIdentity(BOT_ID, USERNAME)
TEAM = group_chat(-100200)
BO = user(5, "Bo")


def incoming(update: dict[str, Any], edited: bool = False) -> Incoming | Migration | Ignored:
    return translate(update, ME, "app", edited)


def key(*scopes: int) -> SessionKey:
    return SessionKey(":".join(["telegram", str(BOT_ID), *map(str, scopes)]), "app")


def test_private_text() -> None:
    update = message(private_chat(42), text="hi there")
    found = incoming(update)
    assert found == Incoming(key(42), f"telegram:{BOT_ID}:{update['update_id']}", "text", "hi there", user="42",
                             address={"chat_id": 42})


@pytest.mark.parametrize(("text", "command"), [
    ("/start", "/start"),
    ("/start@guess_bot", "/start"),
    ("/start@GUESS_BOT deep-link", "/start deep-link"),
    ("/help me please", "/help me please"),
])
def test_commands_lose_the_bot_name(text: str, command: str) -> None:
    for chat, sender in ((private_chat(42), None), (TEAM, BO)):
        found = incoming(message(chat, sender, text))
        assert isinstance(found, Incoming) and (found.kind, found.text) == ("command", command)


def test_group_messages_count_only_when_addressed() -> None:
    assert isinstance(incoming(message(TEAM, BO, "5")), Ignored)
    assert isinstance(incoming(message(TEAM, BO, "/start@other_bot")), Ignored)
    assert isinstance(incoming(message(private_chat(42), text="/start@other_bot")), Ignored)
    mentioned = incoming(message(TEAM, BO, "five @guess_bot", entities=[{"type": "mention", "offset": 5, "length": 10}]))
    assert isinstance(mentioned, Incoming) and (mentioned.key, mentioned.text) == (key(-100200, 5), "five")
    by_name = incoming(message(TEAM, BO, "Guess 5", entities=[{"type": "text_mention", "offset": 0, "length": 5,
                                                               "user": BOT_USER}]))
    assert isinstance(by_name, Incoming) and by_name.text == "Guess 5"
    reply = message(TEAM, BO, "5", reply_to_message={"message_id": 3, "date": 1700000000, "chat": TEAM,
                                                     "from": BOT_USER, "text": "Your guess?"})
    replied = incoming(reply)
    assert isinstance(replied, Incoming)
    assert replied.address == {"chat_id": -100200, "reply_to": reply["message"]["message_id"]}
    to_someone_else = message(TEAM, BO, "5", reply_to_message={"message_id": 3, "date": 1700000000, "chat": TEAM,
                                                               "from": user(6), "text": "hm"})
    assert isinstance(incoming(to_someone_else), Ignored)
    # In a forum, a plain message "replies" to the topic's creation; the bot creating it is no address.
    forum = group_chat(-100300, forum=True)
    in_topic = message(forum, BO, "5", message_thread_id=4, is_topic_message=True, reply_to_message={
        "message_id": 4, "date": 1700000000, "chat": forum, "from": BOT_USER, "message_thread_id": 4,
        "forum_topic_created": {"name": "Games", "icon_color": 7322096}})
    assert isinstance(incoming(in_topic), Ignored)


def test_a_mention_in_a_photo_caption_addresses_the_bot() -> None:
    photo = [{"file_id": "AgAC-1", "file_unique_id": "u1", "width": 90, "height": 90}]
    found = incoming(message(TEAM, BO, photo=photo, caption="@guess_bot look",
                             caption_entities=[{"type": "mention", "offset": 0, "length": 10}]))
    assert isinstance(found, Incoming) and found.kind == "media"
    assert found.media == Media("image", "AgAC-1", "look")
    assert found.response == {"media": "image", "source": "AgAC-1", "caption": "look"}


def test_an_address_inside_a_word_is_kept() -> None:
    found = incoming(message(private_chat(42), text="write to me@guess_bot.example"))
    assert isinstance(found, Incoming) and found.text == "write to me@guess_bot.example"


def test_topics_scope_sessions_only_for_topic_messages() -> None:
    forum = group_chat(-100300, forum=True)
    update = message(forum, BO, "/start", message_thread_id=9, is_topic_message=True)
    found = incoming(update)
    assert isinstance(found, Incoming) and found.key == key(-100300, 9, 5)
    assert found.address == {"chat_id": -100300, "thread_id": 9, "reply_to": update["message"]["message_id"]}
    private_topic = incoming(message(private_chat(42), text="hi", message_thread_id=3, is_topic_message=True))
    assert isinstance(private_topic, Incoming) and private_topic.key == key(42, 3)
    pressed = incoming(press(forum, "1", BO, message_thread_id=9, is_topic_message=True))
    assert isinstance(pressed, Incoming) and pressed.key == key(-100300, 9, 5)
    assert pressed.address == {"chat_id": -100300, "thread_id": 9}


def test_button_presses() -> None:
    found = incoming(press(private_chat(42), '{"plan":"pro"}'))
    assert isinstance(found, Incoming) and (found.kind, found.value, found.button) == ("button", {"plan": "pro"}, None)
    ref = incoming(press(private_chat(42), "#12.3"))
    assert isinstance(ref, Incoming) and ref.button == ButtonRef(12, 3)
    assert isinstance(incoming(press(private_chat(42), "legacy-payload")), Ignored)
    inline = press(private_chat(42), "1")
    del inline["callback_query"]["message"]
    inline["callback_query"]["inline_message_id"] = "AAA"
    assert isinstance(incoming(inline), Ignored)


def test_migration_edits_and_other_senders() -> None:
    assert incoming(message(group_chat(-4001, kind="group"), BO, migrate_to_chat_id=-1004001)) == Migration(-4001, -1004001)
    assert isinstance(incoming(message(group_chat(-1004001), BO, migrate_from_chat_id=-4001)), Ignored)
    edit = message(private_chat(42), text="fixed", edited=True)
    assert isinstance(incoming(edit), Ignored)
    taken = incoming(edit, edited=True)
    assert isinstance(taken, Incoming) and taken.text == "fixed"
    assert isinstance(incoming(message(TEAM, {**BOT_USER, "id": 99}, "/start")), Ignored)  # another bot
    channel = {"update_id": 5, "channel_post": {"message_id": 1, "date": 1700000000, "text": "news",
                                                "chat": {"id": -1001, "type": "channel", "title": "News"}}}
    assert isinstance(incoming(channel), Ignored)


def test_bodies_that_are_not_updates() -> None:
    with pytest.raises(MalformedUpdate, match="not JSON"):
        parse_update(b"\xff\xfe")
    with pytest.raises(MalformedUpdate, match="no integer update_id"):
        parse_update(b'{"update_id": true}')
    with pytest.raises(MalformedUpdate, match="not a valid Telegram Update"):
        parse_update(b'{"update_id": 1, "message": {"message_id": 1, "date": "yesterday", "chat": {"id": 1, "type": "private"}}}')
    assert parse_update(b'{"update_id": 1, "message": {"message_id": 1, "date": 1700000000, "chat": {"id": 1, "type": "private"}}}')["update_id"] == 1


def test_in_a_group_a_press_counts_only_for_the_member_the_question_was_for() -> None:
    ann = user(4, "Ann")
    asked_ann = {"reply_to_message": {"message_id": 8, "date": 1700000000, "chat": TEAM, "from": ann, "text": "/start"}}
    by_ann = incoming(press(TEAM, '"yes"', ann, **asked_ann))
    assert isinstance(by_ann, Incoming) and (by_ann.key, by_ann.value) == (key(-100200, 4), "yes")
    assert isinstance(incoming(press(TEAM, '"yes"', BO, **asked_ann)), Ignored)  # Bo can't answer for Ann
    unaddressed = incoming(press(TEAM, '"yes"', BO))  # a question not in reply to anyone: the presser's
    assert isinstance(unaddressed, Incoming) and unaddressed.key == key(-100200, 5)
