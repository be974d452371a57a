"""The Telegram channel in webhook mode, end to end: updates posted to /telegram/webhook, the real
python-telegram-bot sending replies to the fake Bot API."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from convoflow.adapters.host.app import MAX_BODY_BYTES
from convoflow.adapters.telegram import TelegramOptions
from convoflow import Media, Option, SessionKey, ask, dialog, get_client_response, send_message
from convoflow.stores import MemoryStore, StoreError
from convoflow.stores.base import Session
from tests.support.fake_telegram import BOT_ID, message, press, private_chat, user
from tests.support.telegram_harness import Bot, binary_search, start_bot

ANN = private_chat(42)


def key(*scopes: int, app: str = "guessbot") -> SessionKey:
    return SessionKey(":".join(["telegram", str(BOT_ID), *map(str, scopes)]), app)


async def say(bot: Bot, chat: dict[str, Any], text: str, **fields: Any) -> list[str | None]:
    """Post a text message; returns the texts the bot sent to that chat in answer."""
    before = len(bot.fake.sent(chat["id"]))
    status = await bot.post(message(chat, text=text, **fields))
    assert status == 200
    return bot.fake.texts(chat["id"])[before:]


async def tap(bot: Bot, chat: dict[str, Any], label: str, **fields: Any) -> list[str | None]:
    """Press the button labelled `label` on the bot's latest keyboard in `chat`."""
    last = [c for c in bot.fake.sent(chat["id"]) if c.buttons()][-1]
    data = dict(last.buttons())[label]
    before = len(bot.fake.sent(chat["id"]))
    update = press(chat, data, **fields)
    assert await bot.post(update) == 200
    answered = [c.params["callback_query_id"] for c in bot.fake.of("answerCallbackQuery")]
    assert update["callback_query"]["id"] in answered
    return bot.fake.texts(chat["id"])[before:]


@pytest.fixture
async def guessbot():  # type: ignore[no-untyped-def]
    bot = await start_bot("bots/guessbot.py")
    yield bot
    await bot.close()


@pytest.fixture
async def signup():  # type: ignore[no-untyped-def]
    bot = await start_bot("bots/signup.py")
    yield bot
    await bot.close()


# --- the example bots ---------------------------------------------------------------------------


async def test_guessbot_played_to_the_end(guessbot: Bot) -> None:
    assert await say(guessbot, ANN, "/start") == ["Guess a number between 1 and 10.", "Your guess?"]

    async def guess(text: str) -> str:
        answer = await say(guessbot, ANN, text)
        return str(answer[0])

    guesses = await binary_search(guess)
    assert guessbot.fake.texts(42)[-1] == f"You got it in {guesses} {'guess' if guesses == 1 else 'guesses'}! Send anything to play again."
    assert await say(guessbot, ANN, "again") == ["Guess a number between 1 and 10.", "Your guess?"]
    assert await say(guessbot, ANN, "ten") == ["Numbers only, please."]
    session = await guessbot.store.load(key(42))
    assert session is not None and session.address == {"via": "telegram", "chat_id": 42}  # all a reply needs
    first = guessbot.fake.sent(42)[0]
    assert "parse_mode" not in first.params and first.params == {"chat_id": 42, "text": "Guess a number between 1 and 10."}


async def test_signup_form_with_buttons(signup: Bot) -> None:
    assert await say(signup, ANN, "/start") == ["Welcome! Let's get you signed up.", "What's your name?"]
    assert await say(signup, ANN, "<b>Ann</b>") == ["Nice to meet you, <b>Ann</b>. How old are you?"]
    assert await say(signup, ANN, "7") == ["Please send your age as a number between 13 and 120."]
    assert await say(signup, ANN, "34") == ["Your email address?"]
    assert await say(signup, ANN, "ann@example.org") == ["Which plan would you like?"]
    plans = signup.fake.sent(42)[-1]
    assert plans.buttons() == [("Free", '"free"'), ("Pro (9/month)", '"pro"'), ("Team (29/month)", '"team"')]
    assert [len(row) for row in plans.params["reply_markup"]["inline_keyboard"]] == [2, 1]
    assert await tap(signup, ANN, "Pro (9/month)") == ["Sign up <b>Ann</b> (34, ann@example.org) for the pro plan?"]
    assert await tap(signup, ANN, "Yes") == ["Done! Welcome aboard, <b>Ann</b>."]
    session = await signup.store.load(key(42, app="signup"))
    assert session is not None and session.state is not None
    assert session.state["result"]["value"] == {"name": "<b>Ann</b>", "age": 34, "email": "ann@example.org",
                                       "plan": "pro", "confirmed": True}


