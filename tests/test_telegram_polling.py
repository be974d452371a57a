"""The Telegram channel in long-polling mode: PTB's updater fetching from the fake getUpdates."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from convoflow import SessionKey
from tests.support.fake_telegram import BOT_ID, message, press, private_chat
from tests.support.telegram_harness import Bot, binary_search, start_bot
from tests.test_telegram_webhook import FlakyStore

ANN = private_chat(42)


async def handled(bot: Bot, update: dict[str, Any], key: SessionKey, timeout: float = 10.0) -> None:
    """Wait until the update's turn is committed and its replies delivered."""
    incoming = f"telegram:{BOT_ID}:{update['update_id']}"
    for _ in range(int(timeout / 0.01)):
        session = await bot.store.load(key)
        if session is not None and incoming in session.seen and not session.outbox:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"update {update['update_id']} was not handled; calls: {[c.method for c in bot.fake.calls]}")


async def say(bot: Bot, update: dict[str, Any], app: str = "guessbot") -> list[str | None]:
    chat_id = (update.get("message") or update["callback_query"]["message"])["chat"]["id"]
    before = len(bot.fake.sent(chat_id))
    bot.fake.push(update)
    await handled(bot, update, SessionKey(f"telegram:{BOT_ID}:{chat_id}", app))
    return bot.fake.texts(chat_id)[before:]


@pytest.fixture
async def guessbot():  # type: ignore[no-untyped-def]
    bot = await start_bot("bots/guessbot.py", webhook=False)
    yield bot
    await bot.close()


async def test_polling_deletes_the_webhook_first_and_plays_the_guessbot(guessbot: Bot) -> None:
    methods = [c.method for c in guessbot.fake.calls if c.method != "setMyCommands"]  # the menu: test_telegram_touches
    assert methods[:2] == ["getMe", "deleteWebhook"] and "setWebhook" not in methods
    assert guessbot.channel.routes() == []
    assert await say(guessbot, message(ANN, text="/start")) == ["Guess a number between 1 and 10.", "Your guess?"]

    async def guess(text: str) -> str:
        return str((await say(guessbot, message(ANN, text=text)))[0])

    await binary_search(guess)
    assert str(guessbot.fake.texts(42)[-1]).startswith("You got it in")
    polls = guessbot.fake.of("getUpdates")
    assert polls[0].params["allowed_updates"] == ["message", "callback_query"]
    assert max(c.params.get("offset") or 0 for c in polls) > 0  # fetched updates are confirmed


async def test_signup_form_with_buttons_through_polling() -> None:
    bot = await start_bot("bots/signup.py", webhook=False)
    try:
        for text in ("/start", "Ann", "34", "ann@example.org"):
            await say(bot, message(ANN, text=text), "signup")
        assert dict(bot.fake.sent(42)[-1].buttons())["Team (29/month)"] == '"team"'
        pressed = press(ANN, '"team"')
        assert await say(bot, pressed, "signup") == ["Sign up Ann (34, ann@example.org) for the team plan?"]
        assert await say(bot, press(ANN, "true"), "signup") == ["Done! Welcome aboard, Ann."]
        await bot.fake.wait_for(lambda: pressed["callback_query"]["id"] in
                                [c.params["callback_query_id"] for c in bot.fake.of("answerCallbackQuery")])
    finally:
        await bot.close()


async def test_chats_are_served_concurrently_while_polling(guessbot: Bot) -> None:
    guessbot.fake.hold(1001)
    guessbot.fake.push(message(private_chat(1001), text="/start"))
    await guessbot.fake.wait_for(lambda: guessbot.fake.of("sendMessage"))
    assert await say(guessbot, message(private_chat(1002), text="/start")) == ["Guess a number between 1 and 10.", "Your guess?"]
    assert guessbot.fake.texts(1001) == ["Guess a number between 1 and 10."]  # still held
    guessbot.fake.release(1001)
    await guessbot.fake.wait_for(lambda: len(guessbot.fake.texts(1001)) == 2)


async def test_stop_finishes_the_turns_of_fetched_updates() -> None:
    bot = await start_bot("bots/guessbot.py", webhook=False)
    try:
        bot.fake.hold(42)
        start = message(ANN, text="/start")
        bot.fake.push(start)
        await bot.fake.wait_for(lambda: bot.fake.of("sendMessage"))
        stopping = asyncio.create_task(bot.channel.stop())
        await asyncio.sleep(0.1)
        assert not stopping.done()  # waits for the turn in flight
        bot.fake.release(42)
        await asyncio.wait_for(stopping, 10)
        session = await bot.store.load(SessionKey(f"telegram:{BOT_ID}:42", "guessbot"))
        assert session is not None and session.outbox == () and bot.fake.texts(42) == [
            "Guess a number between 1 and 10.", "Your guess?"]
        last_poll = bot.fake.of("getUpdates")[-1]
        assert last_poll.params["offset"] == start["update_id"] + 1  # told Telegram it was fetched
    finally:
        bot.channel.stop = _noop  # type: ignore[method-assign]  # already stopped
        await bot.close()


async def _noop() -> None:
    pass


async def test_a_store_outage_is_waited_out_for_polled_updates() -> None:
    store = FlakyStore()
    delays = (0.2, 0.4, 0.8, 1.6, 3.2)  # the turn runner's attempts, this far apart
    bot = await start_bot("bots/guessbot.py", store=store, webhook=False, retry_delays=delays)
    try:
        store.down = True
        bot.fake.push(message(ANN, text="/start"))
        await bot.fake.wait_for(lambda: store.refused >= 2)  # tried, and tried again
        store.down = False
        await bot.fake.wait_for(lambda: len(bot.fake.texts(42)) == 2)
        assert bot.fake.texts(42) == ["Guess a number between 1 and 10.", "Your guess?"]
    finally:
        await bot.close()
