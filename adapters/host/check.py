"""`convoflow check BOT --store URL [--sample N] [--json]`: before a deploy, replay every live
session of the bot (or a random sample) with the code about to ship, read-only (convoflow.checks),
and report per dialog and version how many carry on, restart and fail.

Exit 0 when nothing would break unintentionally (restarts from a bumped version are intended),
1 when any session would restart from a code mismatch or fail, 2 for a usage error. Sessions are
streamed from the store page by page, so any number of them is checked in bounded memory; a
progress line shows on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, TextIO

from convoflow.checks import Checked, check_session
from convoflow.messages import SessionKey
from convoflow.stores.base import Session, Store

from convoflow.adapters.host.loader import Bot

NAMED = 20
"""Sessions named per reason in the report (the count says how many there are)."""
REASONS = 50
"""Distinct reasons kept per dialog and version; any further ones are counted together."""
OTHER = "(other reasons)"


def add_check_command(commands: Any, store: argparse.ArgumentParser) -> None:
    check = commands.add_parser(
        "check", parents=[store], help="replay the live sessions of a bot with its current code, read-only",
        description="Replay every live session of BOT (or a sample) with the current code, without writing "
                    "or running anything new; exit 1 when a session would restart or fail without a version bump.")
    check.add_argument("bot", help="the bot as `convoflow run` takes it (its name is the app id in the store)")
    check.add_argument("--sample", type=_positive, metavar="N", help="check N sessions drawn at random")
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")


@dataclass
class Reason:
    count: int = 0
    sessions: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass
class Group:
    """The sessions of one dialog and version."""

    dialog: str
    version: str
    sessions: int = 0
    unchanged: int = 0
    intended: dict[str, Reason] = field(default_factory=dict)
    mismatched: dict[str, Reason] = field(default_factory=dict)
    failed: dict[str, Reason] = field(default_factory=dict)

    def add(self, checked: Checked) -> None:
        self.sessions += 1
        if checked.verdict == "unchanged":
            self.unchanged += 1
            return
        if checked.verdict == "failed":
            kept, why = self.failed, checked.detail.splitlines()[-1] if checked.detail else "an error"
        else:
            kept, why = (self.intended if checked.verdict == "version" else self.mismatched), checked.detail
        reason = kept.get(why) or kept.setdefault(why if len(kept) < REASONS else OTHER, Reason(detail=checked.detail))
        reason.count += 1
        if len(reason.sessions) < NAMED:
            reason.sessions.append(checked.key)

    @property
    def broken(self) -> int:
        return sum(r.count for r in self.mismatched.values()) + sum(r.count for r in self.failed.values())


@dataclass
class Report:
    bot: str
    groups: dict[tuple[str, str], Group] = field(default_factory=dict)
    sessions: int = 0

    def add(self, checked: Checked) -> None:
        self.sessions += 1
        where = (checked.dialog, checked.version)
        self.groups.setdefault(where, Group(*where)).add(checked)

    @property
    def broken(self) -> int:
        return sum(group.broken for group in self.groups.values())

    def as_json(self) -> dict[str, Any]:
        def reasons(kept: dict[str, Reason], key: str) -> list[dict[str, Any]]:
            return [{key: why, "count": r.count, "sessions": r.sessions, **({"traceback": r.detail} if key == "error" else {})}
                    for why, r in kept.items()]

        return {"bot": self.bot, "sessions": self.sessions, "ok": self.broken == 0, "would_break": self.broken,
                "dialogs": [{"dialog": g.dialog, "version": g.version, "sessions": g.sessions,
                             "unchanged": g.unchanged, "restart_intended": reasons(g.intended, "reason"),
                             "restart_mismatch": reasons(g.mismatched, "reason"),
                             "failed": reasons(g.failed, "error")} for g in self._ordered()]}

    def as_text(self) -> str:
        lines = [f"{self.bot}: {self.sessions} live session{_s(self.sessions)} replayed with the current code"]
        for group in self._ordered():
            lines.append(f"{group.dialog} {group.version}: {group.sessions} session{_s(group.sessions)}")
            lines.append(f"  {group.unchanged} continue unchanged")
            for why, reason in group.intended.items():
                lines.append(f"  {reason.count} restart as intended (a version bump): {why}")
            for why, reason in group.mismatched.items():
                lines.append(f"  {reason.count} would restart: {why}")
                lines += _named(reason)
            for why, reason in group.failed.items():
                lines.append(f"  {reason.count} raise: {why}")
                lines += _named(reason)
                lines += [f"      | {line}" for line in reason.detail.splitlines()]
        if self.broken:
            lines.append(f"FAIL: {self.broken} session{_s(self.broken)} would restart or fail without a version bump "
                         "(bump the version of the dialogs you changed, or keep their recorded steps)")
        else:
            lines.append("OK: no session would restart or fail unintentionally")
        return "\n".join(lines)

    def _ordered(self) -> list[Group]:
        return [self.groups[where] for where in sorted(self.groups)]


async def check_command(args: argparse.Namespace, store: Store, bot: Bot, progress: TextIO = sys.stderr) -> int:
    report = Report(bot.app)
    shown = progress.isatty()
    async for session in _sessions(store, bot.app, args.sample):
        report.add(await check_session(session, bot.dialog, bot.fallback))
        if shown and report.sessions % 100 == 0:
            progress.write(f"\rchecked {report.sessions:,} sessions, {report.broken:,} would break")
            progress.flush()
    if shown:
        progress.write(f"\rchecked {report.sessions:,} sessions, {report.broken:,} would break\n")
    print(json.dumps(report.as_json(), indent=2) if args.json else report.as_text())
    return 1 if report.broken else 0


async def _sessions(store: Store, app: str, sample: int | None) -> AsyncIterator[Session]:
    """The live sessions of `app`, streamed; with `sample`, that many drawn at random (reservoir
    sampling over their keys, then each loaded again)."""
    if sample is None:
        async for session in store.scan(app):
            if session.running:
                yield session
        return
    chosen: list[SessionKey] = []
    seen = 0
    async for session in store.scan(app):
        if not session.running:
            continue
        seen += 1
        if len(chosen) < sample:
            chosen.append(session.key)
        elif (slot := random.randrange(seen)) < sample:
            chosen[slot] = session.key
    for key in sorted(chosen):
        found = await store.load(key)
        if found is not None and found.running:
            yield found


def _named(reason: Reason) -> list[str]:
    more = reason.count - len(reason.sessions)
    return [f"      {key}" for key in reason.sessions] + ([f"      ... and {more} more"] if more > 0 else [])


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of sessions (1 or more)")
    return int(text)


def _s(count: int) -> str:
    return "" if count == 1 else "s"
