"""The testing kit's commands: `convoflow test`, `convoflow check` and `convoflow sessions export`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, Callable

from convoflow.stores.base import Store
from convoflow.testing.transcripts import Transcript, TranscriptError, run_transcript

from convoflow.adapters.host.check import add_check_command, check_command
from convoflow.adapters.host.export import export_session
from convoflow.adapters.host.loader import load_bot

KIT_COMMANDS = ("test", "check")


def add_kit_commands(commands: Any, views: Any, store: argparse.ArgumentParser) -> None:
    test = commands.add_parser("test", help="run transcript tests against a bot",
                               description="Play transcript files (a folder: its *.txt files) against BOT; "
                                           "a failure shows a diff. Exit 1 when any fails.")
    test.add_argument("bot", help="the bot as `convoflow run` takes it")
    test.add_argument("paths", nargs="+", metavar="PATH", help="transcript files or folders of them")
    add_check_command(commands, store)
    export = views.add_parser("export", parents=[store], help="write one session as a history (JSON)")
    export.add_argument("key", help="session key PARTITION/APP, as printed by `sessions list`")
    export.add_argument("--bot", help="the bot the history names (default: the key's app)")
    export.add_argument("--output", "-o", metavar="FILE", help="write it to FILE (default: standard output)")


def is_kit_command(args: argparse.Namespace) -> bool:
    return args.command in KIT_COMMANDS or (args.command == "sessions" and args.view == "export")


def run_kit_command(args: argparse.Namespace, open_store: Callable[[], Store]) -> int:
    if args.command == "test":
        return asyncio.run(_test(args.bot, args.paths))
    bot = load_bot(args.bot) if args.command == "check" else None  # a bot that does not load: before the store
    return asyncio.run(_with_store(args, open_store, bot))


async def _with_store(args: argparse.Namespace, open_store: Callable[[], Store], bot: Any) -> int:
    store = open_store()
    try:
        if bot is not None:
            return await check_command(args, store, bot)
        try:
            return await export_session(store, args.key, args.bot, args.output)
        except LookupError as error:
            print(f"convoflow: {error}", file=sys.stderr)
            return 1
    finally:
        await store.close()


async def _test(bot: str, paths: list[str]) -> int:
    load_bot(bot)  # a bot that does not load is one error, not one per transcript
    files = _transcripts(paths)
    failed = 0
    for path in files:
        run = await run_transcript(bot, Transcript.read(path))
        if run.passed:
            print(f"PASS {path}")
        else:
            failed += 1
            print(f"FAIL {path}\n{run.diff()}")
    print(f"{len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _transcripts(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(given.rglob("*.txt"))
            if not found:
                raise TranscriptError(f"no transcripts (*.txt) in {given}")
            files += found
        elif given.is_file():
            files.append(given)
        else:
            raise TranscriptError(f"no transcript file or folder {given}")
    return files
