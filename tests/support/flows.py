"""Flows shared by the engine tests: one using every feature, an echo played by many sessions at
once, and scripted inputs for the bots."""

from __future__ import annotations

import asyncio
import random
from typing import Any, Callable

from convoflow.bots import dragons, guessbot, menu, signup
from convoflow.messages import Incoming, Reply, SessionKey
from convoflow.stores import Store
from convoflow.turns import Engine
from convoflow import (
    BaseDialog,
    Option,
    ask,
    dialog,
    dialog_result,
    get_client_response,
    goto,
    run,
    send_message,
)


class CardDeclined(Exception):
    pass


@dialog()
def lucky() -> int:
    return random.randint(1, 1000)


@dialog()
async def check_card(number: str) -> dict[str, Any]:
    await asyncio.sleep(0.001)
    if number.endswith("0"):
        raise CardDeclined(f"card {number} declined")
    return {"card": number, "checks": [random.random()]}


@dialog()
def plain_nickname(name: str) -> str:
    run(send_message(f"{name}, a nickname?"))
    nick = run(get_client_response())
    return f"{nick} ({run(lucky())})"


@dialog()
async def async_payment():
    while True:
        number = yield ask("Card number?")
        try:
            card = yield check_card(number)
        except CardDeclined as declined:
            yield send_message(str(declined))
            continue
        card["checks"].append("flow-added")  # changes a recorded value
        await asyncio.sleep(0)
        yield send_message(f"card ok: {card}")
        yield dialog_result(card)


@dialog()
def one_round(number: int):
    move = yield ask(f"Round {number}?", choices=[Option("Rock", "r"), Option("Paper", "p")])
    yield send_message(f"round {number}: {move} vs {['r', 'p'][lucky_pick(number)]}")


def lucky_pick(number: int) -> int:
    return number % 2


@dialog()
def epilogue(rounds: int, name: str):
    yield send_message(f"{name}, you played {rounds} rounds.")
    verdict = yield ask("Again?", choices=["yes", "no"])
    if verdict == "yes":
        yield goto(epilogue(rounds + 1, name))
    return verdict


@dialog()
def kitchen_sink():
    name = yield ask("Name?", parse=str.strip)
    nick = yield plain_nickname(name)
    card = yield async_payment()
    card["checks"].append("seen by the top")  # changes a recorded value before waiting again
    rounds = yield ask("How many rounds?", parse=int, retry="A number please")
    for number in range(1, rounds + 1):
        yield one_round(number)
    yield send_message(f"{nick} paid with {card['card']} after {len(card['checks'])} checks")
    yield goto(epilogue(rounds, name))


KITCHEN_SINK_INPUTS = [
    "hi", " Ada ", "Ace", "1230", "4242", "many", "3", "Rock", "p", "2", "yes", "yes", "no", "after the end",
]

SCRIPTS: dict[str, tuple[Callable[[], BaseDialog[Any]], list[Any]]] = {
    "kitchen_sink": (kitchen_sink, KITCHEN_SINK_INPUTS),
    "guessbot": (guessbot.main, ["hi", "5", "x", "3", "8", "1", "2", "4", "6", "7", "9", "10", "again"]),
    "signup": (signup.main, ["hi", "Ada", "twelve", "36", "ada@example.org", "Pro (9/month)", "2", "more"]),
    "menu": (menu.main, ["hi", "fact", "2", "Count up", "count", "nonsense", "3"]),
    "dragons": (dragons.main, ["hi", "Ada", "forest", "cave", "sneak past", "bye"]),
}


@dialog(version="1")
def hello_echo() -> Any:
    """Says hi, then answers each message with "you said ..."."""
    yield send_message("hi")
    while True:
        said = yield get_client_response()
        yield send_message(f"you said {said}")


async def two_turns_each(store: Store, keys: list[SessionKey]) -> dict[SessionKey, list[str]]:
    """Every session's first turn of hello_echo at once ("start", id u1), then every second one (its
    partition, id u2); the texts each session was sent."""
    sent: dict[SessionKey, list[str]] = {}

    async def deliver(reply: Reply) -> None:
        sent.setdefault(reply.key, []).append(reply.message.text)  # type: ignore[attr-defined]

    engine = Engine(hello_echo, store)
    await asyncio.gather(*(engine.handle(Incoming(k, "u1", text="start"), deliver) for k in keys))
    await asyncio.gather(*(engine.handle(Incoming(k, "u2", text=k.partition), deliver) for k in keys))
    return sent
