"""`convoflow signal`, `convoflow start` and `convoflow broadcast` as real processes, on a SQLite
store, against the fake Telegram and Slack (counting what reaches them)."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import signal
import sys
from collections import Counter
from pathlib import Path

from convoflow.adapters.host.loader import load_bot
from convoflow.messages import VIA, Incoming, SessionKey
from convoflow.stores import open_store
from convoflow.turns import Engine
from tests.support.convoflow_process import ROOT, clean_environment, convoflow_command
from tests.support.fake_slack import FakeSlack
from tests.support.fake_telegram import BOT_ID, TOKEN, FakeTelegram

BOT = "tests/support/outreach.py"


def telegram_env(fake: FakeTelegram) -> dict[str, str]:
    return {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": fake.url}


async def waiting_for_payment(store_url: str, chat: int) -> SessionKey:
    """A Telegram session of the outreach bot waiting for `paid` (its greeting not sent anywhere)."""
    bot = load_bot(BOT)
    store = open_store(store_url)
    try:
        key = SessionKey(f"telegram:{BOT_ID}:{chat}", bot.app)
        engine = Engine(bot.dialog, store, app=bot.app)
        await engine.handle(Incoming(key, f"u{chat}", "command", "/start", address={VIA: "telegram", "chat_id": chat}))
        return key
    finally:
        await store.close()


async def test_signal_delivers_an_event_once_per_id_through_the_sessions_channel(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'bot.db'}"
    key = await waiting_for_payment(store_url, 42)
    fake = await FakeTelegram().start()
    try:
        command = ["signal", str(key), "paid", "--data", '{"order": "B2"}', "--id", "pay-b2", "--bot", BOT,
                   "--store", store_url]
        assert await convoflow_command(*command, **telegram_env(fake)) == (0, f"delivered {key}\n", "")
        assert fake.texts(42) == ["Paid order B2."]
        assert await convoflow_command(*command, **telegram_env(fake)) == (0, f"duplicate {key}\n", "")
        assert fake.texts(42) == ["Paid order B2."]
        code, out, err = await convoflow_command("signal", str(key), "paid", "--data", "{oops", "--id", "x",
                                                 "--bot", BOT, "--store", store_url, **telegram_env(fake))
        assert (code, out) == (2, "") and "--data is not JSON" in err
        code, out, err = await convoflow_command("signal", f"telegram:{BOT_ID}:42/guessbot", "paid", "--id", "z",
                                                 "--bot", BOT, "--store", store_url, **telegram_env(fake))
        assert (code, out) == (2, "") and "no session of outreach" in err
        nobody = f"telegram:{BOT_ID}:9/outreach"
        code, out, _ = await convoflow_command("signal", nobody, "paid", "--id", "y", "--bot", BOT,
                                               "--store", store_url, **telegram_env(fake))
        assert (code, out) == (1, f"unknown {nobody}\n")
    finally:
        await fake.close()


async def test_start_opens_a_conversation_on_telegram_and_on_slack(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'bot.db'}"
    telegram, slack = await FakeTelegram().start(), await FakeSlack().start()
    env = {**telegram_env(telegram), "SLACK_BOT_TOKEN": slack.teams[0].bot_token, "SLACK_SIGNING_SECRET": "s",
           "SLACK_API_URL": slack.api_url}
    try:
        start = ["start", BOT, "--dialog", "promo", "--args", '["MAY"]', "--store", store_url]
        session = f"telegram:{BOT_ID}:77/outreach"
        assert await convoflow_command(*start, "--to", "telegram:77", "--id", "may-77", **env) == (
            0, f"started {session}\n", "")
        assert await convoflow_command(*start, "--to", "telegram:77", "--id", "may-77", **env) == (
            0, f"duplicate {session}\n", "")
        assert telegram.texts(77) == ["Spring sale, code MAY. Interested?"]
        assert await convoflow_command(*start, "--to", "slack:T111:U777", **env) == (
            0, "started slack:-:T111:D777/outreach\n", "")
        assert slack.texts(channel="D777") == ["Spring sale, code MAY. Interested?"]
        for wrong, says in [(["--to", "fax:1"], "no address of a channel served here"),
                            (["--to", "telegram:x1"], "not a Telegram address"),
                            (["--to", "slack:T222:U1"], "serves workspace T111, not T222"),
                            (["--to", "telegram:78", "--args", '["A", "B"]'], "args: do not fit promo"),
                            (["--to", "telegram:78", "--dialog", "nope"], "no dialog named 'nope'")]:
            code, out, err = await convoflow_command(*start, *wrong, **env)
            assert (code, out) == (2, ""), (wrong, err)
            assert says in err, (wrong, err)
        assert telegram.texts(78) == []
    finally:
        await telegram.close()
        await slack.close()


async def test_a_broadcast_counts_blocked_users_and_run_again_messages_nobody_twice(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'bot.db'}"
    fake = await FakeTelegram().start()
    fake.fail("sendMessage", 403, chat_id=103, times=None, description="Forbidden: bot was blocked by the user")
    addresses = tmp_path / "addresses.txt"
    addresses.write_text("# spring campaign\n" + "".join(f"telegram:{100 + n}\n" for n in range(6)) + "\ntelegram:101\n")
    try:
        command = ["broadcast", BOT, "--dialog", "promo", "--args", '["JUNE"]', "--file", str(addresses),
                   "--id", "june", "--store", store_url]
        code, out, err = await convoflow_command(*command, **telegram_env(fake))
        assert (code, out) == (0, "broadcast june: 5 started, 0 skipped, 1 blocked, 0 failed\n"), err
        assert "\r" not in err  # no progress bar when stderr is no terminal
        sent = Counter(call.chat_id for call in fake.sent())
        assert sent == {100: 1, 101: 1, 102: 1, 104: 1, 105: 1}
        code, out, _ = await convoflow_command(*command, **telegram_env(fake))
        assert (code, out) == (0, "broadcast june: 0 started, 6 skipped, 0 blocked, 0 failed\n")
        assert Counter(call.chat_id for call in fake.sent()) == sent
        # The same dialog to the bot's stored Telegram sessions, as another broadcast: one each.
        code, out, _ = await convoflow_command("broadcast", BOT, "--dialog", "promo", "--args", '["JULY"]',
                                               "--to", f"telegram:{BOT_ID}", "--id", "july", "--if-running", "replace",
                                               "--store", store_url, **telegram_env(fake))
        assert (code, out) == (0, "broadcast july: 5 started, 0 skipped, 1 blocked, 0 failed\n")
        assert [call.text for call in fake.sent(100)] == ["Spring sale, code JUNE. Interested?",
                                                          "Spring sale, code JULY. Interested?"]
    finally:
        await fake.close()


async def test_a_broadcast_killed_midway_and_run_again_messages_nobody_twice(tmp_path: Path) -> None:
    """SIGKILLed while its message to one user is on its way (sent, not yet marked delivered),
    then run again: everyone gets the message once, save that user, who may get it twice (the
    documented repeat)."""
    store_url = f"sqlite:///{tmp_path / 'bot.db'}"
    fake = await FakeTelegram().start()
    chats = list(range(200, 230))
    held = chats[12]
    fake.hold(held)
    addresses = tmp_path / "addresses.txt"
    addresses.write_text("".join(f"telegram:{chat}\n" for chat in chats))
    command = ["broadcast", BOT, "--dialog", "promo", "--args", '["KILL"]', "--file", str(addresses),
               "--id", "killed", "--concurrency", "1", "--store", store_url]
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "convoflow.adapters.host.cli", *command, cwd=ROOT,
            env=clean_environment(**telegram_env(fake)), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        await fake.wait_for(lambda: any(call.chat_id == held for call in fake.calls), timeout=60)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        fake.release(held)
        before = Counter(call.chat_id for call in fake.sent())
        assert before == {chat: 1 for chat in chats[:13]}, "the process went on past the held send"

        code, out, err = await convoflow_command(*command, **telegram_env(fake))
        assert (code, out) == (0, "broadcast killed: 17 started, 13 skipped, 0 blocked, 0 failed\n"), err
        sent = Counter(call.chat_id for call in fake.sent())
        assert set(sent) == set(chats)
        assert {chat for chat, n in sent.items() if n > 1} <= {held}
        assert [call.text for call in fake.sent(chats[-1])] == ["Spring sale, code KILL. Interested?"]
    finally:
        await fake.close()


async def test_a_broadcast_on_a_terminal_shows_its_progress(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'bot.db'}"
    fake = await FakeTelegram().start()
    addresses = tmp_path / "addresses.txt"
    addresses.write_text("".join(f"telegram:{300 + n}\n" for n in range(3)))
    leader, follower = pty.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "convoflow.adapters.host.cli", "broadcast", BOT, "--dialog", "promo",
            "--args", '["TTY"]', "--file", str(addresses), "--store", store_url, cwd=ROOT,
            env=clean_environment(**telegram_env(fake)), stdout=asyncio.subprocess.PIPE, stderr=follower)
        os.close(follower)
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        shown = b""
        while select.select([leader], [], [], 0.5)[0]:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other end is closed
                break
            if not chunk:
                break
            shown += chunk
        assert process.returncode == 0
        assert out.decode() == "broadcast promo: 3 started, 0 skipped, 0 blocked, 0 failed\n"
        assert b"] 1/3" in shown and b"] 3/3" in shown and b"\r[" in shown, shown
    finally:
        os.close(leader)
        await fake.close()
