"""Chat with a bot in the terminal. Works with piped input too (scripted runs, transcript tests).

A console session is resumable like any other: quit mid-flow (EOF, Ctrl-C) and run again with the
same store and session name to continue where you were. The console is a channel like the others
(convoflow.adapters.channel): its turns go through the shared TurnRunner, one line at a time.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from typing import TextIO

from aiohttp import web

from convoflow.messages import VIA, Incoming, IncomingKind, Media, Message, Reply, SessionKey
from convoflow.turn_runner import TurnRunner
from convoflow.types import JSON

from convoflow.adapters.channel import BadAddress

BOT_PREFIX = "bot> "
USER_PREFIX = "you> "


def render(message: Message) -> str:
    """A message as console text: options become a numbered list the user answers by number."""
    if isinstance(message, Media):
        caption = f" {message.caption}" if message.caption else ""
        return f"{BOT_PREFIX}[{message.kind}: {message.source}]{caption}"
    lines = [BOT_PREFIX + message.text.replace("\n", "\n" + " " * len(BOT_PREFIX))]
    lines += [f"{' ' * len(BOT_PREFIX)}{n}) {option.label}" for n, option in enumerate(message.options, 1)]
    return "\n".join(lines)


def parse_line(key: SessionKey, line: str) -> Incoming:
    text = line.strip()
    kind: IncomingKind = "command" if text.startswith("/") else "text"
    return Incoming(key, f"console:{uuid.uuid4().hex}", kind, text, user=key.partition, address={VIA: ConsoleChannel.name})


class ConsoleChannel:
    name = "console"

    def __init__(self, runner: TurnRunner, session: str = "local", stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout):
        self.runner = runner
        self.key = SessionKey(f"console:{session}", runner.engine.app)
        self.stdin, self.stdout = stdin, stdout
        self.echo = not stdin.isatty()  # piped input is not echoed by a terminal: show it
        self._chat: asyncio.Task[None] | None = None
        self._at_prompt = False

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self) -> None:
        """Greet (start the conversation, or show where it was), then chat on stdin."""
        lines = _read_lines(self.stdin)
        await self._greet()
        self._chat = asyncio.create_task(self._converse(lines), name="console")

    async def connect(self) -> None:
        pass

    async def open(self, to: str) -> tuple[SessionKey, dict[str, JSON]]:
        """`console:<session name>`: that console session (shown when the console runs it)."""
        name, _, session = to.partition(":")
        if name != self.name or not session.strip():
            raise BadAddress(f"{to!r} is not a console address (console:<session name>)")
        return SessionKey(f"console:{session}", self.runner.engine.app), {VIA: self.name}

    async def stop(self) -> None:
        if self._chat is not None and not self._chat.done():
            self._chat.cancel()
        await self.runner.drain()

    async def send(self, reply: Reply) -> None:
        """Print a reply; one that comes while the prompt waits for input (a timer's) is printed
        above a fresh prompt."""
        if self._at_prompt:
            print("\r\x1b[K", end="", file=self.stdout)  # back to the start of the prompt's line, cleared
        print(render(reply.message), file=self.stdout, flush=True)
        if self._at_prompt:
            print(USER_PREFIX, end="", file=self.stdout, flush=True)

    async def run(self) -> None:
        """Chat until end of input."""
        await self.start()
        try:
            assert self._chat is not None
            await self._chat
        finally:
            await self.stop()

    async def _turn(self, line: str) -> None:
        await self.runner.complete(self.runner.turn(parse_line(self.key, line), self.send))

    async def _converse(self, lines: asyncio.Queue[str | None]) -> None:
        while True:
            if not self.echo:
                print(USER_PREFIX, end="", file=self.stdout, flush=True)
                self._at_prompt = True
            line = await lines.get()
            self._at_prompt = False
            if line is None:
                break
            if not line.strip():
                continue
            if self.echo:
                print(USER_PREFIX + line.strip(), file=self.stdout, flush=True)
            await self._turn(line)
        if not self.echo:
            print(file=self.stdout)

    async def _greet(self) -> None:
        conversation = await self.runner.engine.conversation(self.key)
        if conversation is None or not conversation.running:
            await self._turn("/start")
            return
        if conversation.outdated:  # its question went with the old code: nothing left to answer
            print(f"(session {self.key} was left in an older version of this bot: your next message "
                  "starts it over)", file=self.stdout, flush=True)
            return
        print(f"(resuming session {self.key} where you left off)", file=self.stdout, flush=True)
        for reply in conversation.shown:
            print(render(reply.message), file=self.stdout, flush=True)
        await self.runner.engine.resume(self.key, self.send)


def _read_lines(stdin: TextIO) -> asyncio.Queue[str | None]:
    """Lines from stdin, read on a daemon thread so Ctrl-C never waits for Enter."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        try:
            for line in iter(stdin.readline, ""):
                loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except RuntimeError:  # the loop closed first (Ctrl-C): nobody is reading any more
            pass

    threading.Thread(target=pump, name="console-stdin", daemon=True).start()
    return queue
