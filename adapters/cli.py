"""The `convoflow` command. The one place configuration is read from the environment."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Mapping, Sequence

from engine.messages import SessionKey
from engine.runtime import Engine
from engine.stores import Store, StoreError, open_store

from adapters.console import ConsoleChannel
from adapters.loader import BotNotFound, load_bot
from adapters.session_view import describe, summary_line

DEFAULT_STORE = "sqlite:///convoflow.db"
CHANNELS = ("console",)


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


def store_url(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    return args.store or env.get("CONVOFLOW_STORE") or env.get("MONGODB_URI") or DEFAULT_STORE


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="convoflow", description="Run and inspect convoflow bots.")
    commands = root.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a bot")
    run.add_argument("bot", help="bot file or module, optionally with :dialog (bots/guessbot.py, bots.menu:main)")
    run.add_argument("--channel", choices=CHANNELS, default="console")
    run.add_argument("--store", help=f"store URL (default: $CONVOFLOW_STORE, $MONGODB_URI or {DEFAULT_STORE})")
    run.add_argument("--session", default="local", help="console session name (default: local)")
    run.add_argument("--log-level", default="WARNING", help="logging level (default: WARNING)")

    sessions = commands.add_parser("sessions", help="inspect stored sessions (read-only)")
    sessions.add_argument("--store", help="store URL (as for run)")
    views = sessions.add_subparsers(dest="view", required=True)
    listing = views.add_parser("list", help="list sessions, newest first")
    listing.add_argument("partition", nargs="?", help="only this partition, e.g. telegram:7:42")
    listing.add_argument("--limit", type=int, default=50)
    show = views.add_parser("show", help="show one session: where it waits, its record, its outbox")
    show.add_argument("key", help="session key PARTITION/APP, as printed by `sessions list`")
    return root


async def run_bot(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    bot = load_bot(args.bot)
    store = open_store(store_url(args, env))
    try:
        engine = Engine(bot.dialog, store, bot.fallback, app=bot.app)
        await ConsoleChannel(engine, session=args.session).run()
    finally:
        await store.close()


async def show_sessions(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    store: Store = open_store(store_url(args, env))
    try:
        if args.view == "list":
            found = await store.list_sessions(args.partition, limit=args.limit)
            for session in found:
                print(summary_line(session))
            if not found:
                print("no sessions")
            return 0
        key = SessionKey.parse(args.key)
        found_session = await store.load(key)
        if found_session is None:
            print(f"convoflow: no session {key}", file=sys.stderr)
            return 1
        print(describe(found_session))
        return 0
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    env = os.environ
    try:
        if args.command == "run":
            logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            asyncio.run(run_bot(args, env))
            return 0
        return asyncio.run(show_sessions(args, env))
    except KeyboardInterrupt:
        print()
        return 130
    except (BotNotFound, ConfigError, StoreError, ValueError) as error:
        print(f"convoflow: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