async def test_a_typed_label_answers_a_question_with_buttons(signup: Bot) -> None:
    for text in ("/start", "Ann", "34", "ann@example.org"):
        await say(signup, ANN, text)
    assert await say(signup, ANN, "Team (29/month)") == ["Sign up Ann (34, ann@example.org) for the team plan?"]


# --- buttons ------------------------------------------------------------------------------------

LONG = "a value far longer than Telegram's sixty-four bytes of callback data allows, kept whole"


@dialog()
def chooser() -> Any:
    while True:
        picked = yield ask("Pick one", choices=[Option("Short", 1), Option("Long", LONG)])
        yield send_message(f"picked {picked}")


async def test_long_button_answers_travel_as_references_and_come_back_whole() -> None:
    bot = await start_bot(chooser, app="chooser")
    try:
        await say(bot, ANN, "/start")
        [(_, short), (_, long)] = bot.fake.sent(42)[-1].buttons()
        assert short == "1" and long.startswith("#") and len(long.encode()) <= 64
        assert await tap(bot, ANN, "Long") == [f"picked {LONG}", "Pick one"]
        assert await tap(bot, ANN, "Short") == ["picked 1", "Pick one"]
    finally:
        await bot.close()


async def test_unknown_and_expired_button_payloads(guessbot: Bot) -> None:
    await say(guessbot, ANN, "/start")
    before = await guessbot.store.load(key(42))
    forged = press(ANN, "{not json")
    assert await guessbot.post(forged) == 200
    assert forged["callback_query"]["id"] in [c.params["callback_query_id"] for c in guessbot.fake.of("answerCallbackQuery")]
    assert await guessbot.store.load(key(42)) == before  # ignored: nothing stored
    expired = press(ANN, "#999.0")
    assert await guessbot.post(expired) == 200
    assert guessbot.fake.texts(42)[-1] == "That button is no longer active. Please answer the latest message."
    assert expired["callback_query"]["id"] in [c.params["callback_query_id"] for c in guessbot.fake.of("answerCallbackQuery")]


async def test_a_button_press_is_answered_even_when_the_turn_fails() -> None:
    store = FlakyStore()
    bot = await start_bot("bots/signup.py", store=store)
    try:
        await say(bot, ANN, "/start")
        store.down = True
        update = press(ANN, '"free"')
        assert await bot.post(update) == 503
        assert update["callback_query"]["id"] in [c.params["callback_query_id"] for c in bot.fake.of("answerCallbackQuery")]
    finally:
        await bot.close()


# --- delivery semantics -------------------------------------------------------------------------


async def test_a_redelivered_update_is_processed_once(guessbot: Bot) -> None:
    start = message(ANN, text="/start")
    assert await guessbot.post(start) == 200
    assert await guessbot.post(start) == 200
    assert guessbot.fake.texts(42) == ["Guess a number between 1 and 10.", "Your guess?"]
    guess = message(ANN, text="5")
    assert await guessbot.post(guess) == 200
    sent = len(guessbot.fake.sent(42))
    assert await guessbot.post(guess) == 200
    assert len(guessbot.fake.sent(42)) == sent
    session = await guessbot.store.load(key(42))
    assert session is not None and session.seen[-2:] == (f"telegram:{BOT_ID}:{start['update_id']}",
                                                         f"telegram:{BOT_ID}:{guess['update_id']}")


