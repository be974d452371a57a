"""Telegram channel options, importable without python-telegram-bot (a bot module may set them).

A bot opts into edited messages by defining, next to its dialog:

    from convoflow.adapters.telegram.options import TelegramOptions
    telegram_options = TelegramOptions(edited_messages=True)
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any, Callable

TOKEN_PATTERN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,128}")
"""A bot token as @BotFather gives it: the bot's id, a colon, the key."""
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
"""What Telegram accepts as a webhook secret."""

BOT_OPTIONS_NAME = "telegram_options"
"""The module-level name under which a bot module sets its TelegramOptions."""


class StartFailed(Exception):
    """The channel could not start, for a reason one of its settings can fix: `setting` names the
    TelegramChannel argument (`api_url`, `webhook_url`)."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class TelegramOptions:
    edited_messages: bool = False
    """Take an edited message as the user's next message (ignored by default)."""
    overall_max_rate: float = 30
    """Messages per second to all chats (Telegram's flood limit); 0 disables this limit."""
    group_max_rate: float = 20
    """Messages per minute to one group; 0 disables this limit."""
    retry_after_retries: int = 3
    """How often a send answered with 429 RetryAfter is retried (after the time Telegram asks)."""
    network_retries: int = 3
    """How often a send that failed on the network or with a 5xx is retried."""
    backoff_seconds: float = 0.5
    """First pause before a network retry; it doubles with every further attempt."""
    poll_timeout: float = 10
    """Long-polling: how long one getUpdates call waits for updates."""
    connection_limit: int = 256
    """Concurrent HTTP connections to the Bot API."""


def bot_options(dialog_factory: Callable[..., Any]) -> TelegramOptions:
    """The `telegram_options` the bot's module defines next to its dialog, or the defaults."""
    module = sys.modules.get(getattr(dialog_factory, "__module__", ""))
    found = getattr(module, BOT_OPTIONS_NAME, None)
    if found is None:
        return TelegramOptions()
    if not isinstance(found, TelegramOptions):
        raise ValueError(f"{dialog_factory.__module__}.{BOT_OPTIONS_NAME} must be a TelegramOptions, not {type(found).__name__}")
    return found
