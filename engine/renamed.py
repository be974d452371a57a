"""Module paths recorded before convoflow became one import package, mapped to today's.

Session records name dialogs (`bots.menu:main`, a goto target) and error types
(`engine.replay.StepFailed`) by module path. Those written when the package's folders were
top-level packages of their own still resolve."""

from __future__ import annotations

OLD_PREFIXES = (("bots.", "convoflow.bots."), ("adapters.", "convoflow.adapters."), ("engine.", "convoflow."))
OLD_MODULES = {"convoflow.steps": "convoflow.dialogs", "convoflow.dialogs": "convoflow.runners"}
"""Modules renamed in the move (applied after the prefix, to the module part only)."""


def current_path(path: str) -> str:
    """Today's name of a recorded `module:qualname` or `module.qualname`; unchanged when current."""
    for old, new in OLD_PREFIXES:
        if path.startswith(old):
            path = new + path[len(old):]
            if new == "convoflow.":
                module, sep, rest = _split(path)
                path = OLD_MODULES.get(module, module) + sep + rest
            return path
    return path


def _split(path: str) -> tuple[str, str, str]:
    """`convoflow.steps:x` -> (`convoflow.steps`, `:`, `x`); `convoflow.replay.Err` likewise with `.`."""
    if ":" in path:
        return path.partition(":")
    head, _, tail = path.partition(".")
    module, sep, rest = tail.partition(".")
    return f"{head}.{module}", sep, rest