class FlakyStore(MemoryStore):
    """A memory store that can be switched off, as a database that goes away."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.refused = 0

    async def load(self, key: SessionKey) -> Session | None:
        self._check()
        return await super().load(key)

    async def commit(self, session: Session) -> None:
        self._check()
        await super().commit(session)

    def _check(self) -> None:
        if self.down:
            self.refused += 1
            raise StoreError("database unreachable")


async def test_store_outage_answers_5xx_so_telegram_redelivers(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore()
    bot = await start_bot("bots/guessbot.py", store=store)
    try:
        store.down = True
        update = message(ANN, text="/start")
        assert await bot.post(update) == 503
        assert bot.fake.sent() == []
        assert "the platform will deliver it again" in caplog.text
        store.down = False
        assert await bot.post(update) == 200  # Telegram's redelivery
        assert bot.fake.texts(42) == ["Guess a number between 1 and 10.", "Your guess?"]
    finally:
        await bot.close()


async def test_one_chats_slow_delivery_does_not_block_another_chat(guessbot: Bot) -> None:
    slow, quick = private_chat(1001), private_chat(1002)
    guessbot.fake.hold(1001)
    assert await guessbot.post(message(slow, text="/start"), settle=False) == 200  # committed; its reply is held
    assert await guessbot.post(message(quick, text="/start"), settle=False) == 200
    await guessbot.fake.wait_for(lambda: len(guessbot.fake.texts(1002)) == 2)
    assert guessbot.fake.texts(1002) == ["Guess a number between 1 and 10.", "Your guess?"]
    assert guessbot.fake.texts(1001) == ["Guess a number between 1 and 10."]  # still on its way
    guessbot.fake.release(1001)
    await guessbot.fake.wait_for(lambda: len(guessbot.fake.texts(1001)) == 2)
    assert guessbot.fake.texts(1001) == ["Guess a number between 1 and 10.", "Your guess?"]


async def test_the_webhook_answers_at_commit_not_after_a_flood_limit_wait(guessbot: Bot) -> None:
    guessbot.fake.fail("sendMessage", 429, retry_after=1)
    update = message(ANN, text="/start")
    assert await guessbot.post(update, settle=False) == 200
    session = await guessbot.store.load(key(42))
    assert session is not None and session.seen == (f"telegram:{BOT_ID}:{update['update_id']}",)  # committed
    assert [c.status for c in guessbot.fake.of("sendMessage")] in ([], [429])  # and nothing delivered yet
    await guessbot.fake.wait_for(lambda: len(guessbot.fake.texts(42)) == 2)
    assert guessbot.fake.texts(42) == ["Guess a number between 1 and 10.", "Your guess?"]


async def test_the_next_update_of_a_chat_commits_while_its_previous_reply_is_still_on_its_way(
    guessbot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(random, "randint", lambda low, high: 7)
    guessbot.fake.hold(42)
    first, second = message(ANN, text="/start"), message(ANN, text="5")
    assert await guessbot.post(first, settle=False) == 200
    await guessbot.fake.wait_for(lambda: guessbot.fake.of("sendMessage"))  # the first reply is held at Telegram
    assert await guessbot.post(second, settle=False) == 200  # not held up behind it
    session = await guessbot.store.load(key(42))
    assert session is not None and session.seen[-2:] == (f"telegram:{BOT_ID}:{first['update_id']}",
                                                         f"telegram:{BOT_ID}:{second['update_id']}")
    assert [item["message"]["text"] for item in session.outbox] == [
        "Guess a number between 1 and 10.", "Your guess?", "Higher!", "Your guess?"]
    assert guessbot.fake.texts(42) == ["Guess a number between 1 and 10."]
    guessbot.fake.release(42)
    await guessbot.runner.drain()
    # In the order of the outbox, each once.
    assert guessbot.fake.texts(42) == ["Guess a number between 1 and 10.", "Your guess?", "Higher!", "Your guess?"]
    session = await guessbot.store.load(key(42))
    assert session is not None and session.outbox == ()


async def test_429_retry_after_is_waited_out(guessbot: Bot) -> None:
    guessbot.fake.fail("sendMessage", 429, retry_after=1)
    assert await say(guessbot, ANN, "/start") == ["Guess a number between 1 and 10.", "Your guess?"]
    statuses = [c.status for c in guessbot.fake.of("sendMessage")]
    assert statuses == [429, 200, 200]


async def test_transient_server_errors_are_retried_with_backoff(guessbot: Bot) -> None:
    guessbot.fake.fail("sendMessage", 502, times=2)
    assert await say(guessbot, ANN, "/start") == ["Guess a number between 1 and 10.", "Your guess?"]
    assert [c.status for c in guessbot.fake.of("sendMessage")] == [502, 502, 200, 200]


async def test_when_retries_run_out_the_reply_waits_in_the_outbox(caplog: pytest.LogCaptureFixture) -> None:
    bot = await start_bot("bots/guessbot.py", options=TelegramOptions(network_retries=1, backoff_seconds=0.01))
    try:
        bot.fake.fail("sendMessage", 500, times=None)
        assert await bot.post(message(ANN, text="/start")) == 200  # committed: no redelivery needed
        session = await bot.store.load(key(42))
        assert session is not None
        assert [item["message"]["text"] for item in session.outbox] == ["Guess a number between 1 and 10.", "Your guess?"]
        assert "replies wait in the outbox" in caplog.text
        bot.fake.heal()
        answer = await say(bot, ANN, "5")
        assert answer[:2] == ["Guess a number between 1 and 10.", "Your guess?"]  # the backlog first
        assert answer[2] in ("Higher!", "Lower!") or str(answer[2]).startswith("You got it")
    finally:
        await bot.close()


async def test_a_user_who_blocked_the_bot_ends_the_outbox_cleanly(guessbot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    guessbot.fake.fail("sendMessage", 403, times=None, chat_id=42)
    assert await guessbot.post(message(ANN, text="/start")) == 200
    session = await guessbot.store.load(key(42))
    assert session is not None and session.outbox == () and session.state is not None
    assert "bot was blocked by the user" in caplog.text
    assert await say(guessbot, private_chat(43), "/start") == ["Guess a number between 1 and 10.", "Your guess?"]
    guessbot.fake.heal()  # unblocked: the conversation goes on where it was
    answer = await say(guessbot, ANN, "5")
    assert answer[0] in ("Higher!", "Lower!") or str(answer[0]).startswith("You got it")


# --- refused requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "wrong", "s3cret_Webhook-token-and-more", "s3cret_Webhook-tokeñ"])
async def test_a_missing_or_wrong_secret_is_refused(guessbot: Bot, secret: str | None) -> None:
    assert await guessbot.post(message(ANN, text="/start"), secret=secret) == 403
    assert guessbot.fake.sent() == [] and await guessbot.store.list_sessions() == []


async def test_a_secret_header_that_is_not_utf8_is_refused(guessbot: Bot) -> None:
    assert guessbot.server is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", guessbot.server.port)
    body = json.dumps(message(ANN, text="/start")).encode()
    writer.write(b"POST /telegram/webhook HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
                 b"X-Telegram-Bot-Api-Secret-Token: s3cret_Webhook-tok\xf1n\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"403"
    assert guessbot.fake.sent() == [] and await guessbot.store.list_sessions() == []


@pytest.mark.parametrize(("body", "why"), [
    (b"this is not json", "body is not JSON"),
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
])
async def test_a_body_that_is_not_json_is_refused(guessbot: Bot, caplog: pytest.LogCaptureFixture, body: bytes, why: str) -> None:
    assert await guessbot.post(None, raw=body) == 400
    assert why in caplog.text
    assert guessbot.fake.sent() == [] and await guessbot.store.list_sessions() == []


MISTYPED = {**message(ANN, text="5"), "update_id": 12}


@pytest.mark.parametrize(("body", "why"), [
    (b"[1, 2]", "no integer update_id"),
    (b'{"update_id": "7"}', "no integer update_id"),
    (json.dumps({"update_id": 7, "message": {"message_id": 1, "date": 1700000000, "from": user(42), "text": "hi"}}).encode(),
     "update.message.chat is missing"),
    (json.dumps({"update_id": 8, "callback_query": {"id": "1", "from": user(42), "data": "1"}}).encode(),
     "update.callback_query.chat_instance is missing"),
    (json.dumps({**MISTYPED, "message": {**MISTYPED["message"], "chat": {"id": None, "type": "private"}}}).encode(),
     "update.message.chat.id is missing"),
    (json.dumps({"update_id": 9, "message": "hi"}).encode(), "not a valid Telegram Update"),
    (json.dumps({**MISTYPED, "message": {**MISTYPED["message"], "chat": {"id": "42", "type": "private"}}}).encode(),
     "update.message.chat.id is a string, not an integer"),
    (json.dumps({**MISTYPED, "message": {**MISTYPED["message"], "chat": {"id": -2**64, "type": "private"}}}).encode(),
     "update.message.chat.id is out of range"),
    (json.dumps({**MISTYPED, "message": {**MISTYPED["message"], "text": float("nan")}}).encode(),
     "update.message.text is a number, not str"),
    (json.dumps({**MISTYPED, "message": {**MISTYPED["message"], "message_thread_id": [1]}}).encode(),
     "update.message.message_thread_id is a list, not an integer"),
    (json.dumps({**MISTYPED, "message": {**MISTYPED["message"], "from": {**user(42), "is_bot": "no"}}}).encode(),
     "update.message.from.is_bot is a string, not bool"),
    (json.dumps({**MISTYPED, "message": {**MISTYPED["message"], "chat": {"id": True, "type": "private"}}}).encode(),
     "update.message.chat.id is a boolean, not an integer"),
])
async def test_json_that_is_no_update_is_acknowledged_logged_and_counted_but_not_handled(
    guessbot: Bot, caplog: pytest.LogCaptureFixture, body: bytes, why: str
) -> None:
    """Telegram retries any non-2xx, holding back the chat's later updates: a retry cannot help."""
    assert await guessbot.post(None, raw=body) == 200
    [warning] = [r for r in caplog.records if r.name == "convoflow.webhooks"]
    assert warning.levelname == "WARNING" and why in warning.getMessage()
    update = json.loads(body)
    if isinstance(update, dict) and type(update.get("update_id")) is int:
        assert f"telegram update {update['update_id']} not handled" in warning.getMessage()
    assert guessbot.fake.sent() == [] and await guessbot.store.list_sessions() == []
    assert await say(guessbot, ANN, "/start") == ["Guess a number between 1 and 10.", "Your guess?"]


