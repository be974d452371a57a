"""Many replicas on one MongoDB: three `convoflow run ... --channel all` processes behind a
round-robin proxy, 200 Telegram chats and 50 Slack DMs playing at once, one process SIGKILLed and
another SIGTERMed mid-run, then restarted. Every game completes, every reply arrives, in order, and
once: the one repeat allowed is a reply the SIGKILLed process had sent but not yet recorded as sent
(see `crash_window`). Failures print each game's trace: every message posted, where it went, the
answer, and every reply with the process that sent it."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path


from tests.support.fake_slack import FakeSlack
from tests.support.fake_telegram import FakeTelegram
from tests.support.scale_harness import Platforms, Proxy, Verdict, bot_process, fleet, metric_samples, play, stored_games, total, verdict

TELEGRAM_CHATS = 200
SLACK_DMS = 50
KILL_AT_TURN = 650
TERMINATE_AT_TURN = 850
"""Of about 1,100 messages the users send in all."""
GAMES_SECONDS = 240.0
KILLED = "p0"


def crash_window(found: Verdict) -> bool:
    """Replies of one turn that the SIGKILLed process sent and died before recording as delivered,
    sent once more by a live process: at-least-once delivery's one repeat no platform lets us
    avoid (neither Telegram's sendMessage nor Slack's chat.postMessage is idempotent)."""
    return len(found.repeated_turns) == 1 and all(
        len(origins) == 2 and origins[0] == KILLED and origins[1] != KILLED for _, origins in found.duplicates)


async def test_three_replicas_lose_and_repeat_nothing_through_sigkill_and_sigterm(
    telegram: FakeTelegram, slack: FakeSlack, mongo_uri: str, tmp_path: Path
) -> None:
    slack.latency = 0.05  # Slack answers in tens of milliseconds: a kill may come mid-delivery
    processes = fleet(3, telegram, slack, mongo_uri, tmp_path)
    killed, terminated, survivor = processes
    # Restarted where the killed one ran (as an orchestrator would), under a name of its own.
    replacement = bot_process("p3", telegram, slack, mongo_uri, tmp_path)
    replacement.port = killed.port
    proxy = await Proxy([p.url for p in processes]).start()
    platforms = Platforms(telegram, slack, proxy.url)
    try:
        await asyncio.gather(*(p.start() for p in processes))
        conversations = [platforms.telegram_chat(1000 + n) for n in range(TELEGRAM_CHATS)]
        conversations += [platforms.slack_dm(n) for n in range(SLACK_DMS)]
        games = asyncio.gather(*(play(c, platforms) for c in conversations))

        await asyncio.wait_for(platforms.progress.reached(KILL_AT_TURN), GAMES_SECONDS)
        killed.signal(signal.SIGKILL)
        moments = [f"{time.monotonic():.2f} SIGKILL p0"]
        assert await killed.wait() == -signal.SIGKILL
        restarted = asyncio.create_task(replacement.start())
        await asyncio.wait_for(platforms.progress.reached(TERMINATE_AT_TURN), GAMES_SECONDS)
        terminated.signal(signal.SIGTERM)
        moments.append(f"{time.monotonic():.2f} SIGTERM p1")
        await asyncio.wait_for(games, GAMES_SECONDS)
        await restarted
        moments.append(f"p3 listening at {replacement.url}")

        assert await terminated.wait() == 0, terminated.log()[-3000:]
        await asyncio.sleep(1.0)  # a reply sent twice would have arrived by now
        replacement_metrics = await metric_samples(replacement)
        assert await survivor.stop() == 0, survivor.log()[-3000:]
        assert await replacement.stop() == 0, replacement.log()[-3000:]
    finally:
        for process in (*processes, replacement):
            await process.kill()
        await platforms.close()
        await proxy.close()

    games_stored = await stored_games(mongo_uri)
    problems = [f"{c.key}: {c.problem}; stored: {games_stored.get(c.key, 'nothing')}" for c in conversations if c.problem]
    assert not problems, f"{len(problems)} games went wrong ({moments}):\n" + "\n".join(problems[:20])
    assert all(c.finished for c in conversations)
    assert not platforms.stray

    assert set(games_stored) == {c.key for c in conversations}
    verdicts = [verdict(c, games_stored[c.key]) for c in conversations]
    wrong = [v for v in verdicts if v.lost or v.misordered or v.outbox or not v.finished
             or (v.duplicates and not crash_window(v))]
    traces = {c.key: c.trace for c in conversations}
    assert not wrong, f"{len(wrong)} conversations went wrong ({moments}):\n" + "\n".join(
        f"{v!r}\n  {traces[v.key]}" for v in wrong[:10])
    repeated = [v for v in verdicts if v.duplicates]
    logs = terminated.log() + survivor.log() + replacement.log()
    print(f"\n{len(conversations)} games, {sum(c.turns for c in conversations)} messages, "
          f"{sum(c.redeliveries for c in conversations)} redelivered, {proxy.refused} refused by the proxy; "
          f"{len(repeated)} games got one turn's replies twice, sent first by the SIGKILLed process: "
          f"{sum(len(v.duplicates) for v in repeated)} replies "
          f"({sum(1 for v in repeated if v.key.startswith('slack'))} on Slack); "
          f"waiting replies swept up: {logs.count('re-delivered')} sessions")

    # The kills were felt: updates went to dead replicas and were redelivered.
    assert proxy.refused > 0
    assert sum(c.redeliveries for c in conversations) > 0
    gave_up = [f"{c.key}: {c.trace}" for c in conversations if c.gave_up]
    assert not gave_up, "the platform gave up redelivering:\n" + "\n".join(gave_up[:5])
    # The restarted replica took over games the others had started (replaying them from the store).
    assert total(replacement_metrics, "convoflow_turns_total") > 0
    assert "Traceback" not in logs and "ERROR" not in logs
    assert "shutting down" in terminated.log() and terminated.log().rstrip().endswith("stopped")
