"""Long replies on Telegram, end to end through the real channel and python-telegram-bot against
the fake Bot API (which refuses what Telegram refuses): every part arrives, in order, exactly
once, whole and as written, even when a part meets a failure."""

from __future__ import annotations

from typing import Any

import regex

from convoflow import dialog, get_client_response, send_message
from convoflow.adapters.channel import router
from convoflow.adapters.telegram import TelegramOptions
from tests.support.fake_telegram import message, private_chat
from tests.support.telegram_harness import Bot, start_bot

ANN = private_chat(42)
FAST_GIVE_UP = TelegramOptions(network_retries=1, backoff_seconds=0.01, poll_timeout=1)
"""A send is tried twice, then the reply waits in the outbox."""

SENTENCE = "Every part arrives once. "
LONG = (SENTENCE * 300)[:7001]
SPACES = "x" * 4000 + " " * 5000 + "tail"
FAMILY = "👨\u200d👩\u200d👧\u200d👦"
CLUSTERED = "a" * 4090 + FAMILY * 3 + "e\u0301" * 2000 + "🇯🇵1\ufe0f\u20e3" * 500
TEXTS = {"long": LONG, "spaces": SPACES, "clusters": CLUSTERED}


@dialog()
def long_talk() -> Any:
    while True:
        said = yield get_client_response()
        yield send_message(TEXTS.get(said, f"echo {said}"))
        yield send_message(f"done {said}")


async def started(options: TelegramOptions | None = None) -> Bot:
    """The bot, with Ann's conversation begun (waiting for her first message)."""
    bot = await start_bot(long_talk, app="long", **({"options": options} if options else {}))
    assert await bot.post(message(ANN, text="hi")) == 200 and bot.fake.sent() == []
    return bot


def sent(bot: Bot) -> list[str]:
    return [str(text) for text in bot.fake.texts(ANN["id"])]


def second_part(params: dict[str, Any]) -> bool:
    """A send of LONG's part after the first."""
    text = str(params.get("text", ""))
    return text in LONG and not LONG.startswith(text)


def whole_clusters(parts: list[str]) -> bool:
    """Whether every cut between two parts falls between two grapheme clusters of the whole."""
    ends, at = set(), 0
    for cluster in regex.findall(r"\X", "".join(parts)):
        at += len(cluster)
        ends.add(at)
    cuts, at = [], 0
    for part in parts:
        at += len(part)
        cuts.append(at)
    return all(cut in ends for cut in cuts)


async def test_a_part_that_fails_is_retried_on_its_own() -> None:
    bot = await started()
    try:
        bot.fake.fail("sendMessage", 502, matching=second_part)
        assert await bot.post(message(ANN, text="long")) == 200
        first, second, done = sent(bot)
        assert first + second == LONG and done == "done long"
        statuses = [(c.status, c.text == second) for c in bot.fake.of("sendMessage")]
        assert statuses == [(200, False), (502, True), (200, True), (200, False)]
    finally:
        await bot.close()


async def test_a_reply_attempted_again_does_not_repeat_the_parts_already_sent() -> None:
    bot = await started(FAST_GIVE_UP)
    try:
        bot.fake.fail("sendMessage", 502, times=None, matching=second_part)
        assert await bot.post(message(ANN, text="long")) == 200  # committed; the rest waits in the outbox
        [first] = sent(bot)
        assert LONG.startswith(first) and len(first) <= 4096
        bot.fake.heal()
        assert await bot.post(message(ANN, text="next")) == 200  # the backlog goes out first
        assert sent(bot) == [first, LONG[len(first):], "done long", "echo next", "done next"]
        assert len(bot.channel.deliveries) == 0  # nothing left to remember
    finally:
        await bot.close()


async def test_the_sweep_finishes_a_half_sent_reply_without_repeating_it() -> None:
    bot = await started(FAST_GIVE_UP)
    try:
        bot.fake.fail("sendMessage", 500, times=None, matching=second_part)
        assert await bot.post(message(ANN, text="long")) == 200
        bot.fake.heal()
        bot.engine.delivery.handoff_seconds = 0  # the sweep takes up replies waiting any time at all
        assert await bot.engine.redeliver_waiting(router([bot.channel])) == 2
        assert "".join(sent(bot)[:2]) == LONG and sent(bot)[2:] == ["done long"]
    finally:
        await bot.close()


async def test_a_long_run_of_spaces_gives_no_empty_part_and_the_tail_arrives() -> None:
    bot = await started()
    try:
        assert await bot.post(message(ANN, text="spaces")) == 200
        *parts, done = sent(bot)
        assert "".join(parts) == SPACES and parts[-1].endswith("tail") and done == "done spaces"
        assert all(c.status == 200 for c in bot.fake.of("sendMessage"))  # none refused as empty
    finally:
        await bot.close()


async def test_grapheme_clusters_arrive_whole_and_text_as_written() -> None:
    bot = await started()
    try:
        assert await bot.post(message(ANN, text="clusters")) == 200
        *parts, done = sent(bot)
        assert "".join(parts) == CLUSTERED and len(parts) > 2 and done == "done clusters"
        assert whole_clusters(parts)
        assert all(c.status == 200 for c in bot.fake.of("sendMessage"))  # each within 4,096 UTF-16 units
    finally:
        await bot.close()


async def test_the_fake_refuses_what_telegram_refuses() -> None:
    bot = await started()
    try:
        for text, description in [(" ", "message text is empty"), ("😀" * 2049, "message is too long")]:
            try:
                await bot.channel.bot.send_message(42, text)
            except Exception as error:  # noqa: BLE001 - PTB's BadRequest, whatever its wording
                assert description in str(error).lower()
            else:
                raise AssertionError(f"{text[:10]!r} was accepted")
    finally:
        await bot.close()


async def test_a_refused_part_drops_the_reply_is_counted_and_the_conversation_goes_on() -> None:
    bot = await started()
    try:
        bot.fake.fail("sendMessage", 400, times=None, matching=second_part, description="Bad Request: refused")
        assert await bot.post(message(ANN, text="long")) == 200
        assert sent(bot)[1:] == ["done long"]
        assert bot.channel.deliveries.dropped == {"BadRequest": 1}
        assert await bot.post(message(ANN, text="more")) == 200
        assert sent(bot)[-2:] == ["echo more", "done more"]
    finally:
        await bot.close()
