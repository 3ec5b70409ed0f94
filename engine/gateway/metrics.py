"""The gateway's Prometheus metrics, on a registry of their own.

Label values are bounded: ``route`` is one of the routes the app registers (``other`` for
any path it does not), ``status`` an HTTP status, ``result`` and ``reason`` fixed sets.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

# Delivery record's Kafka timestamp to sent on a stream: from 5 ms to 10 minutes (a stream
# resumed later replays older deliveries).
PUSH_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)
# Why an interaction was refused (the `reason` label; "none" when accepted, "not_held" when
# accepted for a delivery this gateway does not hold: the worker checks it).
INTERACTION_REASONS = ("none", "not_held", "invalid_interaction", "unavailable")
ACCEPTED_REASONS = ("none", "not_held")


class GatewayMetrics:
    """Every metric the gateway exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = reg = registry if registry is not None else CollectorRegistry()
        self.streams = Gauge("declic_gateway_streams", "Connected SSE streams", registry=reg)
        self.messages_pushed = PromCounter(
            "declic_gateway_messages_pushed_total",
            "Deliveries sent on SSE streams (replayed or live)",
            registry=reg,
        )
        self.push_latency = Histogram(
            "declic_gateway_push_latency_seconds",
            "Delivery record's Kafka timestamp to sent on a stream",
            buckets=PUSH_LATENCY_BUCKETS,
            registry=reg,
        )
        self.interactions = PromCounter(
            "declic_gateway_interactions_total",
            "Interactions posted, by result (accepted or refused) and reason",
            ["result", "reason"],
            registry=reg,
        )
        self.requests = PromCounter(
            "declic_gateway_requests_total",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=reg,
        )
        self.records_skipped = PromCounter(
            "declic_gateway_records_skipped_total",
            "Records of deliveries or impressions that do not decode, skipped",
            ["topic"],
            registry=reg,
        )
        self.users_held = Gauge(
            "declic_gateway_users", "Users with deliveries or shown marks held", registry=reg
        )
        self.deliveries_held = Gauge(
            "declic_gateway_deliveries", "Deliveries held, all users together", registry=reg
        )

    def interaction(self, reason: str) -> None:
        """Count one interaction: accepted (reason "none") or refused for ``reason``."""
        result = "accepted" if reason in ACCEPTED_REASONS else "refused"
        self.interactions.labels(result, reason).inc()
