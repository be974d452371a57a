"""Find a bot's dialog from what the user typed: a file path or module, optionally `:dialog`."""

from __future__ import annotations

import importlib
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

import convoflow.bots as bundled_bots
from convoflow.dialogs import BaseDialog, is_dialog
from convoflow.durations import seconds_of
from convoflow.interrupts import Handler, Interrupts
from convoflow.stores import Store
from convoflow.turns import Engine
from convoflow.renamed import current_path

DEFAULT_DIALOG = "main"


class BotNotFound(Exception):
    """The bot file, module or dialog does not exist; the message says what was looked for."""


class BotMisconfigured(BotNotFound):
    """A setting in the bot's module is malformed (`idle_timeout`, `on_idle`, `interrupts`); the
    message names it."""


class BotImportFailed(BotNotFound):
    """The bot's code failed to import (a syntax error, a missing module, an exception): the
    message shows where in the user's code, in a few lines, without importlib's own frames."""


@dataclass(frozen=True)
class Bot:
    app: str
    """The conversation's id in the store, e.g. `guessbot`."""
    dialog: Callable[[], BaseDialog[Any]]
    fallback: Callable[[], BaseDialog[Any]] | None
    idle_timeout: float | None = None
    """Seconds a conversation may wait for the user before it ends (the module's `idle_timeout`)."""
    on_idle: Callable[[], BaseDialog[Any]] | None = None
    """The dialog that runs when a conversation ends for idleness (the module's `on_idle`)."""
    dialogs: Mapping[str, Callable[..., BaseDialog[Any]]] = field(default_factory=dict)
    """The module's own @dialog functions by name: those a conversation the bot starts may run
    (`convoflow start --dialog`, `POST /conversations`)."""
    interrupts: Mapping[str, Handler] = field(default_factory=dict)
    """The module's `interrupts`: commands or texts mapped to the @dialog functions they run mid-flow."""

    def engine(self, store: Store, **options: Any) -> Engine:
        """The Engine that runs this bot on `store` (`options`: the Engine's other keywords)."""
        return Engine(self.dialog, store, self.fallback, app=self.app, idle_timeout=self.idle_timeout,
                      on_idle=self.on_idle, interrupts=self.interrupts, **options)


def load_bot(spec: str) -> Bot:
    """`guessbot` (a bundled example), `bots/guessbot.py`, `mypkg.mybot`, `mybot.py:main` -> the
    bot's dialog."""
    target, _, name = spec.partition(":") if not _is_windows_drive(spec) else (spec, "", "")
    module = _import(target)
    stem = module.__name__.rpartition(".")[2]
    dialog_name = name or DEFAULT_DIALOG
    found = getattr(module, dialog_name, None)
    dialogs = {n: v for n, v in vars(module).items() if is_dialog(v) and v.__module__ == module.__name__}
    if not is_dialog(found):
        available = sorted(dialogs)
        hint = f"dialogs in it: {', '.join(available)}" if available else "it defines no @dialog functions"
        raise BotNotFound(f"{target} has no dialog named {dialog_name!r} ({hint}); name one as {target}:NAME")
    assert found is not None
    fallback = getattr(module, "fallback", None)
    app = stem if dialog_name == DEFAULT_DIALOG else f"{stem}.{dialog_name}"
    idle_timeout, on_idle = _idle_policy(module, target)
    return Bot(app=app, dialog=found, fallback=fallback if is_dialog(fallback) else None,
               idle_timeout=idle_timeout, on_idle=on_idle, dialogs=dict(sorted(dialogs.items())),
               interrupts=_interrupts(module, target))


def _interrupts(module: ModuleType, target: str) -> Mapping[str, Handler]:
    """The module's `interrupts` mapping, checked (keys non-empty texts, values @dialog functions)."""
    raw = getattr(module, "interrupts", None)
    if raw is None:
        return {}
    try:
        Interrupts.of({}, raw)
    except (TypeError, ValueError) as error:
        raise BotMisconfigured(f"{error} (in {target})") from None
    return dict(raw)


