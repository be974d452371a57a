"""The `convoflow` command. The one place configuration is read from the environment."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import traceback
from importlib import metadata
from typing import Callable, Mapping, Sequence
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry

from convoflow.messages import SessionKey
from convoflow.turn_runner import TurnRunner
from convoflow.stores import Store, StoreError, open_store

from convoflow.adapters.channel import Channel, StartFailed, routed
from convoflow.adapters.console.channel import ConsoleChannel
from convoflow.adapters.host.loader import Bot, BotNotFound, load_bot
from convoflow.adapters.host.logs import LogFormat, setup_logging
from convoflow.adapters.host.metrics import ChannelDeliveries, MeteredStore, Metrics, Takeovers
from convoflow.adapters.host.api import api_routes
from convoflow.adapters.host.outside import add_outside_commands, run_outside_command
from convoflow.adapters.host.serve import ListenFailed, scheduler_for, serve
from convoflow.adapters.host.starts import Starter
from convoflow.adapters.host.sessions import describe, listing
from convoflow.adapters.host.kit import add_kit_commands, is_kit_command, run_kit_command

DEFAULT_STORE = "sqlite:///convoflow.db"
DEFAULT_PORT = 8080
SECRET_SETTINGS = ("TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET",
                   "SLACK_APP_TOKEN", "SLACK_CLIENT_SECRET", "CONVOFLOW_API_TOKEN", "CONVOFLOW_WEB_SECRET")
"""Settings whose values never appear in logs."""

TELEGRAM_SETTINGS = {"api_url": "TELEGRAM_API_URL", "webhook_url": "TELEGRAM_WEBHOOK_URL"}
"""The setting behind each TelegramChannel argument a start-up failure may name."""

MIN_API_TOKEN = 16

ChannelBuilder = Callable[[TurnRunner, Store, Mapping[str, str]], Channel]
"""Builds a channel from the turn runner (and through it the engine), the opened store (unwrapped,
so a channel may keep its own records in the same database) and the environment."""


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


def telegram_channel(runner: TurnRunner, store: Store, env: Mapping[str, str]) -> Channel:
    """Webhook mode when TELEGRAM_WEBHOOK_URL is set (with TELEGRAM_WEBHOOK_SECRET), else polling."""
    from convoflow.adapters.telegram.channel import SECRET_PATTERN, TOKEN_PATTERN, TelegramChannel, bot_options

    token = env.get("TELEGRAM_BOT_TOKEN", "").strip()
    secret = env.get("TELEGRAM_WEBHOOK_SECRET", "").strip() or None
    url = env.get("TELEGRAM_WEBHOOK_URL", "").strip() or None
    api_url = env.get("TELEGRAM_API_URL", "").strip() or None
    if not token:
        raise ConfigError("TELEGRAM_BOT_TOKEN is not set (the token @BotFather gave your bot)")
    if not TOKEN_PATTERN.fullmatch(token):
        raise ConfigError("TELEGRAM_BOT_TOKEN is malformed (expected <bot id>:<key>, as @BotFather gives it)")
    if url and not secret:
        raise ConfigError("TELEGRAM_WEBHOOK_URL is set but TELEGRAM_WEBHOOK_SECRET is not; a webhook needs a secret")
    if secret and not SECRET_PATTERN.fullmatch(secret):
        raise ConfigError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
    for name, value in (("TELEGRAM_WEBHOOK_URL", url), ("TELEGRAM_API_URL", api_url)):
        if value and not (urlsplit(value).scheme in ("https", "http") and urlsplit(value).hostname):
            raise ConfigError(f"{name}={value!r} is not an http(s) URL")
    return TelegramChannel(runner, token, webhook_secret=secret, webhook_url=url, api_url=api_url,
                           options=bot_options(runner.engine.dialog_factory))


def slack_channel(runner: TurnRunner, store: Store, env: Mapping[str, str]) -> Channel:
    """One workspace with SLACK_BOT_TOKEN, or OAuth installs with SLACK_CLIENT_ID/SECRET (kept in
    the store's database); the Events API over HTTP with SLACK_SIGNING_SECRET, Socket Mode with
    SLACK_APP_TOKEN."""
    from convoflow.adapters.slack.channel import SlackChannel
    from convoflow.adapters.slack.installs import oauth_stores
    from convoflow.adapters.slack.oauth import DEFAULT_SCOPES, SlackOAuth

    bot_token = env.get("SLACK_BOT_TOKEN", "").strip()
    signing_secret = env.get("SLACK_SIGNING_SECRET", "").strip()
    app_token = env.get("SLACK_APP_TOKEN", "").strip()
    api_url = env.get("SLACK_API_URL", "").strip()
    client_id = env.get("SLACK_CLIENT_ID", "").strip()
    client_secret = env.get("SLACK_CLIENT_SECRET", "").strip()
    scopes = tuple(s.strip() for s in env.get("SLACK_SCOPES", "").split(",") if s.strip()) or DEFAULT_SCOPES
    redirect_uri = env.get("SLACK_REDIRECT_URI", "").strip()
    for name, value, prefixes in [("SLACK_BOT_TOKEN", bot_token, ("xoxb-",)), ("SLACK_APP_TOKEN", app_token, ("xapp-",)),
                                  ("SLACK_API_URL", api_url, ("http://", "https://")),
                                  ("SLACK_REDIRECT_URI", redirect_uri, ("http://", "https://"))]:
        if value and not value.startswith(prefixes):
            raise ConfigError(f"{name} must start with {' or '.join(prefixes)}")
    if not signing_secret and not app_token:
        raise ConfigError("SLACK_SIGNING_SECRET is not set (it verifies Slack's requests; "
                          "or set SLACK_APP_TOKEN to use Socket Mode)")
    if bool(client_id) != bool(client_secret):
        raise ConfigError(f"{'SLACK_CLIENT_SECRET' if client_id else 'SLACK_CLIENT_ID'} is not set "
                          "(OAuth installs need SLACK_CLIENT_ID and SLACK_CLIENT_SECRET)")
    if client_id and bot_token:
        raise ConfigError("SLACK_BOT_TOKEN is set together with SLACK_CLIENT_ID: set the bot token for one "
                          "workspace, or the OAuth client for installs, not both")
    if not client_id and not bot_token:
        raise ConfigError("SLACK_BOT_TOKEN is not set (the xoxb-... token of one workspace; "
                          "or set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET for OAuth installs)")
    oauth = None
    if client_id:
        try:
            installs, states = oauth_stores(store, client_id)
        except ValueError as error:
            raise ConfigError(f"SLACK_CLIENT_ID is set: {error}") from None
        oauth = SlackOAuth(client_id, client_secret, installs, states, scopes, redirect_uri or None)
    command = env.get("SLACK_COMMAND", "").strip()
    try:
        return SlackChannel(runner, signing_secret=signing_secret or None, bot_token=bot_token or None,
                            app_token=app_token or None, api_url=api_url or None, oauth=oauth, command=command or None)
    except ValueError as error:  # the one setting the channel checks itself
        raise ConfigError(f"SLACK_COMMAND: {error}") from None


def web_channel(runner: TurnRunner, store: Store, env: Mapping[str, str]) -> Channel:
    """The web chat: visitor tokens signed with CONVOFLOW_WEB_SECRET; CORS and framing for the
    origins in CONVOFLOW_WEB_ORIGINS (comma-separated)."""
    from convoflow.adapters.web.channel import WebChannel, WebOptions

    secret = env.get("CONVOFLOW_WEB_SECRET", "").strip()
    if len(secret) < MIN_API_TOKEN:
        raise ConfigError(f"CONVOFLOW_WEB_SECRET must be at least {MIN_API_TOKEN} characters (it signs visitor "
                          "tokens; e.g. `openssl rand -hex 32`)")
    origins = tuple(o.strip().rstrip("/") for o in env.get("CONVOFLOW_WEB_ORIGINS", "").split(",") if o.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.path or parts.query:
            raise ConfigError(f"CONVOFLOW_WEB_ORIGINS: {origin!r} is not an origin (https://shop.example.com)")
    return WebChannel(runner, store, secret, WebOptions(origins=origins))


SERVER_CHANNELS: dict[str, ChannelBuilder] = {"telegram": telegram_channel, "slack": slack_channel, "web": web_channel}
"""The channels served over HTTP, by name; `--channel all` runs every one of them."""


def api_token(env: Mapping[str, str]) -> str | None:
    """CONVOFLOW_API_TOKEN, the bearer token of `POST /events` and `/conversations` (None: unset,
    so those routes are not served)."""
    token = env.get("CONVOFLOW_API_TOKEN", "").strip()
    if not token:
        return None
    if len(token) < MIN_API_TOKEN or not token.isascii() or not token.isprintable():
        raise ConfigError(f"CONVOFLOW_API_TOKEN must be at least {MIN_API_TOKEN} printable ASCII characters "
                          "(e.g. `openssl rand -hex 32`)")
    return token


def store_url(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str]:
    """The store URL, and the option or variable it came from (for error messages)."""
    given = getattr(args, "store", None)  # only there when given, before or after the command
    if given:
        return given, "--store"
    for name in ("CONVOFLOW_STORE", "MONGODB_URI"):
        if env.get(name, "").strip():
            return env[name].strip(), name
    return DEFAULT_STORE, "the default store"


def configured_store(args: argparse.Namespace, env: Mapping[str, str], read_only: bool = False) -> Store:
    url, source = store_url(args, env)
    try:
        return open_store(url, read_only=read_only)
    except (ValueError, StoreError) as error:
        raise ConfigError(f"{source}: {error}") from None


def parser() -> argparse.ArgumentParser:
    # --store is taken before or after any command (`convoflow sessions list --store URL`).
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", default=argparse.SUPPRESS, metavar="URL",
                       help=f"store URL: memory://, sqlite:///path.db, mongodb://... "
                            f"(default: $CONVOFLOW_STORE, $MONGODB_URI or {DEFAULT_STORE})")
    root = argparse.ArgumentParser(prog="convoflow", description="Run and inspect convoflow bots.", parents=[store])
    root.add_argument("--version", action="version", version=f"%(prog)s {_version()}", help="print the version and exit")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[store], help="run a bot", description="Run a bot on a channel.")
    run.add_argument("bot", help="a bundled example (guessbot), a bot file or a module, optionally with :dialog "
                                 "(bots/guessbot.py, mypackage.mybot:main)")
    run.add_argument("--channel", choices=("console", *SERVER_CHANNELS, "all"), default="console",
                     help="where the bot talks: the console (default), telegram, slack, web, or all of the server "
                          "channels from one process")
    run.add_argument("--session", default="local", help="console session name, to keep several (default: local)")
    run.add_argument("--host", default="0.0.0.0", help="address the HTTP server listens on (default: 0.0.0.0)")
    run.add_argument("--port", type=int, help=f"HTTP port (default: $PORT or {DEFAULT_PORT})")
    run.add_argument("--log-level", help="logging level: debug, info, warning, error "
                                         "(default: warning on the console, info when serving)")
    run.add_argument("--log-format", choices=("text", "json"),
                     help="log lines as text or JSON (default: $CONVOFLOW_LOG_FORMAT or text)")

    sessions = commands.add_parser("sessions", parents=[store], help="inspect stored sessions (read-only)",
                                   description="Inspect stored sessions; never creates or writes a store.")
    views = sessions.add_subparsers(dest="view", required=True, metavar="VIEW")
    list_view = views.add_parser("list", parents=[store], help="list sessions, newest first")
    list_view.add_argument("partition", nargs="?", metavar="PARTITION[/APP]",
                         help="only this partition and those under it (telegram:7:42), or with /APP only that "
                              "bot's sessions there (telegram:7:42/guessbot)")
    list_view.add_argument("--limit", type=_limit, default=50, help="at most this many (default 50; 0: no limit)")
    show = views.add_parser("show", parents=[store], help="show one session: where it waits, its record, its outbox")
    show.add_argument("key", help="session key PARTITION/APP, as printed by `sessions list`")
    add_outside_commands(commands, store)
    add_kit_commands(commands, views, store)
    return root


def _limit(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not 0 (no limit) or a number of sessions")
    return int(text)


def _version() -> str:
    try:
        return metadata.version("convoflow")
    except metadata.PackageNotFoundError:  # run from a checkout without installing
        return "(not installed)"


def port(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.port is not None:
        return int(args.port)
    raw = env.get("PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"PORT={raw!r} is not a port number (1-65535)")
    return int(raw)


def log_format(args: argparse.Namespace, env: Mapping[str, str]) -> LogFormat:
    fmt = args.log_format or env.get("CONVOFLOW_LOG_FORMAT", "text") or "text"
    if fmt == "text":
        return "text"
    if fmt == "json":
        return "json"
    raise ConfigError(f"CONVOFLOW_LOG_FORMAT={fmt!r} must be text or json")


async def run_console(args: argparse.Namespace, env: Mapping[str, str], bot: Bot) -> None:
    store = configured_store(args, env)
    try:
        engine = bot.engine(store)
        console = ConsoleChannel(TurnRunner(engine), session=args.session)
        # the console session's timers fire while it runs (and those due meanwhile, when it resumes)
        timers = asyncio.create_task(scheduler_for(engine, [console], only=console.key).run(), name="timers")
        try:
            await console.run()
        finally:
            timers.cancel()
            await asyncio.gather(timers, return_exceptions=True)
    finally:
        await store.close()


async def run_server(args: argparse.Namespace, env: Mapping[str, str], bot: Bot, stop: asyncio.Event | None = None) -> None:
    """Serve until a signal comes (or `stop` is set)."""
    names = list(SERVER_CHANNELS) if args.channel == "all" else [args.channel]
    listen_port = port(args, env)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    opened = configured_store(args, env)
    store = MeteredStore(opened, metrics)
    try:
        engine = bot.engine(store, on_turn=metrics.on_turn)
        runner = TurnRunner(engine)
        channels = [SERVER_CHANNELS[name](runner, opened, env) for name in names]
        registry.register(ChannelDeliveries(channels))
        registry.register(Takeovers(engine))
        token = api_token(env)
        routes = [] if token is None else api_routes(token, Starter(engine, channels, bot.dialogs), routed(channels))
    except BaseException:
        await store.close()
        raise
    try:
        await serve(channels, store, registry, args.host, listen_port, stop, engine=engine,
                    on_unhandled=metrics.on_unhandled, routes=routes)
    except ListenFailed as error:
        raise ConfigError(f"{error} (the address is --host, the port --port or PORT)") from error
    except StartFailed as error:
        raise ConfigError(f"{error} ({TELEGRAM_SETTINGS.get(error.setting, error.setting)})") from error


async def show_sessions(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    store = configured_store(args, env, read_only=True)
    try:
        if args.view == "list":
            lines = await listing(store, args.partition, args.limit)
            print("\n".join(lines) if lines else "no sessions")
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


async def outside_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """`signal`, `start` or `broadcast`, on the configured store, with the server channels the
    environment configures."""
    store = configured_store(args, env)
    try:
        return await run_outside_command(args, env, store, SERVER_CHANNELS)
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    env = os.environ
    try:
        if args.command == "run":
            bot = load_bot(args.bot)
            secrets = [env[name] for name in SECRET_SETTINGS if env.get(name)]
            if args.channel == "console":
                setup_logging(args.log_level or "WARNING", "text", secrets)
                asyncio.run(run_console(args, env, bot))
            else:
                setup_logging(args.log_level or "INFO", log_format(args, env), secrets)
                asyncio.run(run_server(args, env, bot))
            return 0
        if args.command in ("signal", "start", "broadcast"):
            setup_logging(getattr(args, "log_level", None) or "WARNING", "text",
                          [env[name] for name in SECRET_SETTINGS if env.get(name)])
            return asyncio.run(outside_command(args, env))
        if is_kit_command(args):
            return run_kit_command(args, lambda: configured_store(args, env, read_only=True))
        return asyncio.run(show_sessions(args, env))
    except KeyboardInterrupt:
        print()
        return 130
    except (BotNotFound, ConfigError, StoreError, ValueError, StartFailed) as error:
        if logging.getLogger().isEnabledFor(logging.DEBUG):  # --log-level debug: where it came from
            traceback.print_exception(error)
        print(f"convoflow: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
