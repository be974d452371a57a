"""The `convoflow` command as a user runs it: a separate process, piped input, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def convoflow(*args: str, stdin: str = "", cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("CONVOFLOW_STORE", "MONGODB_URI")}
    environment["PYTHONPATH"] = str(ROOT)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "convoflow.adapters.host.cli", *args],
        input=stdin, capture_output=True, text=True, cwd=cwd, env=environment, timeout=60,
    )


def test_run_with_memory_store_and_piped_input() -> None:
    result = convoflow("run", "bots/signup.py", "--store", "memory://", stdin="Ann\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["you> Ann", "bot> Nice to meet you, Ann. How old are you?"]


def test_run_a_module_by_name() -> None:
    result = convoflow("run", "bots.dragons", "--store", "memory://", stdin="Ann\n")
    assert result.returncode == 0, result.stderr
    assert "bot> Ann is a beautiful name!" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "bots/nope.py"], "bot file bots/nope.py does not exist"),
        (["run", "bots.nope"], "no bot file or module named 'bots.nope'"),
        (["run", "bots/guessbot.py:draw"], "has no dialog named 'draw' (dialogs in it: draw_secret, main)"),
        (["run", "convoflow.messages"], "has no dialog named 'main' (it defines no @dialog functions)"),
        (["run", "bots/guessbot.py", "--store", "postgres://x"], "unknown store scheme 'postgres'"),
        (["run", "bots/guessbot.py", "--store", "convoflow.db"], "has no scheme"),
        (["sessions", "--store", "memory://", "show", "no-slash"], "not of the form PARTITION/APP"),
    ],
)
def test_clear_errors(args: list[str], message: str) -> None:
    result = convoflow(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_sessions_on_an_empty_store() -> None:
    listed = convoflow("sessions", "--store", "memory://", "list")
    assert (listed.returncode, listed.stdout) == (0, "no sessions\n")
    shown = convoflow("sessions", "--store", "memory://", "show", "console:local/guessbot")
    assert shown.returncode == 1
    assert "no session console:local/guessbot" in shown.stderr


@pytest.fixture(params=["sqlite", "mongodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A persistent store URL: an SQLite file, or a database on the MongoDB test server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bot.db'}"
    return str(request.getfixturevalue("mongo_uri"))


def test_resume_across_processes_and_inspect_the_sessions(store: str) -> None:
    first = convoflow("run", "bots/signup.py", "--store", store, "--session", "ann", stdin="Ann\n")
    assert first.returncode == 0, first.stderr
    second = convoflow("run", "bots/signup.py", "--store", store, "--session", "ann", stdin="34\n")
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        "(resuming session console:ann/signup where you left off)",
        "bot> Nice to meet you, Ann. How old are you?",
        "you> 34",
        "bot> Your email address?",
    ]
    other = convoflow("run", "bots/guessbot.py", "--store", store, "--session", "bob", stdin="")
    assert other.returncode == 0, other.stderr

    listed = convoflow("sessions", "--store", store, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["console:bob/guessbot", "console:ann/signup"]  # newest first
    assert lines[1].startswith("console:ann/signup  rev 6  waiting for input in main > ask")
    only_ann = convoflow("sessions", "--store", store, "list", "console:ann")
    assert [line.split()[0] for line in only_ann.stdout.splitlines()] == ["console:ann/signup"]

    shown = convoflow("sessions", "--store", store, "show", "console:ann/signup")
    assert shown.returncode == 0, shown.stderr
    for line in [
        "session   console:ann/signup",
        "status    waiting for input in main > ask",
        "    ask: \"Ann\"",
        "    ask: 34",
        "    ask (version 1.0)",
        "      ... waiting for the user's answer",
        "outbox    0 undelivered",
        "  #4 bot> Your email address?",
    ]:
        assert line in shown.stdout.splitlines(), (line, shown.stdout)
    missing = convoflow("sessions", "--store", store, "show", "console:nobody/signup")
    assert missing.returncode == 1 and "no session console:nobody/signup" in missing.stderr


def test_default_store_is_an_sqlite_file_in_the_working_directory(tmp_path: Path) -> None:
    result = convoflow("run", str(ROOT / "bots" / "guessbot.py"), stdin="", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "convoflow.db").is_file()
    again = convoflow("sessions", "list", cwd=tmp_path)
    assert "console:local/guessbot" in again.stdout