async def test_an_oversized_body_is_refused(guessbot: Bot) -> None:
    huge = message(ANN, text="x" * MAX_BODY_BYTES)
    assert await guessbot.post(huge) == 413
    assert guessbot.fake.sent() == [] and await guessbot.store.list_sessions() == []


async def test_other_update_kinds_are_acknowledged_and_ignored(guessbot: Bot) -> None:
    blocked = {"update_id": 31, "my_chat_member": {
        "chat": ANN, "from": user(42), "date": 1700000000,
        "old_chat_member": {"user": {"id": BOT_ID, "is_bot": True, "first_name": "Guess"}, "status": "member"},
        "new_chat_member": {"user": {"id": BOT_ID, "is_bot": True, "first_name": "Guess"}, "status": "kicked", "until_date": 0}}}
    sticker = message(ANN, sticker={"file_id": "CAAC", "file_unique_id": "AgAD", "type": "regular", "width": 512,
                                    "height": 512, "is_animated": False, "is_video": False})
    for update in (blocked, sticker, message(ANN, text="an edit", edited=True)):
        assert await guessbot.post(update) == 200
    assert guessbot.fake.sent() == [] and await guessbot.store.list_sessions() == []


async def test_updates_before_the_channel_started_are_asked_again() -> None:
    bot = await start_bot("bots/guessbot.py")
    try:
        bot.channel._ready = False  # as between the server opening its port and start() finishing
        assert await bot.post(message(ANN, text="/start")) == 503
        assert bot.fake.sent() == []
    finally:
        await bot.close()


