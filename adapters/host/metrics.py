"""Prometheus metrics: turns, failures, duplicates, store round trips and conflicts, latency,
outbox backlog, replies dropped or re-rendered, replies taken over from another worker, updates
acknowledged unhandled, per channel. Fed by the Engine's `on_turn` hook, a store wrapper, the
channels' own tallies, the Engine's delivery and the HTTP app (`on_unhandled`)."""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from convoflow.adapters.sent_parts import Deliveries

from convoflow.adapters.webhooks import Unhandled
from convoflow.messages import SessionKey
from convoflow.turns import Engine, TurnOutcome
from convoflow.stores.base import Session, Store

FAILURES = ("failed", "store_error", "undelivered", "conflicted")


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.turns = Counter("convoflow_turns", "Updates handled, by channel and outcome.",
                             ["channel", "outcome"], registry=registry)
        self.failures = Counter("convoflow_turn_failures", "Turns that failed, by channel and kind.",
                                ["channel", "kind"], registry=registry)
        self.duplicates = Counter("convoflow_duplicate_updates", "Redelivered updates recognised by id.",
                                  ["channel"], registry=registry)
        self.latency = Histogram("convoflow_turn_seconds", "Time from update in to replies delivered.",
                                 ["channel"], registry=registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.replies = Counter("convoflow_replies_delivered", "Replies delivered.", ["channel"], registry=registry)
        self.round_trips = Counter("convoflow_store_round_trips", "Store operations, by kind.",
                                   ["operation"], registry=registry)
        self.store_seconds = Histogram("convoflow_store_seconds", "Store operation latency.",
                                       ["operation"], registry=registry,
                                       buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1))
        self.conflicts = Counter("convoflow_store_conflicts", "Commits that lost a race and were redone.",
                                 ["channel"], registry=registry)
        self.backlog = Gauge("convoflow_outbox_backlog", "Replies committed but not yet delivered, "
                             "in sessions this process last handled.", ["channel"], registry=registry)
        self.unhandled = Counter("convoflow_unhandled_updates", "Webhook updates acknowledged but not handled "
                                 "(readable, but not something the bot can take), by channel and reason.",
                                 ["channel", "reason"], registry=registry)
        self._pending: dict[SessionKey, int] = {}
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, kept: prometheus_client validates and looks labels up on every
        call, a cost paid several times a turn."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def on_unhandled(self, unhandled: Unhandled) -> None:
        self.unhandled.labels(unhandled.channel, unhandled.reason).inc()

    def on_turn(self, turn: TurnOutcome) -> None:
        channel, child = turn.channel, self.child
        child(self.turns, channel, turn.outcome).inc()
        if turn.outcome in FAILURES:
            child(self.failures, channel, turn.outcome).inc()
        if turn.outcome == "duplicate":
            child(self.duplicates, channel).inc()
        if turn.conflicts:
            child(self.conflicts, channel).inc(turn.conflicts)
        child(self.replies, channel).inc(turn.replies)
        child(self.latency, channel).observe(turn.seconds)
        before = self._pending.pop(turn.key, 0)
        if turn.pending:
            self._pending[turn.key] = turn.pending
        child(self.backlog, channel).inc(turn.pending - before)


class ChannelDeliveries(Collector):
    """Replies each channel dropped (a platform refused them for good) or posted again re-rendered
    smaller, by reason, read from the channels' `deliveries` when /metrics is scraped."""

    def __init__(self, channels: Sequence[Any]) -> None:
        self.channels = channels

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily("convoflow_replies_dropped", "Replies a platform refused for good, "
                                      "dropped so the conversation goes on.", labels=["channel", "reason"])
        rerendered = CounterMetricFamily("convoflow_replies_rerendered", "Messages a platform refused for "
                                         "their size or blocks, sent again as smaller plain text.",
                                         labels=["channel", "reason"])
        for channel in self.channels:
            deliveries = getattr(channel, "deliveries", None)
            if isinstance(deliveries, Deliveries):
                for reason, count in sorted(deliveries.dropped.items()):
                    dropped.add_metric([channel.name, reason], count)
                for reason, count in sorted(deliveries.rerendered.items()):
                    rerendered.add_metric([channel.name, reason], count)
        yield dropped
        yield rerendered


class Takeovers(Collector):
    """Replies this process took over from another worker whose lease on them had run out (it died,
    or could not reach the store or the platform for longer than `handoff_seconds`), read from the
    Engine's delivery when /metrics is scraped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("convoflow_reply_takeovers", "Replies taken over from another worker "
                                  "whose lease on them had run out.", value=self.engine.delivery.takeovers)


class MeteredStore:
    """A Store that counts and times every round trip of the store it wraps."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics

    async def load(self, key: SessionKey) -> Session | None:
        return await self._timed("load", self.store.load(key))

    async def commit(self, session: Session) -> None:
        await self._timed("commit", self.store.commit(session))

    async def mark_delivered(self, key: SessionKey, revision: int, through_seq: int) -> bool:
        return bool(await self._timed("mark_delivered", self.store.mark_delivered(key, revision, through_seq)))

    async def list_sessions(self, partition: str | None = None, limit: int = 100) -> list[Session]:
        return await self._timed("list", self.store.list_sessions(partition, limit))

    async def undelivered(self, app: str, since: float, until: float, limit: int = 100) -> list[Session]:
        return await self._timed("undelivered", self.store.undelivered(app, since, until, limit))

    async def due(self, app: str, until: float, limit: int = 100) -> list[Session]:
        return await self._timed("due", self.store.due(app, until, limit))

    async def close(self) -> None:
        await self.store.close()

    async def log_replies(self, key: SessionKey, entries: Sequence[dict[str, Any]], keep: int) -> None:
        await self._timed("log_replies", self.store.log_replies(key, entries, keep))

    async def logged_replies(self, key: SessionKey, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        return await self._timed("logged_replies", self.store.logged_replies(key, after, limit))

    async def latest_logged(self, keys: Sequence[SessionKey]) -> dict[SessionKey, int]:
        return await self._timed("latest_logged", self.store.latest_logged(keys))

    async def _timed(self, operation: str, call: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call
        finally:
            self.metrics.child(self.metrics.round_trips, operation).inc()
            self.metrics.child(self.metrics.store_seconds, operation).observe(time.perf_counter() - started)

    def scan(self, app: str, batch: int = 500) -> AsyncIterator[Session]:
        return self.store.scan(app, batch)
