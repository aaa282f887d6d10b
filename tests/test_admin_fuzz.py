"""The admin API fuzzed with Schemathesis against its own OpenAPI document: no input yields a 5xx.

A real gateway (uvicorn in a thread, as in conftest.py) is started once per backend (SQLite and
PostgreSQL), seeded with an agreement, an item, a principal with a key, a destination, a consent, a
consent request and a spare admin token, and every operation of `<gateway>/openapi.json` is fed
generated input: valid and invalid bodies, query strings and path parameters (Schemathesis's
examples, coverage and fuzzing phases; no operation is left out). On top of what Schemathesis
generates:
- path parameters and id fields (body or query) are often swapped for the ids of the seeded objects,
  so that the handlers also run past their 404s on real objects (a DELETE or a destruction that
  removed one is followed by seeding it again);
- now and then a string gets a NUL character (PostgreSQL's text cannot hold it) and a date or time
  an edge-of-calendar value: inputs the generators (almost) never produce, which reach the store;
- after each accepted change, a dry-run scan of the seeded material (and of the text just registered)
  must still be answered: what the API accepted must not break the decisions that follow.

Each response must not be a server error and must match the response schema where the document
declares one for its status. Not checked: that the status code is declared (the document declares
only 2xx and 422, not the 400/404/409 the API answers) nor the media type (exports stream JSONL/CSV).
`SHUHI_FUZZ_EXAMPLES` raises the examples per operation for a deeper run.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance

from gateway.app import create_app
from gateway.demo.upstream import UpstreamServer
from tests.conftest import ADMIN_TOKEN, POSTGRES_URL, UPSTREAM_KEYS, ServerThread, gateway_settings

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PRINCIPAL = "fuzz@example.co.jp"
MATERIAL = ("Project Kestrel: the hydrogen electrolyser stack runs at 82.4 percent efficiency with catalyst "
            "NX-7 on a titanium mesh, cooled by a closed glycol loop at 61 degrees; cost target 310 USD per kW.")
# Examples per operation in the fuzzing phase (the examples and coverage phases come on top).
MAX_EXAMPLES = int(os.environ.get("SHUHI_FUZZ_EXAMPLES", "25"))


@dataclass
class Seeded:
    """The objects the fuzz starts from (`ids` by parameter name); `ensure()` puts back what the fuzz removed."""

    url: str
    client: httpx.Client
    ids: dict[str, str] = field(default_factory=dict)
    gateway_key: str = ""

    def forget(self, path_parameters: dict[str, Any]) -> None:
        """After a successful DELETE (or destruction): the seeded objects it named are gone."""
        for name, value in path_parameters.items():
            if self.ids.get(name) == value:
                del self.ids[name]

    def ensure(self) -> None:
        c = self.client
        agreement = c.get(f"/admin/v1/agreements/{self.ids.get('agreement_id', 'none')}")
        if agreement.status_code != 200 or agreement.json().get("destroyed_at"):  # Article 8 destruction
            made = c.post("/admin/v1/agreements", json={
                "title": "Fuzz NDA", "counterparty": "Kestrel KK", "purpose": "evaluation",
                "effective_date": "2024-01-01", "term_years": 50, "survival_years": 5})
            assert made.status_code == 201, made.text
            self.ids = {k: v for k, v in self.ids.items() if k not in ("item_id", "consent_id", "request_id")}
            self.ids["agreement_id"] = made.json()["id"]
        if "item_id" not in self.ids:
            made = c.post(f"/admin/v1/agreements/{self.ids['agreement_id']}/items",
                          json={"title": "Kestrel spec", "category": "ai_technology", "text": MATERIAL})
            assert made.status_code == 201, made.text
            self.ids["item_id"] = made.json()["id"]
        if "principal_id" not in self.ids:
            made = c.post("/admin/v1/principals", json={"id": PRINCIPAL, "groups": ["research"]})
            assert made.status_code in (201, 409), made.text
            self.ids["principal_id"] = self.ids["principal"] = PRINCIPAL
            self.ids.pop("key_id", None)  # deleting the principal deleted its keys
        if "key_id" not in self.ids:
            made = c.post("/admin/v1/keys", json={"principal": PRINCIPAL})
            assert made.status_code == 201, made.text
            self.ids["key_id"], self.gateway_key = made.json()["id"], made.json()["key"]
        if "destination_id" not in self.ids:
            made = c.post("/admin/v1/destinations", json={
                "id": "fuzz-dest", "base_url": "http://127.0.0.1:9/v1", "api_format": "openai",
                "models": ["fuzz-model"], "third_party": True, "api_key_env": "FAKE_OPENAI_KEY"})
            assert made.status_code in (200, 201), made.text
            self.ids["destination_id"] = "fuzz-dest"
        if "consent_id" not in self.ids:
            made = c.post("/admin/v1/consents", json={
                "agreement_id": self.ids["agreement_id"], "item_ids": [self.ids["item_id"]],
                "destinations": ["fake-anthropic"], "purpose": "inference",
                "evidence": {"reference": "letter 2024-07"}, "granted_by": "Kestrel legal"})
            assert made.status_code == 201, made.text
            self.ids["consent_id"] = made.json()["id"]
        if "request_id" not in self.ids:  # a call refused for want of consent raises a consent request
            refused = httpx.post(self.url + "/v1/chat/completions",
                                 headers={"Authorization": f"Bearer {self.gateway_key}"}, timeout=30,
                                 json={"model": "fake-openai/gpt-4o-mini",
                                       "messages": [{"role": "user", "content": MATERIAL}]})
            request_id = refused.json().get("error", {}).get("consent_request_id")  # unless a fuzzed policy allows it
            if refused.status_code == 403 and request_id:
                self.ids["request_id"] = request_id
        if "token_id" not in self.ids:  # a spare token the fuzz may delete (never the one it authenticates with)
            made = c.post("/admin/v1/tokens", json={"role": "auditor"})
            assert made.status_code == 201, made.text
            self.ids["token_id"] = made.json()["id"]


def _store_url(backend: str, tmp: Path) -> Generator[str, None, None]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'shuhi.db'}"
        return
    schema = "t_" + secrets.token_hex(6)
    engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        # Commits need not wait for the disk here: the fuzz is about answers, not durability.
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}%20-csynchronous_commit%3Doff"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def seeded(request: pytest.FixtureRequest, upstream: UpstreamServer,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    urls = _store_url(request.param, tmp_path_factory.mktemp("fuzz"))
    server = ServerThread(create_app(gateway_settings(next(urls), upstream), environ=dict(UPSTREAM_KEYS)))
    server.start()
    client = httpx.Client(base_url=server.url, headers=AUTH, timeout=30)
    try:
        made = Seeded(url=server.url, client=client)
        made.ensure()
        yield made
    finally:
        client.close()
        server.stop()
        urls.close()


@pytest.fixture(scope="module")
def admin_schema(seeded: Seeded) -> Any:
    config = SchemathesisConfig.from_dict({})  # the defaults, whatever schemathesis.toml lies around
    return schemathesis.openapi.from_url(seeded.url + "/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("admin_schema")
ID_FIELDS = ("agreement_id", "item_id", "consent_id", "request_id", "principal_id", "key_id",
             "destination_id", "token_id", "principal")
# Inputs a store cannot hold, which Schemathesis's generators (almost) never produce: PostgreSQL's text
# takes no NUL character, and an instant outside the years 1-9999 in UTC cannot be read back into Python.
# The rules also compute with the dates they are given (term and survival years, the provisional window).
TIME_FIELDS = ("since", "until", "terminated_at", "disclosed_at", "written_notice_at", "valid_from", "valid_until")
EDGE_TIMES = ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00",
              "9999-12-31T00:00:00Z", "9999-12-15T00:00:00+09:00")
EDGE_DATES = ("0001-01-01", "9999-12-31", "9950-02-29")


def _string_slots(value: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every string in a JSON-like value."""
    slots: list[tuple[Any, Any]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, inner in items:
        if isinstance(inner, str):
            slots.append((value, key))
        else:
            slots.extend(_string_slots(inner))
    return slots


def _hostile(case: Any, rng: random.Random) -> None:
    """Now and then, put a NUL character or an edge-of-time instant where the generated case has a string."""
    if rng.random() < 0.15:
        slots = _string_slots(case.path_parameters or {}) + _string_slots(case.query or {})
        slots += _string_slots(case.body) if isinstance(case.body, dict | list) else []
        if slots:
            container, key = rng.choice(slots)
            container[key] = container[key][: rng.randint(0, len(container[key]))] + "\x00"
    for where in (case.query, case.body):
        if isinstance(where, dict):
            for name in TIME_FIELDS:
                if name in where and rng.random() < 0.2:
                    where[name] = rng.choice(EDGE_TIMES)
            if "effective_date" in where and rng.random() < 0.2:
                where["effective_date"] = rng.choice(EDGE_DATES)


@pytest.mark.slow
@pytest.mark.timeout(600)
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_admin_api_never_answers_5xx(case: Any, seeded: Seeded) -> None:
    # Choices drawn from the case itself, so that a failing case replays with the same changes (Hypothesis
    # seeds `random` alike for every example, and `@schema.given` would turn the coverage phase off).
    rng = random.Random(hashlib.sha256(repr((case.method, case.path, case.path_parameters, case.query,
                                                 case.body)).encode()).digest())
    for name in list(case.path_parameters or {}):
        if name in seeded.ids and rng.random() < 0.5:
            case.path_parameters[name] = seeded.ids[name]
    for where in (case.body, case.query):
        if isinstance(where, dict):
            for name in ID_FIELDS:
                if name in where and name in seeded.ids and rng.random() < 0.5:
                    where[name] = seeded.ids[name]
    _hostile(case, rng)
    response = case.call(headers=AUTH, timeout=30)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance], headers=AUTH)
    if response.status_code >= 300 or case.method.upper() not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    if case.method.upper() == "DELETE" or case.path.endswith("/destroy"):
        seeded.forget(case.path_parameters or {})
        seeded.ensure()
    # What the API accepted must not break the decisions that follow: scan the seeded material, and the
    # text just registered (a stored date the rules cannot compute with would fail every matching call).
    texts = [MATERIAL]
    if isinstance(case.body, dict) and isinstance(case.body.get("text"), str) and case.path.endswith("/items"):
        texts.append(case.body["text"])
    for text in texts:
        scanned = seeded.client.post("/admin/v1/scan", json={"text": text, "principal": PRINCIPAL})
        assert scanned.status_code < 500, f"POST /admin/v1/scan after {case.method} {case.formatted_path}: " \
                                          f"{scanned.status_code} {scanned.text}"
