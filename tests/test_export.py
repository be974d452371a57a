"""`convoflow sessions export KEY`: a real conversation, stored, written as a history that the
history tests read and `convoflow.testing.replay_history` plays; and the kit's history replay on
every example bot's recorded history."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from convoflow.testing import Chat, HistoryFailed, replay_history
from convoflow.adapters.host.export import history_of
from tests.test_histories import replay_turn

ROOT = Path(__file__).resolve().parents[1]


def convoflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "convoflow.adapters.host.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


@pytest.fixture(params=["sqlite", "mongo"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else request.getfixturevalue("mongo_uri")


async def test_an_exported_session_becomes_a_regression_test(url: str, tmp_path: Path) -> None:
    async with Chat("signup", url, user="ada") as chat:
        await chat.say("hi")
        await chat.say("Ada")
        stored = await chat.store.load(chat.key)
    assert stored is not None
    out = tmp_path / "ada.json"
    exported = convoflow("sessions", "export", "test:ada/signup", "--store", url, "--output", str(out))
    assert exported.returncode == 0, exported.stderr
    history = json.loads(out.read_text())
    assert history["bot"] == "signup" and len(history["turns"]) == 1
    [turn] = history["turns"]
    assert turn["state"] == stored.state and turn["incoming"] == {"exported": "test:ada/signup"}
    assert turn["replies"] == [{"text": "Nice to meet you, Ada. How old are you?"}]
    assert out.read_text().count("\n") == 3  # one turn per line, as the recorded histories
    # without --output it goes to standard output, the same
    assert convoflow("sessions", "export", "test:ada/signup", "--store", url).stdout == out.read_text()

    # the session as it stands resumes; then the turns that should follow, appended, play as written
    assert await replay_history(out) == 0
    history["turns"].append({"incoming": {"text": "36"}, "replies": [{"text": "Your email address?"}]})
    out.write_text(json.dumps(history))
    assert await replay_history(out) == 1
    # the repository's own history test reads it too
    outcome, replies, _ = await replay_turn({**history, "turns": [*history["turns"][:1], {**history["turns"][1], "state": None}]}, 1)
    assert outcome.outcome == "ok" and replies == [{"text": "Your email address?"}]

    history["turns"][1]["replies"] = [{"text": "How old?"}]
    out.write_text(json.dumps(history))
    with pytest.raises(HistoryFailed, match="turn 1: the replies differ"):
        await replay_history(out)


async def test_export_is_read_only_and_refuses_what_is_not_there(url: str, tmp_path: Path) -> None:
    async with Chat("signup", url, user="someone") as chat:
        await chat.say("hi")
    missing = convoflow("sessions", "export", "test:nobody/signup", "--store", url)
    assert missing.returncode == 1 and "no session test:nobody/signup" in missing.stderr
    malformed = convoflow("sessions", "export", "no-app-here", "--store", url)
    assert malformed.returncode == 2 and "PARTITION/APP" in malformed.stderr
    nowhere = convoflow("sessions", "export", "a/b", "--store", f"sqlite:///{tmp_path / 'none.db'}")
    assert nowhere.returncode == 2 and not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("bot", sorted(p.stem for p in (ROOT / "tests" / "histories").glob("*.json")))
async def test_replay_history_plays_every_example_bots_recorded_history(bot: str) -> None:
    path = ROOT / "tests" / "histories" / f"{bot}.json"
    assert await replay_history(path) == len(json.loads(path.read_text())["turns"]) - 1


async def test_replay_history_catches_a_changed_bot(tmp_path: Path) -> None:
    history = json.loads((ROOT / "tests" / "histories" / "signup.json").read_text())
    changed = tmp_path / "signup_swapped.py"  # signup with its first two questions swapped
    source = (ROOT / "bots" / "signup.py").read_text()
    name_q = '    name = yield ask("What\'s your name?", parse=parse_name, retry="Please tell me your name.")\n'
    age_q = ('    age = yield ask(f"Nice to meet you, {name}. How old are you?", parse=parse_age,\n'
             '                    retry="Please send your age as a number between 13 and 120.")\n')
    assert name_q in source and age_q in source
    changed.write_text(source.replace(name_q + age_q, age_q.replace("{name}", "you") + name_q))
    (tmp_path / "h.json").write_text(json.dumps(history))
    with pytest.raises(HistoryFailed, match="turn 1: the replies differ"):
        await replay_history(tmp_path / "h.json", str(changed))
    # a history exported from today's code carries fingerprints: the stored session itself is refused
    async with Chat("signup", user="ada") as chat:
        await chat.say("hi")
        await chat.say("Ada")
        session = await chat.store.load(chat.key)
    assert session is not None
    (tmp_path / "e.json").write_text(json.dumps(history_of(session, "signup")))
    with pytest.raises(HistoryFailed, match="turn 0: the recorded session would not resume"):
        await replay_history(tmp_path / "e.json", str(changed))
