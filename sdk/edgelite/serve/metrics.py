"""Prometheus metrics of the server (``GET /metrics``), with ``prometheus-client``.

Two of them are the autoscaling signals: ``edgelite_inflight_requests`` (accepted,
not yet answered) and ``edgelite_queue_depth`` (accepted, not yet taken by a
worker). A queue that stays above zero means the workers are saturated; scale out
on it, or on in-flight per instance, rather than on CPU (a busy-but-keeping-up
instance and a drowning one both show 100 % CPU).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)


class Metrics:
    """The server's metrics, in a registry of their own (no global state)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        disable_created_metrics()  # *_created series double the scrape size and no dashboard uses them
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("edgelite_requests", "HTTP requests by route template and status",
                                ["route", "status"], registry=r)
        self.latency = Histogram("edgelite_request_duration_seconds", "Request latency by route template",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("edgelite_queue_depth", "Requests accepted and waiting for a worker", registry=r)
        self.inflight = Gauge("edgelite_inflight_requests", "Requests accepted and not yet answered", registry=r)
        self.batch_size = Histogram("edgelite_batch_size", "Requests per micro-batch run by a worker",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.worker_restarts = Counter("edgelite_worker_restarts", "Worker processes restarted after dying",
                                       registry=r)
        self.workers_ready = Gauge("edgelite_workers_ready", "Worker processes with their models loaded",
                                   registry=r)
        self.workers = Gauge("edgelite_workers", "Configured worker processes", registry=r)
        self.rejected = Counter("edgelite_rejected", "Requests refused by backpressure (503)", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
