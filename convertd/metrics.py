"""Prometheus metrics: every metric `GET /metrics` shows is defined here, with the one way each
is recorded (api/metrics.py serves them).

One `Metrics` belongs to one app, with its own `CollectorRegistry` (never the library's global
one), so several apps in one process (the tests) count apart. Recording is an in-memory
increment under the library's lock: no I/O, nothing awaited, and a recording that raises is
logged and dropped, never a failed request or job. What the database knows (the queue, drops in
progress, webhook deliveries) is read at scrape time instead (store/readings.py), into the
`Readings` the collector below shows.

Labels are bounded: filetypes and formats only from the set this daemon converts (anything else
is "other"), routes as their templates (`/v1/status/{job_id}`), key names (made by the admin, one
per key) up to MAX_KEY_NAMES of them; never a job id, a file name or a raw path.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Concatenate, ParamSpec

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

OTHER = "other"
# 429s are counted by key name; past this many different names, by "other". Names are the
# admin's (`convertd keys create --name`), so a home server has a handful.
MAX_KEY_NAMES = 100
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route of a request no route matched (a 404)
# A hash takes milliseconds, a long video an hour.
STATES = ("finished", "failed", "cancelled")
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

P = ParamSpec("P")


def _never_fails(
    record: Callable[Concatenate[Metrics, P], None],
) -> Callable[Concatenate[Metrics, P], None]:
    """A recording that raises is logged (once per kind) and forgotten."""

    def safe(self: Metrics, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            record(self, *args, **kwargs)
        except Exception:
            if record.__name__ not in self._failed:
                self._failed.add(record.__name__)
                logger.exception("metrics: %s failed; the metric is not recorded", record.__name__)

    return safe


@dataclasses.dataclass(frozen=True)
class Readings:
    """What the database says at scrape time (store/readings.py reads it)."""

    jobs_queued: int = 0
    oldest_queued_seconds: float = 0.0
    jobs_running: int = 0
    drops_in_progress: int = 0
    webhooks_pending: int = 0
    webhooks_failed: int = 0


class _ReadingsCollector(Collector):
    """The gauges read from the database, shown as the latest scrape read them."""

    def __init__(self) -> None:
        self.latest = Readings()

    def collect(self) -> Iterable[Metric]:
        r = self.latest
        yield GaugeMetricFamily(
            "convertd_jobs_queued", "Jobs waiting for a worker", value=r.jobs_queued
        )
        yield GaugeMetricFamily(
            "convertd_jobs_oldest_queued_seconds",
            "How long the oldest waiting job has waited (0 when none waits)",
            value=r.oldest_queued_seconds,
        )
        yield GaugeMetricFamily(
            "convertd_jobs_running", "Jobs being converted now", value=r.jobs_running
        )
        yield GaugeMetricFamily(
            "convertd_drop_files_in_progress",
            "Files taken from drop folders whose conversion or delivery has not ended",
            value=r.drops_in_progress,
        )
        deliveries = GaugeMetricFamily(
            "convertd_webhook_deliveries",
            "Webhook deliveries on record: pending (still being tried) and failed (given up; "
            "kept for the retention period)",
            labels=["state"],
        )
        deliveries.add_metric(["pending"], r.webhooks_pending)
        deliveries.add_metric(["failed"], r.webhooks_failed)
        yield deliveries


class _RequestsCollector(Collector):
    """Requests by method, route and status, and their latencies. Counted on the event loop
    (the only place requests are recorded) in plain dicts, a fifth of what the library's
    locked children cost per request, and shown through the library's metric families from a
    copy taken on the loop before each scrape."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}
        # Per (method, route): a count per bucket, then +Inf, then the sum of seconds.
        self.timings: dict[tuple[str, str], list[float]] = {}
        self._copy: tuple[dict[tuple[str, str, str], int], dict[tuple[str, str], list[float]]]
        self._copy = ({}, {})

    def record(self, method: str, route: str, status: str, seconds: float | None) -> None:
        key = (method, route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        if seconds is None:  # a request held open (an event stream, a wait): not timed
            return
        timing = self.timings.get((method, route))
        if timing is None:
            timing = self.timings[(method, route)] = [0.0] * (len(HTTP_BUCKETS) + 2)
        timing[bisect.bisect_left(HTTP_BUCKETS, seconds)] += 1  # le: a bound is its bucket's
        timing[-1] += seconds

    def take_copy(self) -> None:
        self._copy = (dict(self.counts), {k: list(v) for k, v in self.timings.items()})

    def collect(self) -> Iterable[Metric]:
        counts, timings = self._copy
        requests = CounterMetricFamily(
            "convertd_http_requests",
            "HTTP requests answered, by method, route template and status",
            labels=["method", "route", "status"],
        )
        for key, count in counts.items():
            requests.add_metric(list(key), count)
        yield requests
        seconds = HistogramMetricFamily(
            "convertd_http_request_duration_seconds",
            "Time from a request's arrival to its handler's answer, by method and route",
            labels=["method", "route"],
        )
        bounds = [*(str(float(b)) for b in HTTP_BUCKETS), "+Inf"]  # le="1.0", as the library's
        for (method, route), timing in timings.items():
            cumulative = itertools.accumulate(timing[:-1])
            buckets = list(zip(bounds, cumulative, strict=True))
            seconds.add_metric([method, route], buckets, timing[-1])
        yield seconds


class Metrics:
    """The app's metrics and their recording. Components take one (or make their own, unseen,
    when used outside the daemon: the CLI's one-off conversions)."""

    def __init__(self) -> None:
        # No `_created` series beside each counter and histogram: nothing reads them, and they
        # would double what Prometheus stores. (A switch of the library's, for the process.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self._failed: set[str] = set()
        self._filetypes: frozenset[str] = frozenset()
        self._formats: frozenset[str] = frozenset()
        self._operations: frozenset[str] = frozenset()
        self._key_names: set[str] = set()
        self._statuses: dict[int, str] = {}
        r = self.registry
        self.build = Info("convertd_build", "The running convertd and its schema", registry=r)
        self.readings = _ReadingsCollector()
        r.register(self.readings)
        self.jobs = Counter(
            "convertd_jobs",
            "Jobs that ended here, by filetype, output format and final state",
            ["filetype", "output_format", "state"],
            registry=r,
        )
        self.job_seconds = Histogram(
            "convertd_job_duration_seconds",
            "Time from a worker taking a job to its end, by filetype",
            ["filetype"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.tasks = Counter(
            "convertd_tasks",
            "/v2 tasks the task engine ran itself (not conversions: those are jobs), by "
            "operation and final state",
            ["operation", "state"],
            registry=r,
        )
        self.task_seconds = Histogram(
            "convertd_task_duration_seconds",
            "Time the task engine spent on a task's operation, by operation",
            ["operation"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.requests = _RequestsCollector()
        r.register(self.requests)
        self.rate_limited_requests = Counter(
            "convertd_rate_limited_requests",
            "Requests refused with 429 because the key's plan limit was reached, by key name",
            ["key"],
            registry=r,
        )
        self.upload_bytes = Counter(
            "convertd_upload_bytes", "Bytes of files received in uploads", registry=r
        )
        self.office_instances = Gauge(
            "convertd_office_instances", "Warm LibreOffice instances running", registry=r
        )
        self.office_busy = Gauge(
            "convertd_office_instances_busy",
            "Warm LibreOffice instances converting a document now",
            registry=r,
        )
        self.office_recycles = Counter(
            "convertd_office_recycles",
            "Warm LibreOffice instances restarted after their document quota (recycling)",
            registry=r,
        )
        self.office_restarts = Counter(
            "convertd_office_restarts",
            "Warm LibreOffice instances killed because they hung or crashed",
            ["reason"],
            registry=r,
        )
        self.drop_files_waiting = Gauge(
            "convertd_drop_files_waiting",
            "Files seen in drop folders and not taken yet (settling, or held back)",
            registry=r,
        )
        self.drop_files_skipped = Gauge(
            "convertd_drop_files_skipped",
            "Paths in drop folders the watcher skips now (unreadable, links, misplaced)",
            registry=r,
        )
        self.drop_files = Counter(
            "convertd_drop_files",
            "Drop-folder files that ended, by outcome (done, failed)",
            ["outcome"],
            registry=r,
        )
        self.webhook_tries = Counter(
            "convertd_webhook_tries",
            "Webhook delivery tries, by outcome (delivered, retry, failed: given up)",
            ["outcome"],
            registry=r,
        )

        # Known outcomes start at 0, so a dashboard shows 0 rather than no data, and rate()
        # sees the first one.
        for reason in ("hung", "crashed"):
            self.office_restarts.labels(reason)
        for outcome in ("done", "failed"):
            self.drop_files.labels(outcome)
        for outcome in ("delivered", "retry", "failed"):
            self.webhook_tries.labels(outcome)

    # Set up by the app.

    def describe_build(self, version: str, schema: int) -> None:
        self.build.info({"version": version, "schema": str(schema)})

    def know(
        self,
        filetypes: Iterable[str],
        formats: Iterable[str],
        conversions: Iterable[tuple[str, str]] = (),
        operations: Iterable[str] = (),
    ) -> None:
        """The filetypes and output formats labels may carry; others are "other". The jobs of
        each of `conversions` (filetype, output format: 56 of them, so 168 series) start at 0
        in each state, so that increase() over a window sees a first failure after a start;
        so do the tasks of `operations` (the task engine's own), the only ones counted."""
        self._filetypes = frozenset(filetypes)
        self._formats = frozenset(formats)
        self._operations = frozenset(operations)
        for operation in self._operations:
            self.task_seconds.labels(operation)
            for state in STATES:
                self.tasks.labels(operation, state)
        for filetype, output_format in conversions:
            self.job_seconds.labels(filetype)
            for state in STATES:
                self.jobs.labels(filetype, output_format, state)

    # Recording: cheap, synchronous, never raising.

    @_never_fails
    def job_ended(
        self, filetype: str, output_format: str, state: str, seconds: float | None
    ) -> None:
        """`seconds` None: a job no worker took (cancelled while queued), not timed."""
        filetype = filetype if filetype in self._filetypes else OTHER
        output_format = output_format if output_format in self._formats else OTHER
        self.jobs.labels(filetype, output_format, state).inc()
        if seconds is not None:
            self.job_seconds.labels(filetype).observe(seconds)

    @_never_fails
    def task_ended(self, operation: str, state: str, seconds: float) -> None:
        if operation in self._operations:
            self.tasks.labels(operation, state).inc()
            self.task_seconds.labels(operation).observe(seconds)

    @_never_fails
    def request_answered(self, method: str, route: str, status: int, seconds: float | None) -> None:
        """`seconds` None: counted, not timed (a request held open)."""
        shown = self._statuses.get(status) or self._statuses.setdefault(status, str(status))
        self.requests.record(method if method in METHODS else OTHER, route, shown, seconds)

    @_never_fails
    def rate_limited(self, key_name: str) -> None:
        if key_name not in self._key_names and len(self._key_names) < MAX_KEY_NAMES:
            self._key_names.add(key_name)
        self.rate_limited_requests.labels(key_name if key_name in self._key_names else OTHER).inc()

    @_never_fails
    def uploaded(self, size: int) -> None:
        self.upload_bytes.inc(size)

    @_never_fails
    def office_recycled(self) -> None:
        self.office_recycles.inc()

    @_never_fails
    def office_restarted(self, reason: str) -> None:
        self.office_restarts.labels(reason).inc()

    @_never_fails
    def drop_ended(self, outcome: str) -> None:
        self.drop_files.labels(outcome).inc()

    @_never_fails
    def webhook_tried(self, outcome: str) -> None:
        self.webhook_tries.labels(outcome).inc()

    def show(self, readings: Readings) -> None:
        """The database's readings, and a copy of what the event loop counts, for the scrape
        about to be made (call it on the loop)."""
        self.readings.latest = readings
        self.requests.take_copy()
