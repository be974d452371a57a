"""Timers, outside events and proactive starts through the Engine, on every store, with a manual
clock: a day passes in milliseconds. Each test also runs with no suspended plays kept (max_live=0),
so every turn replays the stored record, with the same results."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from convoflow import ManualClock, TimedOut, ask, dialog, get_client_response, send_message, session_key, sleep
from convoflow.adapters.host.loader import load_bot
from convoflow.turns import Engine
from convoflow.stores import Store
from convoflow.wakeups import REMEMBER_IDS_SECONDS

from tests.support.store_backends import each_store, warm_and_replayed  # noqa: F401 (fixtures: store, max_live)
from tests.support.timer_harness import TimerHarness


def harness(dialog_factory: Any, store: Store, max_live: int, **options: Any) -> TimerHarness:
    clock = ManualClock()
    return TimerHarness(Engine(dialog_factory, store, max_live=max_live, clock=clock, **options), clock)


async def test_a_reminder_a_day_away_goes_out_once_when_the_day_has_passed(store: Store, max_live: int) -> None:
    bot = load_bot("reminder")
    h = harness(bot.dialog, store, max_live, app=bot.app)
    await h.say("hi")
    assert await h.say("remind me in 24 hours to water the plants") == ["Okay, in 1 day I'll remind you to water the plants."]
    assert await h.say("in 10 minutes to stretch") == ["Okay, in 10 minutes I'll remind you to stretch."]
    session = await store.load(h.key())
    assert session is not None and session.due == h.clock.now() + 600
    assert await h.advance(599) == []
    assert await h.advance(1) == ["⏰ Reminder: stretch"]
    assert await h.advance(timedelta(hours=23, minutes=49, seconds=59).total_seconds()) == []
    assert await h.advance(1) == ["⏰ Reminder: water the plants"]
    assert await h.advance(86_400 * 7) == []
    session = await store.load(h.key())
    assert session is not None and session.due is None


@dialog()
def timed_question() -> Any:
    name = yield ask("Your name?", timeout=300, remind_after=120, reminder="Still there?")
    yield send_message(f"Hi {name}")


async def test_an_unanswered_question_reminds_then_ends_the_conversation(store: Store, max_live: int) -> None:
    h = harness(timed_question, store, max_live)
    assert await h.say("hello") == ["Your name?"]
    assert await h.advance(120) == ["Still there?"]
    assert await h.advance(120) == ["Still there?"]
    assert await h.advance(60) == []
    assert h.outcomes[-1].outcome == "timed_out"
    session = await store.load(h.key())
    assert session is not None and session.state is not None and "result" in session.state and session.due is None
    assert await h.say("Ada") == ["Your name?"]  # the next message starts afresh


async def test_an_answer_before_the_timer_leaves_nothing_to_fire(store: Store, max_live: int) -> None:
    h = harness(timed_question, store, max_live)
    await h.say("hello")
    session = await store.load(h.key())
    assert session is not None and session.due is not None
    due = session.due
    assert await h.say("Ada") == ["Hi Ada"]
    assert await h.engine.fire(h.key(), due, h.deliver) is False  # a firing that lost the race
    assert h.outcomes[-1].outcome == "stale"
    assert await h.advance(3600) == []


async def test_a_timer_fires_once_however_often_it_is_fired(store: Store, max_live: int) -> None:
    h = harness(timed_question, store, max_live)
    await h.say("hello")
    h.clock.advance(120)
    session = await store.load(h.key())
    assert session is not None and session.due is not None
    assert await h.engine.fire(h.key(), session.due, h.deliver) is True
    assert await h.engine.fire(h.key(), session.due, h.deliver) is False
    assert h.texts() == ["Your name?", "Still there?"]


@dialog()
def napping() -> Any:
    yield send_message("Napping for an hour.")
    yield sleep(3600)
    first = yield get_client_response()
    second = yield get_client_response()
    yield send_message(f"Awake: {first}, {second}")


async def test_what_the_user_says_during_a_sleep_is_kept_for_the_waits_after_it(store: Store, max_live: int) -> None:
    h = harness(napping, store, max_live)
    await h.say("hi")
    assert await h.say("one") == []
    assert await h.say("two") == []
    session = await store.load(h.key())
    assert session is not None and [item["value"] for item in session.inbox] == ["one", "two"]
    assert await h.advance(3600) == ["Awake: one, two"]
    session = await store.load(h.key())
    assert session is not None and session.inbox == ()


async def test_cancel_and_start_act_at_once_during_a_sleep(store: Store, max_live: int) -> None:
    h = harness(napping, store, max_live)
    await h.say("hi")
    await h.say("kept")
    assert await h.say("/start") == ["Napping for an hour."]
    session = await store.load(h.key())
    assert session is not None and session.inbox == ()  # what was sent for the old run is dropped
    assert await h.say("/cancel") == ["Okay, stopped. Send /start to begin again."]
    session = await store.load(h.key())
    assert session is not None and session.state is None and session.due is None
    assert await h.advance(7200) == []


@dialog()
def payment() -> Any:
    key = yield session_key()
    yield send_message(f"Pay for {key}")
    from convoflow import wait_for_event

    try:
        paid = yield wait_for_event("paid", timeout=900)
    except TimedOut:
        yield send_message("Too late.")
        return
    yield send_message(f"Paid {paid['amount']}")
    yield get_client_response()


async def test_an_event_reaches_the_flow_waiting_for_it_once(store: Store, max_live: int) -> None:
    h = harness(payment, store, max_live)
    assert await h.say("buy") == [f"Pay for {h.key()}"]
    outcome = await h.engine.signal(h.key(), "paid", {"amount": 12}, "pay-1", deliver=h.deliver)
    assert outcome.status == "delivered" and [r.message.text for r in outcome.replies] == ["Paid 12"]  # type: ignore[union-attr]
    for n in range(40):  # more updates than the seen ids keep
        await h.say(f"chat {n}")
    again = await h.engine.signal(h.key(), "paid", {"amount": 12}, "pay-1", deliver=h.deliver)
    assert again.status == "duplicate" and h.texts().count("Paid 12") == 1
    h.clock.advance(REMEMBER_IDS_SECONDS - 1)
    assert (await h.engine.signal(h.key(), "paid", {}, "pay-1", deliver=h.deliver)).status == "duplicate"


async def test_an_event_before_its_wait_is_kept_and_one_for_nobody_changes_nothing(store: Store, max_live: int) -> None:
    h = harness(payment, store, max_live)
    assert (await h.engine.signal(h.key(), "paid", {}, "early")).status == "unknown"
    assert await store.load(h.key()) is None  # no session was made for it
    await h.say("/cancel")  # a session with no conversation running
    assert (await h.engine.signal(h.key(), "paid", {"amount": 5}, "p1")).status == "kept"
    assert await h.say("buy") == [f"Pay for {h.key()}", "Paid 5"]
    assert (await h.engine.signal(h.key(), "refund", {}, "r1")).status == "kept"
    session = await store.load(h.key())
    assert session is not None and [item["name"] for item in session.events] == ["refund"]


async def test_an_event_that_does_not_come_times_out(store: Store, max_live: int) -> None:
    h = harness(payment, store, max_live)
    await h.say("buy")
    assert await h.advance(900) == ["Too late."]


@dialog()
def promo(season: str) -> Any:
    yield send_message(f"Our {season} sale starts today!")
    answer = yield ask("Interested?", choices=["yes", "no"])
    yield send_message(f"Noted: {answer}")


async def test_proactive_starts_skip_replace_or_queue_behind_a_running_conversation(store: Store, max_live: int) -> None:
    h = harness(timed_question, store, max_live)
    address = {"user": "ada"}
    started = await h.engine.start(h.key(), promo("spring"), address, "c1", deliver=h.deliver)
    assert started.status == "started" and h.texts() == ["Our spring sale starts today!", "Interested?"]
    assert (await h.engine.start(h.key(), promo("spring"), address, "c1", deliver=h.deliver)).status == "duplicate"
    assert (await h.engine.start(h.key(), promo("summer"), address, "c2", deliver=h.deliver)).status == "skipped"
    queued = await h.engine.start(h.key(), promo("autumn"), {"user": "ada", "thread": "new"}, "c3", "queue",
                                  deliver=h.deliver)
    assert queued.status == "queued" and queued.replies == ()
    session = await store.load(h.key())
    assert session is not None and session.address == address  # the running one still answers there
    assert await h.press("yes") == ["Noted: yes", "Our autumn sale starts today!", "Interested?"]
    replaced = await h.engine.start(h.key(), None, address, "c4", "replace", deliver=h.deliver)
    assert replaced.status == "replaced" and [r.message.text for r in replaced.replies] == ["Your name?"]  # type: ignore[union-attr]
    assert await h.say("Ada") == ["Hi Ada"]


@dialog()
def expired() -> Any:
    yield send_message("This conversation has expired.")


async def test_an_idle_conversation_ends_and_the_next_message_starts_afresh(store: Store, max_live: int) -> None:
    bot = load_bot("checkout")
    h = harness(bot.dialog, store, max_live, app=bot.app, idle_timeout=bot.idle_timeout, on_idle=bot.on_idle)
    await h.say("hi")
    assert await h.advance(3599) == []
    assert await h.advance(1) == ["This checkout has expired. Send /start to begin again."]
    assert h.outcomes[-1].outcome == "idle"
    session = await store.load(h.key())
    assert session is not None and session.state is None and session.due is None
    assert await h.say("hi again") == ["What would you like to buy?"]


async def test_the_idle_timeout_runs_from_the_latest_wait_for_the_user(store: Store, max_live: int) -> None:
    h = harness(napping, store, max_live, idle_timeout=600, on_idle=expired)
    await h.say("hi")
    assert await h.advance(3600) == []  # a sleep is not idleness
    assert await h.advance(599) == []
    assert await h.say("one") == []
    assert await h.advance(599) == []
    assert await h.advance(1) == ["This conversation has expired."]


async def test_a_checkout_is_paid_cancelled_or_expires(store: Store, max_live: int) -> None:
    bot = load_bot("checkout")
    h = harness(bot.dialog, store, max_live, app=bot.app, idle_timeout=bot.idle_timeout, on_idle=bot.on_idle)
    await h.say("hi", user="payer")
    link = (await h.press("beans", user="payer"))[0]
    assert f"session={quote(str(h.key('payer')), safe='')}&" in link
    assert await h.say("hello?", user="payer") == ["Still waiting for your payment. Type \"cancel\" to stop."]
    outcome = await h.engine.signal(h.key("payer"), "paid", {"order": "A-1"}, "pay-7", deliver=h.deliver)
    assert outcome.status == "delivered" and h.texts("payer")[-1] == "Payment received, thank you! Order A-1 is on its way."
    await h.say("hi", user="quitter")
    await h.press("mug", user="quitter")
    assert await h.say("cancel", user="quitter") == ["Cancelled; nothing was charged."]
    await h.say("hi", user="slow")
    await h.press("mug", user="slow")
    await h.advance(600)
    await h.say("thinking", user="slow")  # the 15 minutes do not start again
    assert await h.advance(300) == ["The payment link has expired; nothing was charged. Send /start to try again."]


@dialog(version="1.0", name="napper")
def napper_v1() -> Any:
    yield send_message("sleeping")
    yield sleep(60)
    yield send_message("v1 awake")


@dialog(version="2.0", name="napper")
def napper_v2() -> Any:
    yield send_message("v2 here")
    yield get_client_response()


@dialog()
def apologise() -> Any:
    yield send_message("We changed things; starting over.")


async def test_a_session_waiting_on_a_timer_follows_the_version_and_fallback_rules(store: Store, max_live: int) -> None:
    before = harness(napper_v1, store, max_live)
    await before.say("hi")
    deployed = harness(napper_v2, store, max_live, fallback=apologise)  # a deploy while it sleeps
    deployed.clock.set(before.clock.now())
    assert await deployed.advance(60) == ["We changed things; starting over.", "v2 here"]
    assert deployed.outcomes[-1].outcome == "restarted"
    session = await store.load(before.key())
    assert session is not None and session.due is None


async def test_malformed_signals_and_starts_are_refused_and_store_nothing(store: Store) -> None:
    from datetime import datetime

    from convoflow import UnstorableValue

    h = harness(payment, store, 10_000)
    await h.say("buy")
    before = await store.load(h.key())
    with pytest.raises(UnstorableValue, match="JSON"):
        await h.engine.signal(h.key(), "paid", {"at": datetime.now()}, "x1")
    with pytest.raises(ValueError, match="event name"):
        await h.engine.signal(h.key(), "", {}, "x2")
    with pytest.raises(ValueError, match="event_id"):
        await h.engine.signal(h.key(), "paid", {}, "")
    with pytest.raises(ValueError, match="if_running"):
        await h.engine.start(h.key(), None, {}, "s1", "later")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="@dialog call"):
        await h.engine.start(h.key(), send_message("hi"), {}, "s2")
    assert await store.load(h.key()) == before


async def test_a_scheduler_fires_only_the_sessions_it_wants_however_many_others_are_due(store: Store) -> None:
    h = harness(napping, store, 10_000)
    for n in range(12):
        await h.say("hi", user=f"other{n}")
    await h.say("hi", user="mine")
    h.clock.advance(3600)
    from convoflow.scheduler import Scheduler

    mine = Scheduler(h.engine, h.deliver, batch=5, wanted=lambda key: key.partition == "test:mine")
    before = len(h.sent)
    assert await mine.fire_due() == 1  # past the twelve sooner ones it leaves alone
    assert len(h.sent) == before
    assert await h.scheduler.fire_due() == 12


async def test_the_session_view_says_where_a_session_waits_and_what_it_keeps(store: Store) -> None:
    from convoflow.adapters.host.sessions import describe, summary_line

    h = harness(napping, store, 10_000)
    await h.say("hi")
    await h.say("early")
    await h.engine.signal(h.key(), "paid", {}, "p-1")
    session = await store.load(h.key())
    assert session is not None
    assert "sleeping until " in summary_line(session)
    shown = describe(session).splitlines()
    assert any(line.startswith("next timer ") for line in shown)
    assert "kept      1 answers sent while the flow waited for something else" in shown
    assert any(line.startswith("kept      event 'paid' (id p-1) until ") for line in shown)


@pytest.mark.parametrize(("settings", "message"), [
    ("idle_timeout = 'soon'", "idle_timeout in .* must be a number of seconds or a timedelta"),
    ("idle_timeout = 0", "idle_timeout in .* must be more than 0 seconds"),
    ("idle_timeout = 60\non_idle = print", "on_idle in .* must be a @dialog function"),
    ("@dialog()\ndef on_idle():\n    yield send_message('bye')", "sets on_idle but no idle_timeout"),
])
def test_a_bot_with_a_malformed_idle_policy_is_refused_with_its_setting_named(
    tmp_path: Path, settings: str, message: str
) -> None:
    from convoflow.adapters.host.loader import BotMisconfigured

    bot = tmp_path / f"idle_{abs(hash(settings))}.py"
    bot.write_text("from convoflow import dialog, send_message\n\n@dialog()\ndef main():\n"
                   "    yield send_message('hi')\n\n" + settings + "\n")
    with pytest.raises(BotMisconfigured, match=message):
        load_bot(str(bot))


@dialog()
def short_wait() -> Any:
    from convoflow import wait_for_event

    try:
        yield wait_for_event("paid", timeout=60)
    except TimedOut:
        yield send_message("gave up")


async def test_an_event_after_a_deadline_that_has_not_fired_yet_is_kept_not_delivered(store: Store) -> None:
    h = harness(short_wait, store, 10_000)
    await h.say("hi")
    h.clock.advance(61)  # the timeout is due, not fired yet: it comes first, and ends the flow
    outcome = await h.engine.signal(h.key(), "paid", {}, "late-1", deliver=h.deliver)
    assert outcome.status == "kept" and h.texts() == ["gave up"]