# --- media and edits ----------------------------------------------------------------------------


@dialog()
def echo() -> Any:
    while True:
        got = yield get_client_response()
        yield send_message(f"got {json.dumps(got, sort_keys=True)}")


@dialog()
def gallery() -> Any:
    yield get_client_response()
    yield send_message(Media("image", "https://example.org/cat.png", "A cat"))
    yield send_message(Media("file", "BQACAgIAAxkBAAIBfile", ""))
    yield send_message(Media("image", "AgACAgIAAxkBphoto", "c" * 1100))


async def test_photos_and_documents_reach_the_flow_with_file_id_and_caption() -> None:
    bot = await start_bot(echo, app="echo")
    try:
        await say(bot, ANN, "/start")
        photo = [{"file_id": "AgAC-small", "file_unique_id": "s1", "width": 90, "height": 60},
                 {"file_id": "AgAC-large", "file_unique_id": "s2", "width": 1280, "height": 853}]
        assert await say(bot, ANN, None, photo=photo, caption="my cat") == [  # type: ignore[arg-type]
            'got {"caption": "my cat", "media": "image", "source": "AgAC-large"}']
        document = {"file_id": "BQAC-report", "file_unique_id": "d1", "file_name": "report.pdf", "mime_type": "application/pdf"}
        assert await say(bot, ANN, None, document=document) == [  # type: ignore[arg-type]
            'got {"caption": "", "media": "file", "source": "BQAC-report"}']
    finally:
        await bot.close()


