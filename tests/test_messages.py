"""Outgoing messages are checked where the flow sends them, not later in a store or a channel."""

from __future__ import annotations

import pytest

from convoflow import Incoming, Media, Option, SessionKey, Text, ask, dialog
from convoflow.messages import as_message, message_from_dict, message_to_dict
from convoflow.turns import Engine
from convoflow.stores import MemoryStore

KEY = SessionKey("test:1", "messages")


@pytest.mark.parametrize(
    "message",
    ["plain", Text("pick", (Option("a"), Option("b", {"id": 2}))), Media("image", "https://x/y.png", "cap"), Media("file", "FILEID")],
)
def test_messages_round_trip_through_their_stored_form(message: object) -> None:
    checked = as_message(message)
    assert message_from_dict(message_to_dict(checked)) == checked


@pytest.mark.parametrize(
    ("message", "complaint"),
    [
        (42, "send a str, convoflow.Text or convoflow.Media"),
        (Text(Text("nested")), "Text.text must be a str"),  # type: ignore[arg-type]
        (Text("q", ("a",)), "use convoflow.Option"),  # type: ignore[arg-type]
        (Text("q", (Option(3),)), "Option.label must be a str"),  # type: ignore[arg-type]
        (Text("q", (Option("a", object()),)), "step \"Option 'a'\""),  # type: ignore[arg-type]
        (Media("video", "x"), "use 'image' or 'file'"),  # type: ignore[arg-type]
        (Media("image", None), "Media.source must be a str"),  # type: ignore[arg-type]
    ],
)
def test_malformed_messages_are_refused_with_what_is_wrong(message: object, complaint: str) -> None:
    with pytest.raises(TypeError, match=complaint.replace("(", r"\(").replace(".", r"\.")):
        as_message(message)


@dialog()
def malformed_question():
    yield ask(Text("a Text where a str belongs", (Option("a"),)))  # type: ignore[arg-type]


async def test_a_malformed_message_fails_the_turn_with_an_apology_and_keeps_nothing() -> None:
    engine = Engine(malformed_question, MemoryStore())
    replies = await engine.handle(Incoming(KEY, "u1", "command", "/start"))
    assert [r.message for r in replies] == [Text(engine.apology)]
    session = await engine.store.load(KEY)
    assert session is not None and session.state is None
