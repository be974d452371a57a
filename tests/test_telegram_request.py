"""AiohttpRequest, python-telegram-bot's request layer over aiohttp, driven through PTB's Bot."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from telegram import Bot
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from convoflow.adapters.telegram.request import AiohttpRequest
from tests.support.fake_telegram import TOKEN, FakeTelegram
from tests.test_server import free_port


def bot_for(url: str, request: AiohttpRequest | None = None) -> Bot:
    return Bot(TOKEN, base_url=f"{url}/bot", request=request or AiohttpRequest(), get_updates_request=AiohttpRequest())


@pytest.fixture
async def fake():  # type: ignore[no-untyped-def]
    api = await FakeTelegram().start()
    yield api
    await api.close()


async def test_calls_go_out_form_encoded_and_answers_are_parsed(fake: FakeTelegram) -> None:
    async with bot_for(fake.url) as bot:
        assert bot.username == "guess_bot"
        sent = await bot.send_message(42, "héllo 👋 <b>not markup</b>", message_thread_id=5)
    assert sent.text == "héllo 👋 <b>not markup</b>" and sent.chat.id == 42 and sent.message_thread_id == 5
    assert fake.of("sendMessage")[0].params == {"chat_id": 42, "text": "héllo 👋 <b>not markup</b>", "message_thread_id": 5}
    assert fake.of("getMe")


async def test_files_are_uploaded_as_multipart(fake: FakeTelegram) -> None:
    async with bot_for(fake.url) as bot:
        await bot.send_document(42, document=b"report body", filename="report.txt", caption="Q3")
    call = fake.of("sendDocument")[0]
    assert call.params["document"] == {"filename": "report.txt", "content": b"report body"}
    assert call.params["caption"] == "Q3" and call.params["chat_id"] == 42


async def test_api_errors_become_ptb_errors(fake: FakeTelegram) -> None:
    async with bot_for(fake.url) as bot:
        fake.fail("sendMessage", 403)
        with pytest.raises(Forbidden, match="blocked by the user"):
            await bot.send_message(42, "hi")
        fake.fail("sendMessage", 429, retry_after=3)
        with pytest.raises(RetryAfter):
            await bot.send_message(42, "hi")
        fake.fail("sendMessage", 400)
        with pytest.raises(BadRequest, match="(?i)chat not found"):
            await bot.send_message(42, "hi")


async def test_a_slow_answer_times_out() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", slow)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        request = AiohttpRequest(read_timeout=0.2)
        await request.initialize()
        bot = bot_for(f"http://127.0.0.1:{server.port}", request)
        with pytest.raises(TimedOut):
            await bot.send_message(42, "hi")
        await request.shutdown()
    finally:
        await server.close()


async def test_an_unreachable_api_is_a_network_error() -> None:
    request = AiohttpRequest()
    await request.initialize()
    bot = bot_for(f"http://127.0.0.1:{free_port()}", request)
    with pytest.raises(NetworkError) as raised:
        await bot.send_message(42, "hi")
    assert "aiohttp.ClientConnectorError" in str(raised.value)
    assert TOKEN not in str(raised.value)
    await request.shutdown()


async def test_using_it_before_initialize_is_an_error() -> None:
    bot = bot_for("http://127.0.0.1:9")
    with pytest.raises(NetworkError, match="AiohttpRequest is not initialized"):
        await bot.send_message(42, "hi")