async def test_images_and_files_are_sent_by_url_or_file_id_with_captions() -> None:
    bot = await start_bot(gallery, app="gallery")
    try:
        topic = {"id": -100777, "type": "supergroup", "title": "Team", "is_forum": True}
        for text in ("/start", "/gallery"):  # commands: addressed to the bot in a group
            await bot.post(message(topic, user(5), text, message_thread_id=12, is_topic_message=True))
        photo, document, long_photo, rest = bot.fake.sent(-100777)
        assert (photo.method, photo.params["photo"], photo.params["caption"], photo.params["message_thread_id"]) == \
            ("sendPhoto", "https://example.org/cat.png", "A cat", 12)
        assert (document.method, document.params["document"], document.params.get("caption")) == \
            ("sendDocument", "BQACAgIAAxkBAAIBfile", None)
        assert (long_photo.method, long_photo.params.get("caption")) == ("sendPhoto", None)
        assert (rest.method, rest.params["text"], rest.params["message_thread_id"]) == ("sendMessage", "c" * 1100, 12)
    finally:
        await bot.close()


async def test_edited_messages_are_taken_when_the_bot_opts_in() -> None:
    bot = await start_bot(echo, app="echo", options=TelegramOptions(edited_messages=True, backoff_seconds=0.01))
    try:
        assert bot.fake.of("setWebhook")[0].params["allowed_updates"] == ["message", "callback_query", "edited_message"]
        await say(bot, ANN, "/start")
        assert await bot.post(message(ANN, text="helo", edited=True)) == 200
        assert bot.fake.texts(42) == ['got "helo"']
    finally:
        await bot.close()


# --- groups, topics, migration ------------------------------------------------------------------

TEAM = {"id": -100200, "type": "supergroup", "title": "Team"}
BO, CY = user(5, "Bo"), user(6, "Cy")


async def test_in_groups_the_bot_answers_only_when_addressed(guessbot: Bot) -> None:
    assert await guessbot.post(message(TEAM, BO, "hello everyone")) == 200
    assert await guessbot.post(message(TEAM, BO, "/start@other_bot")) == 200
    assert guessbot.fake.sent() == [] and await guessbot.store.list_sessions() == []

    mentioned = message(TEAM, BO, "@guess_bot let's play", entities=[{"type": "mention", "offset": 0, "length": 10}])
    assert await guessbot.post(mentioned) == 200
    first = guessbot.fake.sent(-100200)[0]
    assert first.params["reply_parameters"] == {"message_id": mentioned["message"]["message_id"],
                                                "allow_sending_without_reply": True}
    assert await guessbot.store.load(key(-100200, 5)) is not None

    bot_question = guessbot.fake.sent(-100200)[-1]
    reply = message(TEAM, BO, "5", reply_to_message={"message_id": 900, "date": 1700000000, "chat": TEAM,
                                                    "from": {"id": BOT_ID, "is_bot": True, "first_name": "Guess"},
                                                    "text": bot_question.text})
    before = len(guessbot.fake.sent(-100200))
    assert await guessbot.post(reply) == 200
    assert len(guessbot.fake.sent(-100200)) > before

    assert await guessbot.post(message(TEAM, CY, "/start@guess_bot")) == 200
    assert await guessbot.post(message(TEAM, CY, "/start@Guess_Bot")) == 200  # usernames ignore case
    keys = {s.key for s in await guessbot.store.list_sessions(key(-100200).partition)}
    assert keys == {key(-100200, 5), key(-100200, 6)}
    cy = await guessbot.store.load(key(-100200, 6))
    assert cy is not None and len(cy.seen) == 2


