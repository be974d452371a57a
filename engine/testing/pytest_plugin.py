"""The pytest plugin (entry point `pytest11`: `convoflow`): the `chat` fixture, and failed
assertions on a turn's replies shown with the conversation so far.

    async def test_signup(chat):
        bot = chat("bots/signup.py")
        assert await bot.say("hi") == ["Welcome! Let's get you signed up.", "What's your name?"]

`chat(bot, store="memory://", **options)` makes a `convoflow.testing.Chat`; every chat it made is
closed when the test ends. Async tests need pytest-asyncio (or another async plugin).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable

import pytest

from convoflow.testing.chat import Chat, Replies

try:
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - without pytest-asyncio the fixture closes nothing itself
    async_fixture = None  # type: ignore[assignment]


def _factory(made: list[Chat]) -> Callable[..., Chat]:
    def chat(bot: Any, store: Any = "memory://", **options: Any) -> Chat:
        made.append(Chat(bot, store, **options))
        return made[-1]

    return chat


if async_fixture is not None:
    @async_fixture
    async def chat() -> AsyncIterator[Callable[..., Chat]]:
        """Makes `Chat`s for this test: `chat(bot, store="memory://", user="test", ...)`."""
        made: list[Chat] = []
        yield _factory(made)
        await asyncio.gather(*(each.close() for each in made))
else:  # pragma: no cover
    @pytest.fixture
    def chat() -> Callable[..., Chat]:
        """Makes `Chat`s for this test: `chat(bot, store="memory://", user="test", ...)`."""
        return _factory([])


def pytest_assertrepr_compare(op: str, left: Any, right: Any) -> list[str] | None:
    """`assert await chat.say(...) == [...]` that fails shows the conversation up to that turn."""
    replies = left if isinstance(left, Replies) else right if isinstance(right, Replies) else None
    if replies is None or op != "==":
        return None
    other = right if replies is left else left
    lines = ["the bot's replies differ:", f"  got:      {list(replies)!r}", f"  expected: {other!r}", "",
             "the conversation so far:"]
    return lines + [f"  {line}" for line in replies.conversation.splitlines()]
