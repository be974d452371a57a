"""One flow using every time and event primitive, and the script a test plays it by on any channel:
`say(text)` as the user, `advance(seconds)` of the manual clock (firing what falls due), and
`signal(key, name, data, id)` from outside; each returns the bot's replies meanwhile, as text."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from convoflow import TimedOut, ask, dialog, get_client_response, now, send_message, session_key, sleep
from convoflow import wait_first, wait_for_event

Say = Callable[[str], Awaitable[list[str]]]
Advance = Callable[[float], Awaitable[list[str]]]
Signal = Callable[[str, str, Any, str], Awaitable[list[str]]]


@dialog()
def tour() -> Any:
    key = yield session_key()
    started = yield now()
    yield send_message(f"Hello at {started:%H:%M}. Your key: {key}")
    yield sleep(60)
    yield send_message("I slept a minute.")
    try:
        name = yield ask("Your name?", timeout=300, remind_after=120, reminder="Still there?")
    except TimedOut:
        name = "stranger"
    yield send_message(f"Hi {name}. Pay, or say cancel.")
    woke = yield wait_first(answer=True, events=("paid",), timeout=600)
    yield send_message(f"First came: {woke.kind}")
    parcel = yield wait_for_event("shipped", timeout=600)
    yield send_message(f"Shipped: {parcel['id']}")
    try:
        yield get_client_response(timeout=30)
    except TimedOut:
        yield send_message("Quiet now. Bye.")


async def play_tour(first: list[str], say: Say, advance: Advance, signal: Signal) -> None:
    """Play the tour from the bot's first replies `first` on; asserts every step."""
    assert len(first) == 1 and first[0].startswith("Hello at 00:00. Your key: "), first
    key = first[0].rpartition(" ")[2]
    assert await advance(59) == []
    assert await advance(1) == ["I slept a minute.", "Your name?"]
    assert await advance(120) == ["Still there?"]
    assert await say("Ada") == ["Hi Ada. Pay, or say cancel."]
    assert await signal(key, "paid", {"amount": 5}, "pay-1") == ["First came: event"]
    assert await signal(key, "paid", {"amount": 5}, "pay-1") == []  # a repeat: processed once
    assert await signal(key, "shipped", {"id": 7}, "ship-1") == ["Shipped: 7"]
    assert await advance(30) == ["Quiet now. Bye."]
