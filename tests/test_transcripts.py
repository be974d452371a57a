"""Transcript tests: the format, and `convoflow test BOT PATH...` run for real on every example
bot's transcripts, in tests/transcripts/<bot>/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from convoflow.testing import Transcript, TranscriptError, TranscriptFailed, run_transcript

ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPTS = ROOT / "tests" / "transcripts"
BOTS = sorted(path.stem for path in (ROOT / "bots").glob("*.py") if path.stem != "__init__")


def convoflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "convoflow.adapters.host.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def transcripts_of(bot: str) -> list[Path]:
    return sorted((TRANSCRIPTS / bot).glob("*.txt"))


def test_every_example_bot_has_transcripts() -> None:
    assert all(transcripts_of(bot) for bot in BOTS), [bot for bot in BOTS if not transcripts_of(bot)]
    assert sorted(TRANSCRIPTS.rglob("*.txt")) == sorted(p for bot in BOTS for p in transcripts_of(bot))


@pytest.mark.parametrize("bot", BOTS)
def test_convoflow_test_passes_the_transcripts_of_every_example_bot(bot: str) -> None:
    files = transcripts_of(bot)
    ran = convoflow("test", f"bots/{bot}.py", f"tests/transcripts/{bot}/")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert [line.split()[0] for line in ran.stdout.splitlines()[:-1]] == ["PASS"] * len(files)
    assert ran.stdout.splitlines()[-1] == f"{len(files)} passed, 0 failed"


def test_a_folder_of_transcripts_runs_each(tmp_path: Path) -> None:
    for path in transcripts_of("checkout"):
        (tmp_path / "nested").mkdir(exist_ok=True)
        (tmp_path / "nested" / path.name).write_text(path.read_text())
    ran = convoflow("test", "checkout", str(tmp_path))
    assert ran.returncode == 0 and ran.stdout.endswith(f"{len(transcripts_of('checkout'))} passed, 0 failed\n")


def test_a_failing_transcript_shows_a_diff_and_exits_1(tmp_path: Path) -> None:
    changed = (TRANSCRIPTS / "signup" / "signup.txt").read_text().replace("bot: Your email address?", "bot: Your e-mail?")
    (tmp_path / "signup.txt").write_text(changed)
    ran = convoflow("test", "signup", str(tmp_path / "signup.txt"), str(TRANSCRIPTS / "signup" / "declined.txt"))
    assert ran.returncode == 1
    assert f"FAIL {tmp_path / 'signup.txt'}" in ran.stdout
    assert "-bot: Your e-mail?\n+bot: Your email address?\n" in ran.stdout
    assert ran.stdout.splitlines()[-1] == "1 passed, 1 failed"


def test_a_button_not_shown_stops_the_run_with_an_error_line(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("you: hi\nbot: What would you like?\nbuttons: Tell me a fact | Count up | Quit\n"
                                    "you press: Dance\nbot: Never said\n")
    ran = convoflow("test", "menu", str(tmp_path / "t.txt"))
    assert ran.returncode == 1
    assert "+error: cannot press 'Dance': the buttons shown are Tell me a fact | Count up | Quit" in ran.stdout
    assert "-bot: Never said" in ran.stdout


@pytest.mark.parametrize(("text", "problem"), [
    ("bot: hello\n", "line 1: the transcript must start with something the user does"),
    ("you: hi\n   indented\n", "line 2: an indented line continues a `bot:` message"),
    ("you: hi\nthe bot says hi\n", "line 2: cannot read 'the bot says hi'"),
    ("you: hi\nwait a while\n", "line 2: cannot read the time in `wait a while`"),
    ("you: hi\nevent paid {oops}\n", "line 2: the data of event 'paid' is not JSON"),
    ("you: hi\nyou send video: v.mp4\n", "line 2: write `you send image: SOURCE caption`"),
    ("# only a comment\n\n", "the transcript is empty"),
])
def test_a_malformed_transcript_is_refused_naming_its_line(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "bad.txt").write_text(text)
    with pytest.raises(TranscriptError, match="bad.txt"):
        Transcript.read(tmp_path / "bad.txt")
    ran = convoflow("test", "menu", str(tmp_path / "bad.txt"))
    assert ran.returncode == 2 and problem in ran.stderr, ran.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert convoflow("test", "menu", str(tmp_path / "missing.txt")).returncode == 2
    assert convoflow("test", "menu", str(tmp_path)).returncode == 2  # a folder without transcripts
    assert convoflow("test", "nosuchbot", str(TRANSCRIPTS / "menu" / "menu.txt")).returncode == 2
    assert convoflow("test", "menu").returncode == 2


def test_the_format_reads_continuations_durations_events_and_media() -> None:
    transcript = Transcript.parse(
        "# a comment\n"
        "you: hi\n"
        "bot: Coming up:\n"
        "     - in 10 minutes: stretch\n"
        "  - indented less, still the same message\n"
        "buttons:  A |B\n"
        "wait 1h30m\n"
        "wait 2 days\n"
        "wait 1 second\n"
        "event paid {\"order\": \"A-1\"}\n"
        "event ping\n"
        "you send file: report.pdf the Q3 report\n"
        "you press: A\n"
        "done\n"
    )
    assert transcript.expected() == [
        "you: hi", "bot: Coming up:", "     - in 10 minutes: stretch", "     - indented less, still the same message",
        "buttons: A | B", "wait 90 minutes", "wait 2 days", "wait 1 second", 'event paid {"order": "A-1"}',
        "event ping", "you send file: report.pdf the Q3 report", "you press: A", "done",
    ]


async def test_run_transcript_in_a_test_and_its_failure_message() -> None:
    passed = await run_transcript("dragons", TRANSCRIPTS / "dragons" / "dragons.txt")
    passed.check()
    wrong = Transcript.parse("you: hi\nbot: Hello, dragon slayer!\n", "wrong.txt")
    failed = await run_transcript("dragons", wrong)
    with pytest.raises(TranscriptFailed) as raised:
        failed.check()
    assert "-bot: Hello, dragon slayer!\n+bot: Greetings, traveller! What is your name?" in str(raised.value)
