"""Prometheus metrics, one registry per app (no import-time globals)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Count and time every request by its route template."""
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        self.requests.labels(request.method, path, str(response.status_code)).inc()
        self.latency.labels(path).observe(time.perf_counter() - start)
        return response

    def render(self, kb: KnowledgeBase) -> Response:
        """The exposition text, with catalog gauges refreshed."""
        counts = kb.catalog.counts()
        for status in ("indexed", "failed"):
            self.documents.labels(status).set(counts.get(f"documents_{status}", 0))
        self.chunks.set(counts.get("chunks", 0))
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
