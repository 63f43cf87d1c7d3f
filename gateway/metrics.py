"""Prometheus metrics. One registry per app (no process globals, so tests can build many apps).

Under ``serve --workers N`` the parent sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker starts, so
prometheus_client keeps every worker's samples in files there and ``/metrics`` merges them (the pool
gauges are reported per worker ``pid``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclasses.dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    http_requests: Counter
    http_latency: Histogram
    pool_size: Gauge
    pool_idle: Gauge
    events_ingested: Counter
    events_publish_failed: Counter
    quarantined: Counter
    # label children, looked up once: labels() takes a lock and builds its key on every call
    _children: dict[tuple[Any, ...], Any] = dataclasses.field(default_factory=dict)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = ("http", route, method, status)
        children = self._children.get(key)
        if children is None:
            labels = (route, method, str(status))
            children = self._children[key] = (self.http_requests.labels(*labels), self.http_latency.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)

    def count_event(self, channel: str, outcome: str, n: int = 1) -> None:
        key = ("event", channel, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.events_ingested.labels(channel, outcome)
        child.inc(n)


def create_metrics() -> Metrics:
    r = CollectorRegistry(auto_describe=True)
    return Metrics(
        registry=r,
        http_requests=Counter(
            "cg_http_requests", "HTTP requests by route, method and status", ["route", "method", "status"],
            registry=r,
        ),
        http_latency=Histogram(
            "cg_http_request_duration_seconds", "HTTP request latency by route, method and status",
            ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=r,
        ),
        pool_size=Gauge("cg_db_pool_size", "PostgreSQL pool connections", registry=r,
                        multiprocess_mode="liveall"),
        pool_idle=Gauge("cg_db_pool_idle", "Idle PostgreSQL pool connections", registry=r,
                        multiprocess_mode="liveall"),
        events_ingested=Counter(
            "cg_events_ingested", "Contact events by source, channel and outcome", ["channel", "outcome"],
            registry=r,
        ),
        events_publish_failed=Counter(
            "cg_events_publish_failed", "Committed events not published on Redis (Redis unavailable)",
            registry=r,
        ),
        quarantined=Counter(
            "cg_quarantined", "Pulled messages that could not be parsed, by adapter", ["adapter"], registry=r,
        ),
    )
