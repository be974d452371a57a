"""A small bot, `quiz`, and the changes a deploy might bring to it, as source files: for running
`convoflow check` (and the kit) against sessions stored by the first version."""

from __future__ import annotations

import sys
import types
from pathlib import Path

from convoflow.adapters.host.loader import Bot

QUIZ = '''
import os
from convoflow import ask, dialog, send_message, wait_for_event, TimedOut

@dialog()
def notify(name):
    # a step with a side effect: `convoflow check` must never run it
    with open(os.environ["QUIZ_MARK"], "a") as mark:
        mark.write(f"notified {name}\\n")
    return True

@dialog(version="1.0")
def main():
    yield send_message("Hello!")
    name = yield ask("Your name?")
    color = yield ask("Favourite colour?", choices=["red", "blue"])
    size = yield ask("Your size?", choices=["S", "M", "L"])
    try:
        yield wait_for_event("paid", timeout=60)
    except TimedOut:
        yield notify(name)
    yield send_message(f"{name}: {color} {size}")
'''

COLOUR = '    color = yield ask("Favourite colour?", choices=["red", "blue"])\n'
SIZE = '    size = yield ask("Your size?", choices=["S", "M", "L"])\n'

VARIANTS = {
    "unchanged": QUIZ,
    # the two questions swapped, the version left as it was: a deploy that must not ship
    "reordered": QUIZ.replace(COLOUR + SIZE, SIZE + COLOUR),
    # the same swap, with the version bumped: the restarts are intended
    "bumped": QUIZ.replace(COLOUR + SIZE, SIZE + COLOUR).replace('version="1.0"', 'version="1.1"'),
    # flow code after the questions that now fails on a recorded answer
    "raising": QUIZ.replace(SIZE, SIZE + "    int(size)\n"),
}

ANSWERS = {"a": [], "b": ["Ada"], "c": ["Bo", "red"], "d": ["Cy", "blue", "M"]}
"""Sessions by user: the answers each gave. a waits at the name, b at the colour, c at the size,
d for the payment (whose 60 seconds ran out long ago by the real clock)."""


def write_quiz(folder: Path, variant: str, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.py"
    path.write_text(VARIANTS[variant])
    return path


def quiz_bot(variant: str) -> Bot:
    """The variant as a loaded bot named `quiz`, in this process (each under a module of its own)."""
    name = f"tests_quiz_{variant}"
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        sys.modules[name] = module
        exec(compile(VARIANTS[variant], f"<quiz {variant}>", "exec"), module.__dict__)
    return Bot(app="quiz", dialog=module.main, fallback=None)
