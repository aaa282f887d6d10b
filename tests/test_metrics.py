"""`/metrics` in Prometheus' text format: decisions by kind and article, scan and upstream latency, audit lag,
registry size; the figures move as calls are made (counters are per process, so each check is a difference)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway
from tests.test_articles_e2e import DESIGN, EXCERPT, NDA


def scrape(gateway: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(gateway.url + "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_follow_decisions_latencies_audit_and_registry(gateway: Gateway) -> None:
    key = gateway.employee("hanako", ("rd",))
    assert gateway.admin.post("/admin/v1/agreements", json=NDA).status_code == 201
    assert gateway.admin.post(f"/admin/v1/agreements/{NDA['id']}/items",
                              json={"title": "設計書", "category": "ai_technology", "text": DESIGN}).status_code == 201
    before = scrape(gateway)
    headers = {"authorization": f"Bearer {key}"}
    for text in (EXCERPT, "hello", "good morning"):
        httpx.post(gateway.url + "/v1/chat/completions", headers=headers,
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
    after = scrape(gateway)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("shuhi_decisions_total", decision="consent_required", article="4(2)") == 1
    assert delta("shuhi_decisions_total", decision="allow", article="-") == 2
    assert delta("shuhi_scan_seconds_count") == 3
    assert delta("shuhi_upstream_seconds_count", destination="fake-openai") == 2
    assert delta("shuhi_audit_commit_seconds_count") == 3
    assert value(after, "shuhi_registry_items") >= 1
    assert value(after, "shuhi_registry_fingerprints") > 0
    assert value(after, "shuhi_audit_queue_records") >= 0
    # 3 decision records were awaited, 3 outcome records queued: at least the decisions are committed,
    # in at least one and at most three group commits (each awaited record closes one at the latest)
    assert delta("shuhi_audit_committed_records") >= 3
    assert 1 <= delta("shuhi_audit_group_commits") <= delta("shuhi_audit_committed_records")
    assert 0 <= value(after, "shuhi_change_log_age_seconds") < 5
    assert EXCERPT[:10] not in httpx.get(gateway.url + "/metrics").text
