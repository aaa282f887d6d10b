"""Prometheus metrics of one gateway process, served at `/metrics`.

Labels are ids and kinds only (decision, article, destination, endpoint), never text. With
`shuhi serve --workers N` each worker process keeps its own counters; run one worker per
container (compose, Kubernetes) so each scrape sees a whole process.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

DECISIONS = Counter("shuhi_decisions", "Decisions made, by kind and by each article they rest on",
                    ["decision", "article"])
REFUSALS = Counter("shuhi_refusals", "Requests refused before a decision, by reason", ["code"])
SCAN_SECONDS = Histogram("shuhi_scan_seconds", "Time to scan one request against the registry", buckets=_FAST)
UPSTREAM_SECONDS = Histogram("shuhi_upstream_seconds",
                             "Time from forwarding to the destination's answer (its headers, for streams)",
                             ["destination"], buckets=_SLOW)
AUDIT_SECONDS = Histogram("shuhi_audit_commit_seconds",
                          "Audit lag: time a decision record waits until it is committed", buckets=_FAST)
AUDIT_QUEUE = Gauge("shuhi_audit_queue_records", "Audit records queued, not yet committed")
AUDIT_COMMITS = Gauge("shuhi_audit_group_commits",
                      "Group commits of this process's audit writer since it started (records per commit: "
                      "shuhi_audit_committed_records / this)")
AUDIT_RECORDS = Gauge("shuhi_audit_committed_records", "Audit records this process's writer committed since it started")
AUDIT_FAILURES = Counter("shuhi_audit_failures", "Decision records that could not be committed (request refused)")
REGISTRY_ITEMS = Gauge("shuhi_registry_items", "Items held by this process's registry")
REGISTRY_FINGERPRINTS = Gauge("shuhi_registry_fingerprints", "Fingerprints held by this process's registry")
CHANGE_LAG = Gauge("shuhi_change_log_age_seconds", "Seconds since the change log was last read successfully")


def observe_decision(kind: str, articles: list[str] | tuple[str, ...]) -> None:
    """One decision: counted once per article it cites (`-` when it cites none)."""
    for article in articles or ("-",):
        DECISIONS.labels(kind, article).inc()


def registry_size(registry: Any) -> tuple[int, int]:
    """(items, fingerprints) of a `detection.Registry`, read without locking (a gauge may be a moment old)."""
    return len(registry._slots), len(registry.index)
