"""Interruptions on the console: `convoflow run` with piped input (resumed by a second run on the
same SQLite file), and a console fed line by line while a timer is pending."""

from __future__ import annotations

import asyncio
import io
import queue
import textwrap
from pathlib import Path

from convoflow import ManualClock
from convoflow.adapters.console.channel import ConsoleChannel
from convoflow.adapters.host.loader import load_bot
from convoflow.scheduler import Scheduler
from convoflow.stores import MemoryStore
from convoflow.turn_runner import TurnRunner
from convoflow.turns import Engine
from tests.test_cli import convoflow

HELP = ("bot> This form signs you up in five questions: name, age, email, plan, and a final check. "
        "Nothing is saved until you confirm. /cancel stops, /start begins again.")


def test_help_mid_form_re_asks_and_an_interruption_asking_a_question_resumes_in_a_new_run(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'console.db'}"
    first = convoflow("run", "bots/signup.py", "--store", store, stdin="Ann\nhelp\n/cancel\n")
    assert first.returncode == 0, first.stderr
    assert first.stdout == textwrap.dedent(f"""\
        bot> Welcome! Let's get you signed up.
        bot> What's your name?
        you> Ann
        bot> Nice to meet you, Ann. How old are you?
        you> help
        {HELP}
        bot> Nice to meet you, Ann. How old are you?
        you> /cancel
        bot> Stop signing up? What you entered is dropped.
             1) Yes, stop
             2) No, go on
        """)
    # another process, the same store: the interruption's own question is still open
    second = convoflow("run", "bots/signup.py", "--store", store, stdin="2\n34\n")
    assert second.returncode == 0, second.stderr
    assert second.stdout.endswith(textwrap.dedent("""\
        you> 2
        bot> Nice to meet you, Ann. How old are you?
        you> 34
        bot> Your email address?
        """)), second.stdout


class Lines(io.TextIOBase):
    """A stdin a test feeds line by line (the console reads it on a thread)."""

    def __init__(self) -> None:
        self.lines: queue.Queue[str] = queue.Queue()

    def readline(self, size: int | None = -1) -> str:
        return self.lines.get()

    def isatty(self) -> bool:
        return False


async def shows(out: io.StringIO, text: str) -> None:
    for _ in range(1000):
        if text in out.getvalue():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{text!r} never shown:\n{out.getvalue()}")


async def test_an_interruption_on_the_console_while_a_timer_is_pending() -> None:
    bot = load_bot("tests/support/interrupt_bot.py")
    clock = ManualClock()
    engine = Engine(bot.dialog, MemoryStore(), app=bot.app, clock=clock, interrupts=bot.interrupts)
    stdin, out = Lines(), io.StringIO()
    console = ConsoleChannel(TurnRunner(engine), stdin=stdin, stdout=out)
    running = asyncio.create_task(console.run())
    try:
        for line, answer in [("Ada", "Favourite colour?"), ("2", "Thinking for a minute..."),
                             ("/feedback", "How many stars?")]:
            stdin.lines.put(line + "\n")
            await shows(out, answer)
        clock.advance(60)
        assert await Scheduler(engine, console.send).fire_due() == 1
        await shows(out, "Done, Ada: blue.")
        stdin.lines.put("3\n")
        await shows(out, "Thanks for 3 stars.")
    finally:
        stdin.lines.put("")
        await asyncio.wait_for(running, 10)
    assert out.getvalue().endswith("you> /feedback\nbot> How many stars?\n     1) 1\n     2) 2\n     3) 3\n"
                                   "bot> Done, Ada: blue.\nyou> 3\nbot> Thanks for 3 stars.\n")
