"""The time and event primitives on the Play level, with a manual clock: each turn resumes the
suspended play (warm) or replays the stored record (cold), with the same results."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from convoflow import (
    ManualClock,
    Option,
    TimedOut,
    Woke,
    ask,
    dialog,
    get_client_response,
    now,
    send_message,
    session_key,
    sleep,
    sleep_until,
    wait_first,
    wait_for_event,
)
from convoflow.mailbox import INBOX_LIMIT
from convoflow.replay import log_entries

from tests.support.play_driver import KEY, PlayDriver


@pytest.fixture(params=["warm", "cold"])
def cold(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "cold")


@dialog()
def napper():  # type: ignore[no-untyped-def]
    yield send_message("Going to sleep for a day.")
    yield sleep(timedelta(hours=24))
    first = yield get_client_response()
    second = yield get_client_response()
    yield send_message(f"Awake. You said {first!r} then {second!r}.")
    third = yield get_client_response()
    yield send_message(f"And now {third!r}.")


async def test_a_day_long_sleep_ends_when_the_clock_gets_there(cold: bool) -> None:
    driver = PlayDriver(napper, cold=cold)
    assert await driver.turn() == ["Going to sleep for a day."]
    began = driver.clock.now()
    assert driver.pending is not None and driver.pending.due == began + 86_400
    assert driver.pending.answer is False and driver.pending.began_now
    assert driver.state["frame"]["pending"] == {"wait": "<sleep>", "due": began + 86_400}
    assert await driver.advance(86_399) == []
    assert await driver.advance(1) == []  # awake, waiting for an answer now
    assert driver.pending is not None and driver.pending.answer and driver.pending.due is None
    assert await driver.say("hi") == []
    assert await driver.say("there") == ["Awake. You said 'hi' then 'there'."]


async def test_messages_sent_during_a_sleep_go_to_the_next_waits_in_order(cold: bool) -> None:
    driver = PlayDriver(napper, cold=cold)
    await driver.turn()
    assert await driver.say("one") == []
    assert await driver.say("two") == []
    assert await driver.say("three") == []
    assert [item["value"] for item in driver.kept["answers"]] == ["one", "two", "three"]
    assert await driver.advance(86_400) == ["Awake. You said 'one' then 'two'.", "And now 'three'."]
    assert driver.finished and driver.kept["answers"] == []


async def test_the_inbox_keeps_the_first_answers_up_to_its_bound(cold: bool) -> None:
    driver = PlayDriver(napper, cold=cold)
    await driver.turn()
    for n in range(INBOX_LIMIT + 5):
        await driver.say(f"m{n}")
    assert [item["value"] for item in driver.kept["answers"]] == [f"m{n}" for n in range(INBOX_LIMIT)]


@dialog()
def until_new_year():  # type: ignore[no-untyped-def]
    yield sleep_until(datetime(2026, 1, 1, 0, 0, 30, tzinfo=timezone.utc))
    yield send_message("Happy new year!")
    yield sleep_until(datetime(2020, 1, 1, tzinfo=timezone.utc))  # long past: no pause
    yield send_message("Still happy.")


async def test_sleep_until_an_aware_datetime_and_not_at_all_for_a_past_one(cold: bool) -> None:
    driver = PlayDriver(until_new_year, cold=cold)  # the manual clock starts at 2026-01-01T00:00:00Z
    assert await driver.turn() == []
    assert driver.pending is not None and driver.pending.due == datetime(2026, 1, 1, 0, 0, 30, tzinfo=timezone.utc).timestamp()
    assert await driver.advance(30) == ["Happy new year!", "Still happy."]
    assert driver.finished


@dialog()
def quiz():  # type: ignore[no-untyped-def]
    try:
        answer = yield get_client_response(timeout=60)
    except TimedOut:
        yield send_message("Too slow!")
        answer = yield get_client_response()
    yield send_message(f"Answer: {answer}")


async def test_a_timeout_raises_timed_out_in_the_flow_which_may_catch_it(cold: bool) -> None:
    driver = PlayDriver(quiz, cold=cold)
    await driver.turn()
    assert driver.pending is not None and driver.pending.deadline == driver.clock.now() + 60
    assert await driver.advance(60) == ["Too slow!"]
    assert await driver.say("42") == ["Answer: 42"]
    timed_out = [entry for entry in log_entries(driver.state["frame"]["log"]) if len(entry) > 2]
    assert timed_out[0][2]["error"]["type"] == "convoflow.dialogs.TimedOut"


async def test_an_answer_in_time_is_taken(cold: bool) -> None:
    driver = PlayDriver(quiz, cold=cold)
    await driver.turn()
    await driver.advance(59)
    assert await driver.say("7") == ["Answer: 7"]
    assert await driver.advance(3600) == []


async def test_an_answer_after_the_deadline_comes_after_the_timeout_even_before_it_fired(cold: bool) -> None:
    driver = PlayDriver(quiz, cold=cold)
    await driver.turn()
    driver.clock.advance(61)  # no timer fired yet (a scheduler running late)
    assert await driver.say("late") == ["Too slow!", "Answer: late"]


@dialog()
def strict():  # type: ignore[no-untyped-def]
    yield send_message("Answer within a minute.")
    yield get_client_response(timeout=60)
    yield send_message("unreachable after a timeout")


async def test_an_uncaught_timeout_ends_the_conversation(cold: bool) -> None:
    driver = PlayDriver(strict, cold=cold)
    await driver.turn()
    assert await driver.advance(120) == []
    assert driver.finished and driver.timed_out and driver.pending is None


@dialog()
def nudged():  # type: ignore[no-untyped-def]
    try:
        name = yield ask("Your name?", timeout=300, remind_after=60, reminder="Still there?")
    except TimedOut:
        yield send_message("Bye for now.")
        return
    yield send_message(f"Hello {name}")


async def test_ask_reminds_at_each_interval_until_its_timeout(cold: bool) -> None:
    driver = PlayDriver(nudged, cold=cold)
    assert await driver.turn() == ["Your name?"]
    start = driver.clock.now()
    assert driver.pending is not None and driver.pending.due == start + 60 and driver.pending.deadline == start + 300
    assert await driver.advance(59) == []
    assert await driver.advance(1) == ["Still there?"]
    assert driver.pending is not None and driver.pending.due == start + 120 and not driver.pending.began_now
    assert await driver.advance(180) == ["Still there?"] * 3
    assert await driver.advance(60) == ["Bye for now."]
    assert driver.finished


async def test_reminders_missed_while_nothing_fired_go_out_once(cold: bool) -> None:
    driver = PlayDriver(nudged, cold=cold)
    await driver.turn()
    from convoflow.mailbox import Fired

    driver.clock.advance(250)  # four reminder times passed while no process was up
    assert await driver.turn(Fired(driver.clock.now() - 190)) == ["Still there?"]
    assert driver.pending is not None and driver.pending.due == driver.clock.now() - 250 + 300
    assert await driver.say("Ada") == ["Hello Ada"]


@dialog()
def offsets():  # type: ignore[no-untyped-def]
    colour = yield ask("Colour?", choices=[Option("Red"), Option("Blue")], remind_after=(30, timedelta(minutes=5)))
    yield send_message(f"Picked {colour}")


async def test_reminders_at_given_offsets_and_by_default_the_question_again(cold: bool) -> None:
    driver = PlayDriver(offsets, cold=cold)
    await driver.turn()
    assert await driver.advance(30) == ["Colour?"]
    assert await driver.advance(270) == ["Colour?"]
    assert driver.pending is not None and driver.pending.due is None  # no more reminders, no timeout
    assert await driver.advance(86_400) == []
    assert await driver.say("2") == ["Picked Blue"]


@dialog()
def checkout():  # type: ignore[no-untyped-def]
    yield send_message("Pay here: https://pay.example/1")
    woke = yield wait_first(answer=True, events=("paid",), timeout=900)
    if woke.kind == "event":
        yield send_message(f"Paid {woke.value['amount']}")
    elif woke.kind == "answer":
        yield send_message(f"You said {woke.value}")
    else:
        yield send_message("The link expired.")


async def test_wait_first_says_which_came_first(cold: bool) -> None:
    paid = PlayDriver(checkout, cold=cold)
    await paid.turn()
    assert paid.pending is not None and paid.pending.events == ("paid",) and paid.pending.answer
    assert await paid.signal("shipped", {}) == []  # not waited for: kept
    assert await paid.signal("paid", {"amount": 12}) == ["Paid 12"]
    assert [item["name"] for item in paid.kept["events"]] == ["shipped"]
    answered = PlayDriver(checkout, cold=cold)
    await answered.turn()
    assert await answered.say("cancel") == ["You said cancel"]
    expired = PlayDriver(checkout, cold=cold)
    await expired.turn()
    assert await expired.advance(900) == ["The link expired."]
    recorded = log_entries(expired.state["frame"]["log"])[-1]
    assert recorded[0] == "<first>" and recorded[1]["v"] == {"kind": "timeout", "value": None, "event": None}


@dialog()
def shipment():  # type: ignore[no-untyped-def]
    yield send_message("Waiting for the parcel.")
    yield sleep(10)
    try:
        parcel = yield wait_for_event("shipped", timeout=timedelta(hours=2))
    except TimedOut:
        yield send_message("No parcel.")
        return
    yield send_message(f"Shipped: {parcel}")


async def test_wait_for_event_takes_an_event_that_came_before_it_waited(cold: bool) -> None:
    driver = PlayDriver(shipment, cold=cold)
    await driver.turn()
    assert await driver.signal("shipped", {"id": 7}) == []
    assert await driver.advance(10) == ["Shipped: {'id': 7}"]


async def test_a_kept_event_expires(cold: bool) -> None:
    driver = PlayDriver(shipment, cold=cold)  # the driver keeps events for an hour
    await driver.turn()
    await driver.signal("shipped", {"id": 7})
    driver.clock.advance(3600)
    assert await driver.advance(0) == []
    assert driver.pending is not None and driver.pending.events == ("shipped",)
    assert await driver.advance(7200) == ["No parcel."]


async def test_wait_for_event_returns_the_data_of_the_event_it_waits_for(cold: bool) -> None:
    driver = PlayDriver(shipment, cold=cold)
    await driver.turn()
    await driver.advance(10)
    assert await driver.say("where is it?") == []  # kept: no wait for an answer comes after
    assert await driver.signal("shipped", [1, 2]) == ["Shipped: [1, 2]"]


@dialog()
def stamped():  # type: ignore[no-untyped-def]
    started = yield now()
    key = yield session_key()
    yield send_message(f"{key} at {started.isoformat()}")
    yield get_client_response()
    again = yield now()
    yield send_message(f"{(again - started).total_seconds():g} s later")
    yield get_client_response()


async def test_now_and_session_key_are_recorded(cold: bool) -> None:
    driver = PlayDriver(stamped, cold=cold)
    assert await driver.turn() == [f"{KEY} at 2026-01-01T00:00:00+00:00"]
    driver.clock.advance(90)
    assert await driver.say("go") == ["90 s later"]
    driver.clock.advance(1000)  # a replay now gets the recorded times, not the clock's
    first = PlayDriver(stamped, clock=driver.clock, cold=True, state_text=driver.state_text)
    assert await first.say("done") == []
    assert first.finished


def test_malformed_waits_fail_where_the_flow_makes_them() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        sleep(-1)
    with pytest.raises(TypeError, match="seconds or a timedelta"):
        sleep("10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        sleep_until(datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="nothing could end"):
        wait_first()
    with pytest.raises(ValueError, match="reminder message"):
        get_client_response(remind_after=10)
    with pytest.raises(ValueError, match="more than 0"):
        ask("Name?", remind_after=0)
    with pytest.raises(ValueError, match="event name"):
        wait_for_event("")


def test_woke_is_a_small_value() -> None:
    assert Woke("event", {"a": 1}, "paid") == Woke("event", {"a": 1}, "paid")
    assert ManualClock(10).advance(timedelta(seconds=5)) == 15
