"""`convoflow check`: live sessions stored by one version of a bot, replayed read-only with the
next, on every store. The SQLite and MongoDB cases run the real command in its own process."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convoflow.checks import check_session
from convoflow.stores import MemoryStore, Store, open_store
from convoflow.testing import Chat, Transcript
from convoflow.adapters.host.check import Report, check_command
from convoflow.adapters.host.loader import load_bot
from tests.support.quiz_variants import ANSWERS, quiz_bot, write_quiz

BROKEN = ["test:b/{app}", "test:c/{app}", "test:d/{app}"]


async def fill(store: Store, bot: object) -> None:
    """One session per user in ANSWERS, stored by the first version; and one that has ended."""
    for user, answers in ANSWERS.items():
        async with Chat(bot, store, user=user) as chat:
            await chat.say("hi")
            for answer in answers:
                await chat.say(answer)
    async with Chat(bot, store, user="ended") as chat:
        await chat.say("hi")
        await chat.say("/cancel")


def check(bot: Path, url: str, *options: str, mark: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "convoflow.adapters.host.cli", "check", str(bot), "--store", url,
                           *options], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "QUIZ_MARK": str(mark)})


@pytest.fixture(params=["sqlite", "mongo"])
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """A store URL of the kind asked for, and the bot's name (its app id) for it."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sessions.db'}", "quiz_sqlite"
    return request.getfixturevalue("mongo_uri"), "quiz_mongo"


async def test_check_on_a_stored_bot_tells_safe_deploys_from_breaking_ones(stored: tuple[str, str], tmp_path: Path) -> None:
    url, app = stored
    mark = tmp_path / "notified.txt"
    os.environ["QUIZ_MARK"] = str(mark)
    store = open_store(url)
    try:
        await fill(store, str(write_quiz(tmp_path / "v1", "unchanged", app)))
    finally:
        await store.close()
    before = sorted(mark.read_text().splitlines()) if mark.exists() else []

    unchanged = check(tmp_path / "v1" / f"{app}.py", url, mark=mark)
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    assert unchanged.stdout.startswith(f"{app}: 4 live sessions replayed with the current code\n")
    assert "main 1.0: 4 sessions\n  4 continue unchanged" in unchanged.stdout

    reordered = check(write_quiz(tmp_path / "v2", "reordered", app), url, mark=mark)
    assert reordered.returncode == 1, reordered.stdout + reordered.stderr
    assert "  1 continue unchanged" in reordered.stdout
    for key in BROKEN:
        assert f"      {key.format(app=app)}\n" in reordered.stdout
    assert "would restart: code mismatch in main at step 1" in reordered.stdout
    assert "FAIL: 3 sessions would restart or fail without a version bump" in reordered.stdout

    bumped = check(write_quiz(tmp_path / "v3", "bumped", app), url, "--json", mark=mark)
    assert bumped.returncode == 0, bumped.stdout + bumped.stderr
    report = json.loads(bumped.stdout)
    assert report["ok"] is True and report["sessions"] == 4
    [group] = report["dialogs"]
    assert (group["dialog"], group["version"], group["unchanged"]) == ("main", "1.0", 0)
    [intended] = group["restart_intended"]
    assert intended["count"] == 4 and "recorded 'main 1.0', code has 'main 1.1'" in intended["reason"]
    assert sorted(intended["sessions"]) == sorted(f"test:{user}/{app}" for user in ANSWERS)
    assert group["restart_mismatch"] == [] and group["failed"] == []

    # Session d waits for a payment whose 60 seconds ran out long ago: a replay that went on would
    # time it out and run its `notify` step. The check stops at the wait, so nothing ran.
    assert (sorted(mark.read_text().splitlines()) if mark.exists() else []) == before == []
    # and nothing was written: the store holds what it held
    store = open_store(url, read_only=True)
    try:
        revisions = {str(s.key): s.revision async for s in store.scan(app)}
    finally:
        await store.close()
    assert len(revisions) == 5


