"""Prometheus metrics, one registry per app (no import-time globals)."""

from __future__ import annotations

import time

from fastapi import Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.service import KnowledgeBase


class Metrics:
    """Request counts and latencies, plus catalog gauges read at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kb_http_requests", "HTTP requests", ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kb_http_request_seconds", "HTTP request latency", ["route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.documents = Gauge(
            "kb_documents", "Documents in the catalog", ["status"], registry=self.registry
        )
        self.chunks = Gauge("kb_chunks", "Chunks of indexed documents", registry=self.registry)

    def render(self, kb: KnowledgeBase) -> Response:
        """The exposition text, with catalog gauges refreshed."""
        counts = kb.counts()
        for status in ("indexed", "failed"):
            self.documents.labels(status).set(counts.get(f"documents_{status}", 0))
        self.chunks.set(counts.get("chunks", 0))
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Pure ASGI middleware counting and timing requests by route template.

    Starlette's ``BaseHTTPMiddleware`` costs milliseconds per request, a large
    share of a search's latency; this one costs microseconds.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, noting the response status and the time taken."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), ["500"]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], path, status[0]).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)
