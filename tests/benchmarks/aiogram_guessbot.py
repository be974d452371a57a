"""The guessbot written with aiogram 3 (its FSM, memory storage, its own aiohttp webhook handler),
the comparison side of telegram_e2e.py. Runs in a separate virtualenv that has aiogram, so aiogram
never becomes a convoflow dependency:

    .bench-venv/bin/python tests/benchmarks/aiogram_guessbot.py --port 8081 --api http://127.0.0.1:9000 \
        --token 1:abc --secret s3cret
"""

from __future__ import annotations

import argparse
import logging
import random

from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import Message
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

router = Router()


class Game(StatesGroup):
    guessing = State()


async def new_game(message: Message, state: FSMContext) -> None:
    await message.answer("Guess a number between 1 and 10.")
    await state.set_state(Game.guessing)
    await state.set_data({"secret": random.randint(1, 10), "guesses": 0})
    await message.answer("Your guess?")


@router.message(CommandStart())
async def on_start(message: Message, state: FSMContext) -> None:
    await new_game(message, state)


@router.message(Game.guessing)
async def on_guess(message: Message, state: FSMContext) -> None:
    try:
        guess = int(message.text or "")
    except ValueError:
        await message.answer("Numbers only, please.")
        return
    data = await state.get_data()
    guesses = data["guesses"] + 1
    if guess == data["secret"]:
        await state.clear()
        await message.answer(f"You got it in {guesses} {'guess' if guesses == 1 else 'guesses'}! Send anything to play again.")
        return
    await state.update_data(guesses=guesses)
    await message.answer("Higher!" if guess < data["secret"] else "Lower!")
    await message.answer("Your guess?")


@router.message()
async def on_idle(message: Message, state: FSMContext) -> None:
    await new_game(message, state)


def main() -> None:
    args = argparse.ArgumentParser()
    for name in ("--port", "--api", "--token", "--secret", "--url"):
        args.add_argument(name, required=name != "--url")
    options = args.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bot = Bot(options.token, session=AiohttpSession(api=TelegramAPIServer.from_base(options.api)))
    dispatcher = Dispatcher(storage=MemoryStorage())
    dispatcher.include_router(router)

    async def register(bot: Bot) -> None:
        await bot.set_webhook(options.url or "https://bench.example.org/webhook", secret_token=options.secret)

    dispatcher.startup.register(register)
    app = web.Application()
    # Answer Telegram only after the update is handled, as convoflow does.
    SimpleRequestHandler(dispatcher=dispatcher, bot=bot, secret_token=options.secret,
                         handle_in_background=False).register(app, path="/webhook")
    setup_application(app, dispatcher, bot=bot)
    web.run_app(app, host="127.0.0.1", port=int(options.port), print=None, access_log=None)


if __name__ == "__main__":
    main()
