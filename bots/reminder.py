"""Reminders: "remind me in 10 minutes to stretch", as many at once as you like.

    convoflow run bots/reminder.py

The conversation waits for the first of your next message and the soonest reminder's time
(`wait_first`), and starts over with the updated list each time (`goto`), so its record stays
small however long it runs. Each reminder's time is stored as an absolute time in the session:
the bot may restart, or run on several servers, and every reminder still goes out once.
"""

from __future__ import annotations

import re

from convoflow import dialog, goto, now, send_message, wait_first

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}
REQUEST = re.compile(
    r"\s*(?:remind me\s+)?in\s+(\d{1,6})\s*(second|sec|s|minute|min|m|hour|h|day|d)s?\s+(?:to\s+)?(.+)",
    re.IGNORECASE | re.DOTALL,
)
SHORT = {"sec": "second", "s": "second", "min": "minute", "m": "minute", "h": "hour", "d": "day"}
HELP = ("Tell me what to remind you of, like \"remind me in 10 minutes to stretch\" "
        "(seconds, minutes, hours or days). Send \"list\" to see what is coming, /cancel to drop them all.")

Pending = tuple[tuple[float, str], ...]
"""The reminders to come: (Unix time, what), soonest first."""


def parse_request(text: str) -> tuple[float, str] | None:
    """("in 10 minutes to stretch" ->) (600.0, "stretch"), or None when it is not a request."""
    match = REQUEST.fullmatch(text)
    if match is None:
        return None
    count, unit, what = match.groups()
    unit = SHORT.get(unit.lower(), unit.lower())
    return int(count) * UNITS[unit], what.strip().rstrip(".")


def when(seconds: float) -> str:
    for unit in ("day", "hour", "minute"):
        if seconds >= UNITS[unit] and seconds % UNITS[unit] == 0:
            count = int(seconds // UNITS[unit])
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


@dialog(version="1.0")
def main():
    yield send_message("Hi! I keep reminders for you. " + HELP)
    yield goto(reminders(()))


@dialog(version="1.0")
def reminders(pending: Pending):
    started = (yield now()).timestamp()
    if pending:
        woke = yield wait_first(answer=True, timeout=max(0.0, pending[0][0] - started))
    else:
        woke = yield wait_first(answer=True)
    if woke.kind == "timeout":
        yield send_message(f"⏰ Reminder: {pending[0][1]}")
        yield goto(reminders(pending[1:]))
    said = woke.value if isinstance(woke.value, str) else ""
    asked_at = (yield now()).timestamp()
    request = parse_request(said)
    if request is not None:
        seconds, what = request
        pending = tuple(sorted((*pending, (asked_at + seconds, what))))
        yield send_message(f"Okay, in {when(seconds)} I'll remind you to {what}.")
    elif said.strip().lower() == "list":
        if pending:
            lines = [f"- in {when(round(at - asked_at))}: {what}" for at, what in pending]
            yield send_message("Coming up:\n" + "\n".join(lines))
        else:
            yield send_message("Nothing to remind you of yet.")
    else:
        yield send_message(HELP)
    yield goto(reminders(pending))
