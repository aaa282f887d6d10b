"""The admin API fuzzed with Schemathesis against its own OpenAPI document: no input yields a 5xx.

A real gateway (uvicorn in a thread, as in conftest.py) is started once per backend, seeded
with an agreement, an item, a principal with a key, a destination, a consent and a consent request,
and every operation of `<gateway>/openapi.json` is fed generated input: valid and invalid bodies,
query strings and path parameters (Schemathesis's examples, coverage and fuzzing phases). Path
parameters and the id fields of bodies are sometimes swapped for the ids of the seeded objects,
so that the handlers also run past their 404s on real objects.

Each response must not be a server error, and must conform to the response schema where the document
declares one (its status code and media type).
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings

import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance

from gateway.app import create_app
from gateway.demo.upstream import UpstreamServer
from tests.conftest import ADMIN_TOKEN, POSTGRES_URL, UPSTREAM_KEYS, ServerThread, gateway_settings

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MATERIAL = ("Project Kestrel: the hydrogen electrolyser stack runs at 82.4 percent efficiency with catalyst "
            "NX-7 on a titanium mesh, cooled by a closed glycol loop at 61 degrees; cost target 310 USD per kW.")
# Examples per operation in the fuzzing phase (the examples and coverage phases come on top).
MAX_EXAMPLES = int(os.environ.get("SHUHI_FUZZ_EXAMPLES", "25"))


@dataclass
class Seeded:
    """The objects the fuzz starts from; `ensure()` puts back what a fuzzed DELETE removed."""

    url: str
    client: httpx.Client
    ids: dict[str, str] = field(default_factory=dict)

    def ensure(self) -> None:
        c = self.client
        if "agreement_id" not in self.ids:
            agreement = c.post("/admin/v1/agreements", json={
                "id": "agr-fuzz", "title": "Fuzz NDA", "counterparty": "Kestrel KK", "purpose": "evaluation",
                "effective_date": "2024-01-01", "term_years": 50, "survival_years": 5})
            assert agreement.status_code == 201, agreement.text
            self.ids["agreement_id"] = agreement.json()["id"]
        if c.get(f"/admin/v1/items/{self.ids.get('item_id', 'none')}").status_code != 200:
            item = c.post(f"/admin/v1/agreements/{self.ids['agreement_id']}/items",
                          json={"title": "Kestrel spec", "category": "ai_technology", "text": MATERIAL})
            assert item.status_code == 201, item.text
            self.ids["item_id"] = item.json()["id"]
        if c.get("/admin/v1/principals/fuzz@example.co.jp").status_code != 200:
            made = c.post("/admin/v1/principals", json={"id": "fuzz@example.co.jp", "groups": ["research"]})
            assert made.status_code == 201, made.text
            self.ids["principal_id"] = self.ids["principal"] = "fuzz@example.co.jp"
        keys = c.get("/admin/v1/keys", params={"principal": "fuzz@example.co.jp"}).json()["data"]
        if not keys:
            made = c.post("/admin/v1/keys", json={"principal": "fuzz@example.co.jp"})
            assert made.status_code == 201, made.text
            self.ids["key_id"], self.ids["gateway_key"] = made.json()["id"], made.json()["key"]
        if c.get("/admin/v1/destinations/fuzz-dest").status_code != 200:
            made = c.post("/admin/v1/destinations", json={
                "id": "fuzz-dest", "base_url": "http://127.0.0.1:9/v1", "api_format": "openai",
                "models": ["fuzz-model"], "third_party": True, "api_key_env": "FAKE_OPENAI_KEY"})
            assert made.status_code == 201, made.text
            self.ids["destination_id"] = "fuzz-dest"
        if "consent_id" not in self.ids:
            made = c.post("/admin/v1/consents", json={
                "agreement_id": self.ids["agreement_id"], "item_ids": [self.ids["item_id"]],
                "destinations": ["fake-anthropic"], "purpose": "inference",
                "evidence": {"reference": "letter 2024-07"}, "granted_by": "Kestrel legal"})
            assert made.status_code == 201, made.text
            self.ids["consent_id"] = made.json()["id"]
        if "request_id" not in self.ids:  # a refused call raises a consent request
            refused = httpx.post(self.url + "/v1/chat/completions",
                                 headers={"Authorization": f"Bearer {self.ids['gateway_key']}"},
                                 json={"model": "fake-openai/gpt-4o-mini",
                                       "messages": [{"role": "user", "content": MATERIAL}]})
            assert refused.status_code == 403, refused.text
            self.ids["request_id"] = refused.json()["error"]["consent_request_id"]
        if "token_id" not in self.ids:  # a spare token: the fuzz may delete it, never the one it uses
            made = c.post("/admin/v1/tokens", json={"role": "auditor"})
            assert made.status_code == 201, made.text
            self.ids["token_id"] = made.json()["id"]


def _store_url(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'shuhi.db'}"
        return
    schema = "t_" + secrets.token_hex(6)
    engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture(scope="module", params=["sqlite"])
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
    config = SchemathesisConfig.from_dict({})
    return schemathesis.openapi.from_url(seeded.url + "/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("admin_schema")
ID_FIELDS = ("agreement_id", "item_id", "consent_id", "request_id", "principal_id", "key_id",
             "destination_id", "token_id", "principal")


@pytest.mark.timeout(600)
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_admin_api_never_answers_5xx(case: Any, seeded: Seeded) -> None:
    # `random` is seeded by Hypothesis for each example, so a failure replays with the same swaps.
    for name in list(case.path_parameters or {}):
        if name in seeded.ids and random.random() < 0.5:
            case.path_parameters[name] = seeded.ids[name]
    if isinstance(case.body, dict):
        for name in ID_FIELDS:
            if name in case.body and name in seeded.ids and random.random() < 0.5:
                case.body[name] = seeded.ids[name]
    response = case.call(headers=AUTH, timeout=30)
    if os.environ.get("FUZZ_LOG"):
        with open(os.environ["FUZZ_LOG"], "a") as f:
            f.write(f"{case.method} {case.path} {response.status_code}\n")
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance], headers=AUTH)
    if case.method.upper() == "DELETE" and response.status_code < 300:
        seeded.ensure()
