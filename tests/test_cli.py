"""The `convoflow` command as a user runs it: a separate process, piped input, exit codes."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Iterator

import pytest

from convoflow.adapters.host import cli

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


def test_version() -> None:
    result = convoflow("--version")
    assert result.returncode == 0
    assert result.stdout == f"convoflow {metadata.version('convoflow')}\n"


def every_option(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {where}", found) for where, found in every_option(sub))
        else:
            yield (action.dest, action)


def test_every_option_and_argument_says_what_it_is() -> None:
    for where, action in every_option(cli.parser()):
        assert action.help and action.help != argparse.SUPPRESS, where


def test_a_bot_written_with_dialog_without_parentheses_runs(tmp_path: Path) -> None:
    bot = tmp_path / "hello.py"
    bot.write_text("from convoflow import ask, dialog, send_message\n\n"
                   "@dialog\ndef main():\n    name = yield ask('Your name?')\n    yield send_message(f'Hi {name}!')\n")
    result = convoflow("run", str(bot), "--store", "memory://", stdin="Ann\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["bot> Your name?", "you> Ann", "bot> Hi Ann!"]


@pytest.mark.parametrize(("source", "line", "shown", "error"), [
    ("from convoflow import dialog\n\n@dialog\ndef main(:\n    pass\n", 4, "def main(:", "SyntaxError: invalid syntax"),
    ("import json\nimport no_such_library_anywhere\n", 2, "import no_such_library_anywhere",
     "ModuleNotFoundError: No module named 'no_such_library_anywhere'"),
    ("from convoflow import dialog\nLIMIT = int('ten')\n", 2, "LIMIT = int('ten')",
     "ValueError: invalid literal for int() with base 10: 'ten'"),
])
def test_a_bot_that_fails_to_import_is_shown_at_its_own_file_and_line(
    tmp_path: Path, source: str, line: int, shown: str, error: str
) -> None:
    bot = tmp_path / "broken.py"
    bot.write_text(source)
    result = convoflow("run", str(bot), "--store", "memory://")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"convoflow: error: cannot load bot {bot}:"
    assert f'File "{bot}", line {line}' in lines[1]
    assert lines[2].strip() == shown and lines[-1] == error
    assert len(lines) <= 5 and "Traceback" not in result.stderr and "importlib" not in result.stderr


def test_read_only_commands_never_create_a_store(tmp_path: Path) -> None:
    listed = convoflow("sessions", "list", cwd=tmp_path)
    assert listed.returncode == 2
    assert listed.stderr == (f"convoflow: error: the default store: SQLite store {tmp_path / 'convoflow.db'} "
                             "does not exist (nothing has been stored there)\n")
    typo = convoflow("sessions", "show", "console:local/guessbot", "--store", "sqlite:///typo.db", cwd=tmp_path)
    assert typo.returncode == 2
    assert f"--store: SQLite store {tmp_path / 'typo.db'} does not exist" in typo.stderr
    assert list(tmp_path.iterdir()) == []


def test_reading_a_store_leaves_its_files_as_they_were(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'bot.db'}"
    assert convoflow("run", "guessbot", "--store", store, stdin="").returncode == 0
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert list(before) == ["bot.db"]
    listed = convoflow("sessions", "list", "--store", store)
    assert listed.returncode == 0 and "console:local/guessbot" in listed.stdout
    assert convoflow("sessions", "show", "console:local/guessbot", "--store", store).returncode == 0
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_store_is_taken_before_or_after_any_command(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'bot.db'}"
    assert convoflow("--store", store, "run", "guessbot", "--session", "a", stdin="").returncode == 0
    assert convoflow("run", "--store", store, "guessbot", "--session", "b", stdin="").returncode == 0
    assert convoflow("run", "guessbot", "--session", "c", "--store", store, stdin="").returncode == 0
    for args in (["--store", store, "sessions", "list"], ["sessions", "--store", store, "list"],
                 ["sessions", "list", "--store", store], ["sessions", "--store", "memory://", "list", "--store", store]):
        listed = convoflow(*args)
        assert listed.returncode == 0, (args, listed.stderr)
        assert [line.split()[0] for line in listed.stdout.splitlines()] == [
            "console:c/guessbot", "console:b/guessbot", "console:a/guessbot"], args
    shown = convoflow("sessions", "show", "console:a/guessbot", "--store", store)
    assert shown.returncode == 0 and "session   console:a/guessbot" in shown.stdout


def test_listing_by_whole_key_and_limits(store: str) -> None:
    for bot in ("guessbot", "signup"):
        assert convoflow("run", bot, "--store", store, "--session", "ann", stdin="").returncode == 0
    assert convoflow("run", "guessbot", "--store", store, "--session", "ann:2", stdin="").returncode == 0
    assert convoflow("run", "guessbot", "--store", store, "--session", "bob", stdin="").returncode == 0

    def listed(*args: str) -> list[str]:
        result = convoflow("sessions", "list", *args, "--store", store)
        assert result.returncode == 0, result.stderr
        return [line.split()[0] for line in result.stdout.splitlines()]

    assert listed("console:ann/guessbot") == ["console:ann:2/guessbot", "console:ann/guessbot"]
    assert listed("console:ann/signup") == ["console:ann/signup"]
    nothing = convoflow("sessions", "list", "console:ann/menu", "--store", store)
    assert (nothing.returncode, nothing.stdout) == (0, "no sessions\n")
    assert listed("console:ann") == ["console:ann:2/guessbot", "console:ann/signup", "console:ann/guessbot"]
    assert listed("--limit", "0") == ["console:bob/guessbot", "console:ann:2/guessbot", "console:ann/signup",
                                      "console:ann/guessbot"]
    assert listed("--limit", "2") == ["console:bob/guessbot", "console:ann:2/guessbot"]
    assert listed("console:ann/guessbot", "--limit", "1") == ["console:ann:2/guessbot"]
    refused = convoflow("sessions", "list", "--limit", "-1", "--store", store)
    assert refused.returncode == 2 and "--limit: '-1' is not 0 (no limit) or a number of sessions" in refused.stderr


def test_a_resumed_console_session_shows_only_what_can_still_be_answered(tmp_path: Path) -> None:
    """After the bot's version changed, the old question is not shown: it restarts anyway."""
    store = f"sqlite:///{tmp_path / 'bot.db'}"
    bot = tmp_path / "survey.py"
    source = ("from convoflow import ask, dialog, send_message\n\n@dialog(version='{v}')\ndef main():\n"
              "    name = yield ask('Your name?')\n    colour = yield ask('{question}')\n"
              "    yield send_message(f'{{name}} likes {{colour}}')\n")
    bot.write_text(source.format(v="1", question="Favourite colour?"))
    first = convoflow("run", str(bot), "--store", store, stdin="Ann\n")
    assert first.stdout.splitlines() == ["bot> Your name?", "you> Ann", "bot> Favourite colour?"]
    same = convoflow("run", str(bot), "--store", store, stdin="")
    assert same.stdout.splitlines() == ["(resuming session console:local/survey where you left off)",
                                        "bot> Favourite colour?"]
    bot.write_text(source.format(v="2", question="Favourite food?"))
    bumped = convoflow("run", str(bot), "--store", store, stdin="blue\nBob\npasta\n")
    assert bumped.returncode == 0, bumped.stderr
    assert bumped.stdout.splitlines() == [
        "(session console:local/survey was left in an older version of this bot: your next message starts it over)",
        "you> blue", "bot> Your name?", "you> Bob", "bot> Favourite food?", "you> pasta", "bot> Bob likes pasta"]
    assert "Favourite colour?" not in bumped.stdout
