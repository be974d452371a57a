"""Transcript tests: a conversation written down as plain text, played against the bot.

A transcript is a text file (`*.txt`), one line per thing said or done, in order:

    # a comment (a line starting with #); blank lines are skipped
    you: hi                           the user sends a message (`you: /start` sends a command)
    bot: Which plan would you like?   the bot's next message, exactly
    buttons: Free | Pro | Team        the buttons shown with the message above
    you press: Pro                    the user presses a button, by its label
    you send image: cat.jpg A cat     the user sends an image (or `you send file:`): its source, a caption
    wait 10 minutes                   the clock moves on (seconds, minutes, hours, days; 1h30m works),
                                      and whatever falls due meanwhile fires: its messages follow
    event paid {"order": "A-1"}       an outside event, with its data as JSON (optional)
    done                              the conversation has ended here

A bot message over several lines continues on lines indented by spaces. After each thing the
user does (or the clock, or an event) come exactly the bot's messages of that turn, and `done`
when the turn ended the conversation. Python's `random` is seeded with 0 before a transcript
plays, so a bot's random draws are the same every run. A failure shows the difference as a diff.
"""

from __future__ import annotations

import difflib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convoflow.testing.chat import Chat, ChatError, FlowFailed
from convoflow.testing.lines import DONE, INDENT, event_line, wait_line, you, you_press, you_send

UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
         "d": 86_400, "day": 86_400}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", re.IGNORECASE)
SEED = 0


class TranscriptError(ValueError):
    """A transcript file that cannot be read: the message names the file and line."""


class TranscriptFailed(AssertionError):
    """The bot did not say what the transcript says: the message is the diff."""


@dataclass(frozen=True)
class Action:
    """Something the user does (or the clock, or the outside world), as written on `line`."""

    kind: str
    """`say`, `press`, `media`, `wait` or `event`."""
    args: tuple[Any, ...]
    line: int

    def canonical(self) -> str:
        if self.kind == "say":
            return you(self.args[0])
        if self.kind == "press":
            return you_press(self.args[0])
        if self.kind == "media":
            return you_send(*self.args)
        if self.kind == "wait":
            return wait_line(self.args[0])
        return event_line(*self.args)

    async def play(self, chat: Chat) -> None:
        if self.kind == "say":
            await chat.say(self.args[0])
        elif self.kind == "press":
            await chat.press(self.args[0])
        elif self.kind == "media":
            kind, source, caption = self.args
            await chat.send_media(source, kind, caption)
        elif self.kind == "wait":
            await chat.advance(self.args[0])
        else:
            await chat.signal(*self.args)


@dataclass(frozen=True)
class Transcript:
    """A parsed transcript: `steps` holds, in order, each Action and the lines expected after it."""

    name: str
    steps: tuple[tuple[Action, tuple[str, ...]], ...]

    @classmethod
    def read(cls, path: str | Path) -> Transcript:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise TranscriptError(f"cannot read transcript {path}: {error}") from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, name: str = "<transcript>") -> Transcript:
        steps: list[tuple[Action, list[str]]] = []
        continues = False  # the line before was a bot message, which an indented line continues
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.rstrip()
            if not line or line.startswith("#"):
                continues = False
                continue
            where = f"{name}, line {number}"
            if line[0].isspace():
                if not continues:
                    raise TranscriptError(f"{where}: an indented line continues a `bot:` message, and none is above")
                steps[-1][1].append(INDENT + line.strip())
                continue
            continues = False
            action = _action(line, number, where)
            if action is not None:
                steps.append((action, []))
                continue
            if not steps:
                raise TranscriptError(f"{where}: the transcript must start with something the user does (`you: ...`)")
            if line.startswith("bot:"):
                steps[-1][1].append(f"bot: {line[4:].strip()}".rstrip())
                continues = True
            elif line.startswith("buttons:"):
                labels = [label.strip() for label in line[8:].split("|")]
                steps[-1][1].append("buttons: " + " | ".join(labels))
            elif line == DONE:
                steps[-1][1].append(DONE)
            else:
                raise TranscriptError(f"{where}: cannot read {line!r} (lines start with you:, you press:, "
                                      "you send image:, you send file:, bot:, buttons:, wait, event, done or #)")
        if not steps:
            raise TranscriptError(f"{name}: the transcript is empty")
        return cls(name, tuple((action, tuple(expected)) for action, expected in steps))

    def expected(self) -> list[str]:
        """The whole conversation the transcript expects, one line each, as a Chat writes it."""
        return [line for action, expected in self.steps for line in (action.canonical(), *expected)]