async def test_check_a_sample_and_usage_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    store = open_store(url)
    try:
        await fill(store, str(write_quiz(tmp_path / "v1", "unchanged", "quiz_sample")))
    finally:
        await store.close()
    sampled = check(write_quiz(tmp_path / "v2", "reordered", "quiz_sample"), url, "--sample", "2", "--json",
                    mark=tmp_path / "mark")
    assert json.loads(sampled.stdout)["sessions"] == 2
    for options in (["--sample", "0"], ["--sample", "many"]):
        refused = check(tmp_path / "v1" / "quiz_sample.py", url, *options, mark=tmp_path / "mark")
        assert refused.returncode == 2 and "--sample" in refused.stderr
    missing = check(tmp_path / "nowhere.py", url, mark=tmp_path / "mark")
    assert missing.returncode == 2 and "nowhere.py" in missing.stderr
    absent = check(tmp_path / "v1" / "quiz_sample.py", f"sqlite:///{tmp_path / 'none.db'}", mark=tmp_path / "mark")
    assert absent.returncode == 2 and "does not exist" in absent.stderr
    assert not (tmp_path / "none.db").exists()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def run_check(store: Store, variant: str, progress: io.StringIO | None = None) -> tuple[int, str]:
    out = io.StringIO()
    args = argparse.Namespace(sample=None, json=False)
    stdout, sys.stdout = sys.stdout, out
    try:
        code = await check_command(args, store, quiz_bot(variant), progress=progress or io.StringIO())
    finally:
        sys.stdout = stdout
    return code, out.getvalue()


async def test_check_on_the_memory_store(tmp_path: Path) -> None:
    # The memory store lives in one process, so the command's own function runs here.
    os.environ["QUIZ_MARK"] = str(tmp_path / "notified.txt")
    store = MemoryStore()
    await fill(store, quiz_bot("unchanged"))
    code, text = await run_check(store, "unchanged")
    assert code == 0 and "4 continue unchanged" in text
    terminal, piped = Terminal(), io.StringIO()
    code, text = await run_check(store, "reordered", terminal)
    assert code == 1 and all(f"      {key.format(app='quiz')}\n" in text for key in BROKEN)
    assert terminal.getvalue() == "\rchecked 4 sessions, 3 would break\n"  # progress only on a terminal
    await run_check(store, "reordered", piped)
    assert piped.getvalue() == ""
    code, text = await run_check(store, "bumped")
    assert code == 0 and "4 restart as intended (a version bump)" in text
    code, text = await run_check(store, "raising")
    assert code == 1
    assert "  3 continue unchanged\n  1 raise: ValueError: invalid literal for int() with base 10: 'M'\n" \
           "      test:d/quiz\n      | Traceback" in text
    assert not (tmp_path / "notified.txt").exists()


@pytest.mark.parametrize("bot", sorted(p.name for p in (Path(__file__).parent / "transcripts").iterdir()))
async def test_every_example_bot_checks_unchanged_at_every_point_of_its_transcripts(bot: str) -> None:
    # Sessions left at each step of each transcript, checked against the same code: all carry on.
    store = MemoryStore()
    live = 0
    for path in sorted((Path(__file__).parent / "transcripts" / bot).glob("*.txt")):
        steps = Transcript.read(path).steps
        for upto in range(1, len(steps) + 1):
            async with Chat(f"bots/{bot}.py", store, user=f"{path.stem}-{upto}") as chat:
                for action, _ in steps[:upto]:
                    await action.play(chat)
                live += not chat.done
    loaded = load_bot(f"bots/{bot}.py")
    report = Report(loaded.app)
    async for session in store.scan(loaded.app):
        if session.running:
            report.add(await check_session(session, loaded.dialog, loaded.fallback))
    assert report.sessions == live > 0
    assert [(g.sessions, g.unchanged, g.broken) for g in report.groups.values()] == [
        (g.sessions, g.sessions, 0) for g in report.groups.values()]
