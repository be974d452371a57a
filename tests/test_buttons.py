"""Button payloads: short answers travel as JSON, long ones as references the Engine resolves."""

from __future__ import annotations

import pytest

from convoflow import Incoming, Option, Reply, SessionKey, Text, ask, dialog, send_message
from convoflow.buttons import ButtonRef, decode_button, encode_button
from convoflow.turns import Engine
from convoflow.stores import MemoryStore

KEY = SessionKey("test:1", "buttons")
LONG = {"sku": "x" * 100, "note": "a value far longer than Telegram's 64-byte callback data"}


@pytest.mark.parametrize("answer", ["yes", 3, True, None, ["a", 1], {"k": "v"}, "ünïcode \U0001f600"])
def test_short_answers_travel_as_their_json(answer: object) -> None:
    data = encode_button(answer, seq=5, index=0, limit_bytes=64)  # type: ignore[arg-type]
    assert decode_button(data) == answer


def test_long_answers_travel_as_a_reference_within_the_limit() -> None:
    data = encode_button(LONG, seq=12, index=3, limit_bytes=64)
    assert len(data.encode()) <= 64
    assert decode_button(data) == ButtonRef(12, 3)


def test_limit_counts_utf8_bytes_not_characters() -> None:
    answer = "é" * 40  # 40 characters, 82 bytes of JSON
    assert decode_button(encode_button(answer, 1, 0, limit_bytes=64)) == ButtonRef(1, 0)


@pytest.mark.parametrize("data", ["", "#", "#1", "#a.b", "not json", "{broken", "NaN", "[Infinity]", "-Infinity",
                                  "[" * 5000 + "]" * 5000])
def test_a_payload_we_never_made_is_refused(data: str) -> None:
    with pytest.raises(ValueError):
        decode_button(data)


@dialog()
def order():
    choice = yield ask("Which one?", choices=[Option("Short", "s"), Option("Long", LONG)])
    yield send_message(Text(f"chose {choice!r}"))
    yield ask("Anything else?")


class Player:
    def __init__(self) -> None:
        self.engine = Engine(order, MemoryStore())
        self.sent: list[Reply] = []
        self.n = 0

    async def deliver(self, reply: Reply) -> None:
        self.sent.append(reply)

    async def press(self, data: str) -> list[str]:
        decoded = decode_button(data)
        self.n += 1
        incoming = Incoming(
            KEY, f"u{self.n}", "button",
            button=decoded if isinstance(decoded, ButtonRef) else None,
            value=None if isinstance(decoded, ButtonRef) else decoded,
        )
        replies = await self.engine.handle(incoming, self.deliver)
        return [r.message.text for r in replies if isinstance(r.message, Text)]

    async def start(self) -> Reply:
        self.n += 1
        await self.engine.handle(Incoming(KEY, f"u{self.n}", "command", "/start"), self.deliver)
        return self.sent[-1]


async def test_a_pressed_reference_reaches_the_flow_as_the_full_answer() -> None:
    player = Player()
    question = await player.start()
    assert isinstance(question.message, Text)
    long_button = encode_button(question.message.options[1].answer, question.seq, 1, 64)
    assert long_button.startswith("#")
    assert await player.press(long_button) == [f"chose {LONG!r}", "Anything else?"]


async def test_a_reference_to_a_reply_the_session_no_longer_holds_is_answered_not_guessed() -> None:
    player = Player()
    question = await player.start()
    await player.press(encode_button("s", question.seq, 0, 64))  # the flow moves on
    before = await player.engine.store.load(KEY)
    assert await player.press(f"#{question.seq}.1") == [player.engine.expired_button_reply]
    after = await player.engine.store.load(KEY)
    assert before is not None and after is not None
    assert after.state == before.state  # the flow did not move
    assert await player.press(f"#{question.seq + 99}.0") == [player.engine.expired_button_reply]

