"""Metrics and logs as an operator sees them."""

from __future__ import annotations

import io
import json
import logging

from prometheus_client import CollectorRegistry, generate_latest

from convoflow.adapters.host.logs import MASK, setup_logging
from convoflow.adapters.host.metrics import MeteredStore, Metrics
from convoflow import Incoming, SessionKey, dialog, get_client_response, send_message
from convoflow.turns import Engine
from convoflow.stores import MemoryStore


@dialog()
def echo():
    while True:
        text = yield get_client_response()
        if text == "boom":
            raise RuntimeError("flow bug")
        yield send_message(f"echo {text}")


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_turn_metrics_by_channel_and_outcome() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    engine = Engine(echo, MeteredStore(MemoryStore(), metrics), on_turn=metrics.on_turn)
    key = SessionKey("telegram:1:42", engine.app)
    for n, text in enumerate(["hi", "one", "boom"]):
        await engine.handle(Incoming(key, str(n), text=text))
    await engine.handle(Incoming(key, "1", text="one"))  # redelivered

    assert sample(registry, "convoflow_turns_total", channel="telegram", outcome="ok") == 2
    assert sample(registry, "convoflow_turns_total", channel="telegram", outcome="failed") == 1
    assert sample(registry, "convoflow_turn_failures_total", channel="telegram", kind="failed") == 1
    assert sample(registry, "convoflow_duplicate_updates_total", channel="telegram") == 1
    assert sample(registry, "convoflow_turn_seconds_count", channel="telegram") == 4
    # the first contact and the redelivered update load; the warm turns between commit unread
    assert sample(registry, "convoflow_store_round_trips_total", operation="load") == 2
    assert sample(registry, "convoflow_store_round_trips_total", operation="commit") == 3
    assert sample(registry, "convoflow_store_round_trips_total", operation="mark_delivered") == 2
    assert sample(registry, "convoflow_outbox_backlog", channel="telegram") == 0
    assert b"convoflow_turn_seconds_bucket" in generate_latest(registry)


async def test_failed_delivery_shows_as_backlog_until_redelivered() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    engine = Engine(echo, MemoryStore(), on_turn=metrics.on_turn)
    key = SessionKey("slack:-:T1:D1", engine.app)
    await engine.handle(Incoming(key, "a", text="hi"))

    async def down(reply: object) -> None:
        raise ConnectionError("platform down")

    try:
        await engine.handle(Incoming(key, "b", text="x"), down)
    except Exception as error:
        assert type(error).__name__ == "DeliveryFailed"
    assert sample(registry, "convoflow_outbox_backlog", channel="slack") == 1
    assert sample(registry, "convoflow_turn_failures_total", channel="slack", kind="undelivered") == 1
    sent: list[object] = []

    async def up(reply: object) -> None:
        sent.append(reply)

    await engine.handle(Incoming(key, "b", text="x"), up)
    assert len(sent) == 1
    assert sample(registry, "convoflow_outbox_backlog", channel="slack") == 0


async def test_one_json_log_line_per_turn_with_secrets_masked() -> None:
    stream = io.StringIO()
    token = "123456:AAH-secret-token-value"
    setup_logging("INFO", "json", [token, "abc"], stream)
    try:
        engine = Engine(echo, MemoryStore())
        key = SessionKey("telegram:1:42", engine.app)
        await engine.handle(Incoming(key, "1", text="hi"))
        logging.getLogger("httpx").info("HTTP Request: POST https://api.telegram.org/bot%s/sendMessage", token)
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [turn] = [line for line in lines if line["logger"] == "convoflow.engine"]
    assert turn["session"] == "telegram:1:42/echo"
    assert (turn["channel"], turn["outcome"]) == ("telegram", "ok")
    assert turn["duration_ms"] >= 0
    assert token not in stream.getvalue()
    assert f"bot{MASK}/sendMessage" in lines[-1]["message"]