def _idle_policy(module: ModuleType, target: str) -> tuple[float | None, Callable[[], BaseDialog[Any]] | None]:
    """The module's `idle_timeout` (seconds or a timedelta) and `on_idle` (a dialog), checked."""
    raw, on_idle = getattr(module, "idle_timeout", None), getattr(module, "on_idle", None)
    timeout = None
    if raw is not None:
        try:
            timeout = seconds_of(raw, f"idle_timeout in {target}")
        except (TypeError, ValueError) as error:
            raise BotMisconfigured(str(error)) from None
        if timeout <= 0:
            raise BotMisconfigured(f"idle_timeout in {target} must be more than 0 seconds")
    if on_idle is not None and not is_dialog(on_idle):
        raise BotMisconfigured(f"on_idle in {target} must be a @dialog function")
    if on_idle is not None and timeout is None:
        raise BotMisconfigured(f"{target} sets on_idle but no idle_timeout: set idle_timeout (seconds or a timedelta)")
    return timeout, on_idle


def _is_windows_drive(spec: str) -> bool:
    return len(spec) > 2 and spec[1] == ":" and spec[2] in "/\\"


def _import(target: str) -> ModuleType:
    given = target
    path = Path(target)
    if target.endswith(".py") or path.exists():
        if not path.is_file():
            raise BotNotFound(f"bot file {target} does not exist")
        bundled = _bundled_module(path.resolve())
        if bundled is not None:
            return importlib.import_module(bundled)
        root, target = _module_name(path.resolve())
        # The bot's package root goes on the path, so `bots/menu.py` and `bots.menu` name the same
        # module: dialogs stored by goto are found again by module name.
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    if "." not in target and _is_bundled(target):
        target = f"{bundled_bots.__name__}.{target}"
    elif target.startswith("bots.") and _is_bundled(target.removeprefix("bots.")):
        target = current_path(target)  # the examples' module path before they moved into convoflow
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as error:
        if error.name and target.startswith(error.name):
            raise BotNotFound(f"no bot file or module named {target!r}") from error
        raise BotImportFailed(_where_it_failed(given, error)) from error
    except Exception as error:  # noqa: BLE001 - whatever the bot's module raises while it loads
        raise BotImportFailed(_where_it_failed(given, error)) from error


def _where_it_failed(target: str, error: BaseException) -> str:
    """`cannot load bot X:` and the innermost frame of the bot's own code (a syntax error shows
    its line and caret), then the error: what a traceback would end with, minus importlib."""
    lines = [f"cannot load bot {target}:\n"]
    if not isinstance(error, SyntaxError):
        frames = [frame for frame in traceback.extract_tb(error.__traceback__) if not _is_machinery(frame.filename)]
        if frames:
            lines += traceback.format_list(frames[-1:])
    lines += traceback.format_exception_only(type(error), error)
    return "".join(lines).rstrip("\n")


def _is_machinery(filename: str) -> bool:
    """Frames of the import system and of this loader, which say nothing about the bot."""
    return filename.startswith("<frozen ") or Path(filename).resolve() == Path(__file__).resolve() \
        or Path(filename).parent == Path(importlib.__file__).parent


def _is_bundled(name: str) -> bool:
    return any((Path(folder) / f"{name}.py").is_file() for folder in bundled_bots.__path__)


def _bundled_module(path: Path) -> str | None:
    """The module name of a bundled example given by its file (`bots/guessbot.py` in a checkout),
    so that it is one module whichever way it is named."""
    for folder in bundled_bots.__path__:
        if path.parent == Path(folder).resolve() and path.suffix == ".py":
            return f"{bundled_bots.__name__}.{path.stem}"
    return None


def _module_name(path: Path) -> tuple[Path, str]:
    parts = [path.stem]
    parent = path.parent
    while (parent / "__init__.py").is_file():
        parts.insert(0, parent.name)
        parent = parent.parent
    return parent, ".".join(parts)
