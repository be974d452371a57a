"""What a test may hand the kit as "the bot": a @dialog function, a bot module, a loaded bot, or
what `convoflow run` takes (a bundled example's name, a file path, a module path, with `:dialog`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Mapping

from convoflow.dialogs import BaseDialog, is_dialog
from convoflow.interrupts import Handler


@dataclass(frozen=True)
class BotUnderTest:
    app: str | None
    """The app id sessions are stored under (None: the dialog's name, as the Engine takes it)."""
    dialog: Callable[[], BaseDialog[Any]]
    fallback: Callable[[], BaseDialog[Any]] | None = None
    idle_timeout: float | None = None
    on_idle: Callable[[], BaseDialog[Any]] | None = None
    interrupts: Mapping[str, Handler] = field(default_factory=dict)


def bot_under_test(bot: Any) -> BotUnderTest:
    """The bot `bot` names; a string or module is loaded as `convoflow run` loads it (the module's
    `main`, `fallback`, `idle_timeout`, `on_idle` and `interrupts`)."""
    if is_dialog(bot):
        return BotUnderTest(None, bot)
    if isinstance(bot, ModuleType):
        bot = bot.__name__
    if isinstance(bot, str):
        # Imported here, not at the top: the engine does not depend on the host, only this
        # convenience of the test kit does (the same loader as `convoflow run`).
        from convoflow.adapters.host.loader import load_bot

        bot = load_bot(bot)
    if callable(getattr(bot, "dialog", None)):  # the loader's Bot, or anything shaped like it
        return BotUnderTest(getattr(bot, "app", None), bot.dialog, getattr(bot, "fallback", None),
                            getattr(bot, "idle_timeout", None), getattr(bot, "on_idle", None),
                            getattr(bot, "interrupts", {}))
    raise TypeError(f"cannot test {bot!r}: pass a @dialog function, a bot module, or a bot's name or path "
                    "(as `convoflow run` takes it)")
