"""`convoflow signal`, `convoflow start` and `convoflow broadcast` (convoflow.adapters.host.broadcast):
an outside event, a conversation the bot starts, many of them, from the command line, on the
store the bot serves from. Replies go out through the channel the
session's address names when its credentials are in the environment (as `convoflow run` reads
them); without them they wait in the outbox, and the serving process delivers them."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from convoflow.adapters.channel import Channel, routed
from convoflow.adapters.host.loader import Bot, load_bot
from convoflow.adapters.host.broadcast import broadcast_command
from convoflow.adapters.host.starts import CONCURRENCY, IF_RUNNING, ChannelsFor, Starter, connected, engine_of
from convoflow.messages import SessionKey
from convoflow.stores.base import Store
from convoflow.turn_runner import TurnRunner
from convoflow.types import JSON
from convoflow.wakeups import IfRunning

START_EXIT = {"started": 0, "replaced": 0, "queued": 0, "skipped": 0, "duplicate": 0, "blocked": 1, "failed": 1}
SIGNAL_EXIT = {"delivered": 0, "kept": 0, "duplicate": 0, "unknown": 1, "failed": 1}


def json_option(option: str, text: str | None) -> JSON:
    """The JSON text of `option` (--data, --args); absent: null."""
    if text is None:
        return None
    try:
        data: JSON = json.loads(text, parse_constant=_no_constant)
    except ValueError as error:
        raise ValueError(f"{option} is not JSON: {error}") from None
    return data


def _no_constant(name: str) -> JSON:
    raise ValueError(f"{name} is not JSON")


async def signal_command(key: SessionKey, name: str, data: JSON, event_id: str, bot: Bot, store: Store,
                         channels_for: ChannelsFor, env: Mapping[str, str]) -> int:
    """Deliver the event; prints what happened (`delivered telegram:7:42/checkout`)."""
    if key.app != bot.app:
        raise ValueError(f"{key} is no session of {bot.app} (its sessions end in /{bot.app})")
    engine = engine_of(bot, store)
    runner = TurnRunner(engine)
    wanted = key.partition.partition(":")[0]
    channels = channels_for(runner, [wanted]) if _configured(wanted, env) else []
    async with connected(channels) as ready:
        outcome = await engine.signal(key, name, data, event_id, deliver=routed(ready))
    print(f"{outcome.status} {key}")
    if not channels and outcome.status == "delivered":
        print(f"convoflow: no {wanted} credentials here: the flow's replies wait in the outbox for the serving "
              "process", file=sys.stderr)
    return SIGNAL_EXIT[outcome.status]


async def start_command(to: str, dialog: str | None, args: list[JSON], start_id: str, if_running: IfRunning,
                        bot: Bot, store: Store, channels_for: ChannelsFor) -> int:
    """Start the conversation; prints what happened (`started slack:-:T1:D2/promo`)."""
    engine = engine_of(bot, store)
    channels = channels_for(TurnRunner(engine), [to.partition(":")[0]])
    async with connected(channels) as ready:
        starter = Starter(engine, ready, bot.dialogs)
        started = await starter.start(to, starter.dialog(dialog, args), start_id, if_running)
    print(f"{started.status} {started.key}")
    return START_EXIT[started.status]


def _configured(channel: str, env: Mapping[str, str]) -> bool:
    """Whether the environment holds credentials of `channel` (else nothing is built for it)."""
    prefix = {"telegram": "TELEGRAM_BOT_TOKEN", "slack": ("SLACK_BOT_TOKEN", "SLACK_CLIENT_ID"),
              "web": "CONVOFLOW_WEB_SECRET"}.get(channel)
    if prefix is None:
        return False
    names = (prefix,) if isinstance(prefix, str) else prefix
    return any(env.get(name, "").strip() for name in names)


def add_outside_commands(commands: Any, store: argparse.ArgumentParser) -> None:
    """`signal`, `start` and `broadcast`: events and conversations from outside (see README,
    "Time and events")."""
    signal = commands.add_parser("signal", parents=[store], help="deliver an outside event to one session",
                                 description="Deliver an outside event to one session (once per --id).")
    signal.add_argument("key", help="session key PARTITION/APP (a flow's session_key())")
    signal.add_argument("name", help="the event's name (what the flow's wait_for_event waits for)")
    signal.add_argument("--data", help="the event's data, as JSON (default: null)")
    signal.add_argument("--id", required=True, help="the event's id: an id processed before is not again")
    signal.add_argument("--bot", help="the bot the session runs (default: the key's APP, e.g. a bundled example)")
    bot_help = "the bot, as for `convoflow run` (a bundled example, a bot file or a module)"
    if_running = {"choices": IF_RUNNING, "default": "skip",
                  "help": "when a conversation is running already: skip this start (default), replace the "
                          "running one, or queue this one after it"}
    start = commands.add_parser("start", parents=[store], help="start a conversation with one user",
                                description="Start a conversation the bot opens, at one address.")
    start.add_argument("bot", help=bot_help)
    start.add_argument("--to", required=True, metavar="ADDRESS",
                       help="telegram:<chat id>, slack:<team>:<user id> (their DM) or slack:<team>:<channel id>")
    start.add_argument("--dialog", help="one of the bot module's @dialog functions (default: the bot's own)")
    start.add_argument("--args", metavar="JSON", help="the dialog's arguments, a JSON list")
    start.add_argument("--id", help="the start's id: a start id processed before is not again (default: a new one)")
    start.add_argument("--if-running", **if_running)
    cast = commands.add_parser("broadcast", parents=[store], help="start a dialog for many users, resumably",
                               description="Start a dialog for many users. Killed and run again with the same "
                                           "--id, it messages nobody twice (save a message sent just as it died).")
    cast.add_argument("bot", help=bot_help)
    cast.add_argument("--dialog", required=True, help="one of the bot module's @dialog functions")
    cast.add_argument("--args", metavar="JSON", help="the dialog's arguments, a JSON list")
    whom = cast.add_mutually_exclusive_group(required=True)
    whom.add_argument("--to", metavar="PARTITION_PREFIX",
                      help="the bot's stored sessions in this partition and under it (telegram, slack:-:T0123)")
    whom.add_argument("--file", type=Path, metavar="ADDRESSES", help="a file of addresses, one a line (as --to of start)")
    cast.add_argument("--id", help="the broadcast's id, which makes each start's (default: the dialog's name)")
    cast.add_argument("--if-running", **if_running)
    cast.add_argument("--concurrency", type=_positive, default=CONCURRENCY,
                      help=f"starts under way at once (default {CONCURRENCY}); the channel's own flood limits hold")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return int(text)


async def run_outside_command(args: argparse.Namespace, env: Mapping[str, str], store: Store,
                              builders: Mapping[str, Callable[[TurnRunner, Store, Mapping[str, str]], Channel]]) -> int:
    """The `signal`, `start` or `broadcast` command `args` name, on `store`, with the channels
    `builders` make from the environment."""
    def channels_for(runner: TurnRunner, names: Sequence[str]) -> list[Channel]:
        return [builders[name](runner, store, env) for name in names if name in builders]

    if args.command == "signal":
        key = SessionKey.parse(args.key)
        return await signal_command(key, args.name, json_option("--data", args.data), args.id,
                                    load_bot(args.bot or key.app), store, channels_for, env)
    arguments = json_option("--args", args.args)
    if arguments is None:
        arguments = []
    if not isinstance(arguments, list):
        raise ValueError("--args must be a JSON list")
    bot = load_bot(args.bot)
    if args.command == "start":
        return await start_command(args.to, args.dialog, arguments, args.id or f"cli:{uuid.uuid4().hex}",
                                   args.if_running, bot, store, channels_for)
    return await broadcast_command(bot, store, channels_for, args.dialog, arguments, args.to, args.file,
                                   args.id or args.dialog, args.if_running, args.concurrency)
