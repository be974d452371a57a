"""Chat with a bot in the terminal. Works with piped input too (scripted runs, transcript tests).

A console session is resumable like any other: quit mid-flow (EOF, Ctrl-C) and run again with the
same store and session name to continue where you were.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from typing import TextIO

from convoflow.messages import Incoming, IncomingKind, Media, Message, Reply, SessionKey, message_from_dict
from convoflow.runtime import Engine

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
    return Incoming(key, f"console:{uuid.uuid4().hex}", kind, text, user=key.partition)


class ConsoleChannel:
    name = "console"

    def __init__(self, engine: Engine, session: str = "local", stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout):
        self.engine = engine
        self.key = SessionKey(f"console:{session}", engine.app)
        self.stdin, self.stdout = stdin, stdout
        self.echo = not stdin.isatty()  # piped input is not echoed by a terminal: show it

    async def deliver(self, reply: Reply) -> None:
        print(render(reply.message), file=self.stdout, flush=True)

    async def run(self) -> None:
        """Chat until end of input."""
        lines = _read_lines(self.stdin)
        await self._greet()
        while True:
            if not self.echo:
                print(USER_PREFIX, end="", file=self.stdout, flush=True)
            line = await lines.get()
            if line is None:
                break
            if not line.strip():
                continue
            if self.echo:
                print(USER_PREFIX + line.strip(), file=self.stdout, flush=True)
            await self.engine.handle(parse_line(self.key, line), self.deliver)
        if not self.echo:
            print(file=self.stdout)

    async def _greet(self) -> None:
        status = await self.engine.conversation(self.key)
        if status == "none":
            await self.engine.handle(parse_line(self.key, "/start"), self.deliver)
            return
        if status == "outdated":  # its question went with the old code: nothing left to answer
            print(f"(session {self.key} was left in an older version of this bot: your next message "
                  "starts it over)", file=self.stdout, flush=True)
            return
        session = await self.engine.store.load(self.key)
        assert session is not None
        print(f"(resuming session {self.key} where you left off)", file=self.stdout, flush=True)
        pending = {item["seq"] for item in session.outbox}
        for item in session.last:
            if item["seq"] not in pending:
                print(render(message_from_dict(item["message"])), file=self.stdout, flush=True)
        await self.engine.resume(self.key, self.deliver)


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