async def test_a_button_in_a_group_belongs_to_the_user_who_pressed_it(signup: Bot) -> None:
    await signup.post(message(TEAM, BO, "/start"))
    assert await signup.post(press(TEAM, '"free"', CY)) == 200
    assert {s.key for s in await signup.store.list_sessions()} == {key(-100200, 5, app="signup"), key(-100200, 6, app="signup")}


async def test_forum_topics_have_sessions_of_their_own(guessbot: Bot) -> None:
    forum = {"id": -100300, "type": "supergroup", "title": "Forum", "is_forum": True}
    in_topic = {"message_thread_id": 77, "is_topic_message": True}
    assert await guessbot.post(message(forum, BO, "/start", **in_topic)) == 200
    assert await guessbot.post(message(forum, BO, "/start", message_thread_id=78, is_topic_message=True)) == 200
    assert await guessbot.post(message(forum, BO, "/start")) == 200  # the General topic
    keys = {s.key for s in await guessbot.store.list_sessions(key(-100300).partition)}
    assert keys == {key(-100300, 77, 5), key(-100300, 78, 5), key(-100300, 5)}
    threads = [c.params.get("message_thread_id") for c in guessbot.fake.sent(-100300)]
    assert threads == [77, 77, 78, 78, None, None]
    # A reply thread outside a forum is no topic: same session as the chat.
    assert await guessbot.post(message(TEAM, BO, "/start", message_thread_id=15)) == 200
    assert await guessbot.store.load(key(-100200, 5)) is not None


async def test_a_group_that_becomes_a_supergroup_keeps_its_conversations(guessbot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "randint", lambda low, high: 7)
    old, new = {"id": -4001, "type": "group", "title": "Team"}, {"id": -1004001, "type": "supergroup", "title": "Team"}
    await guessbot.post(message(old, BO, "/start"))
    await guessbot.post(message(old, CY, "/start"))
    assert await say(guessbot, old, "5", **_reply_to_bot(old)) == ["Higher!", "Your guess?"]

    assert await guessbot.post(message(old, BO, migrate_to_chat_id=-1004001)) == 200
    assert await guessbot.post(message(new, BO, migrate_from_chat_id=-4001)) == 200
    moved = {s.key for s in await guessbot.store.list_sessions(key(-1004001).partition)}
    assert moved == {key(-1004001, 5), key(-1004001, 6)}
    ended = await guessbot.store.load(key(-4001, 5))
    assert ended is not None and ended.state is None

    # The same game goes on in the supergroup.
    assert await say(guessbot, new, "8", **_reply_to_bot(new)) == ["Lower!", "Your guess?"]
    assert await say(guessbot, new, "7", **_reply_to_bot(new)) == ["You got it in 3 guesses! Send anything to play again."]
    assert await guessbot.post(message(old, BO, migrate_to_chat_id=-1004001)) == 200  # redelivered: nothing to move


def _reply_to_bot(chat: dict[str, Any]) -> dict[str, Any]:
    return {"from": BO, "reply_to_message": {"message_id": 901, "date": 1700000000, "chat": chat,
                                             "from": {"id": BOT_ID, "is_bot": True, "first_name": "Guess"},
                                             "text": "Your guess?"}}


async def test_replies_to_a_migrated_chat_follow_it(guessbot: Bot) -> None:
    old = {"id": -4002, "type": "group", "title": "Team"}
    guessbot.fake.fail("sendMessage", 400, times=None, chat_id=-4002, migrate_to_chat_id=-1004002)
    assert await guessbot.post(message(old, BO, "/start")) == 200
    assert guessbot.fake.texts(-1004002) == ["Guess a number between 1 and 10.", "Your guess?"]



async def test_commands_other_than_start_and_cancel_reach_the_flow() -> None:
    bot = await start_bot(echo, app="echo")
    try:
        await say(bot, ANN, "/start")
        assert await say(bot, ANN, "/help@guess_bot me") == ['got "/help me"']
        assert await say(bot, ANN, "/cancel") == ["Okay, stopped. Send /start to begin again."]
    finally:
        await bot.close()