@dataclass(frozen=True)
class TranscriptRun:
    """A transcript played: what it expected and what the conversation was."""

    name: str
    expected: tuple[str, ...]
    actual: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.expected == self.actual

    def diff(self) -> str:
        lines = difflib.unified_diff(self.expected, self.actual, f"{self.name} (expected)", "the bot (actual)",
                                     lineterm="", n=3)
        return "\n".join(lines)

    def check(self) -> None:
        """Raise TranscriptFailed, with the diff, unless it passed."""
        if not self.passed:
            raise TranscriptFailed(f"transcript {self.name} differs from the conversation:\n{self.diff()}")


async def run_transcript(bot: Any, transcript: str | Path | Transcript, store: Any = "memory://",
                         **chat_options: Any) -> TranscriptRun:
    """Play `transcript` (a Transcript, or a file's path) against `bot` (whatever Chat takes) in a
    fresh conversation, and return what it expected and what happened. The run stops at an action
    that cannot be done (a button not shown) or a turn whose flow raised: an `error:` line says so."""
    if not isinstance(transcript, Transcript):
        transcript = Transcript.read(transcript)
    random.seed(SEED)
    async with Chat(bot, store, **chat_options) as chat:
        for action, _ in transcript.steps:
            try:
                await action.play(chat)
            except FlowFailed as failed:
                chat.lines.append(f"error: the flow raised: {_last_line(str(failed))}")
                break
            except ChatError as error:
                chat.lines.append(f"error: {str(error).splitlines()[0]}")
                break
        actual = tuple(chat.lines)
    return TranscriptRun(transcript.name, tuple(transcript.expected()), actual)


def _action(line: str, number: int, where: str) -> Action | None:
    """The action a line writes, or None when it is not one (a line of what the bot says)."""
    if line.startswith("you press:"):
        return Action("press", (line[10:].strip(),), number)
    if line.startswith("you send "):
        kind, colon, rest = line[9:].partition(":")
        source, _, caption = rest.strip().partition(" ")
        if not colon or kind.strip() not in ("image", "file") or not source:
            raise TranscriptError(f"{where}: write `you send image: SOURCE caption` or `you send file: SOURCE caption`")
        return Action("media", (kind.strip(), source, caption.strip()), number)
    if line.startswith("you:"):
        return Action("say", (line[4:].strip(),), number)
    if line == "wait" or line.startswith("wait "):
        return Action("wait", (_seconds(line[4:], where),), number)
    if line.startswith("event "):
        name, _, data = line[6:].strip().partition(" ")
        try:
            value = json.loads(data) if data.strip() else None
        except ValueError as error:
            raise TranscriptError(f"{where}: the data of event {name!r} is not JSON: {error}") from None
        return Action("event", (name, value), number)
    return None


def _seconds(text: str, where: str) -> float:
    total, position = 0.0, 0
    for match in _DURATION.finditer(text):
        name = match[2].lower()
        unit = UNITS.get(name, UNITS.get(name[:-1]) if name.endswith("s") else None)
        if match.start() != position or unit is None:
            break
        total += float(match[1]) * unit
        position = match.end()
    if position != len(text) or position == 0:
        raise TranscriptError(f"{where}: cannot read the time in `wait{text}` (write e.g. `wait 10 minutes`, `wait 1h30m`)")
    return total


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.split("\n\nthe conversation so far")[0].splitlines() if line.strip()]
    return lines[-1] if lines else text
