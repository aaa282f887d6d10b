"""`/admin/v1/audit`, `/audit/export`, `/audit/verify` on a real server: roles, filters, downloads, 4xx not 500."""

from __future__ import annotations

import csv
import io
import secrets
import typing
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request
from starlette.responses import Response

from gateway.audit import DECISIONS, FIELDS, KINDS, from_csv, verify_records
from gateway.errors import GatewayError
from gateway.keyring import keyed_hash
from gateway.routes.admin import audit as audit_routes
from gateway.storage import admin_tokens, audit_log
from gateway.storage.database import migrate, open_engine
from tests.conftest import ServerThread
from tests.test_audit_log import decision

SECRET = secrets.token_bytes(32)


@dataclass
class Served:
    url: str
    engine: sa.Engine
    tokens: dict[str, str]

    def client(self, role: str | None = "auditor") -> httpx.Client:
        headers = {"authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url + "/admin/v1", headers=headers, timeout=30)


def make_app(engine: sa.Engine) -> FastAPI:
    """The router as the lead mounts it, with the gateway's rendering of its errors."""
    app = FastAPI()
    app.include_router(audit_routes.router, prefix="/admin/v1")

    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return Response(orjson.dumps(exc.openai_body()), status_code=exc.status, media_type="application/json")

    app.add_exception_handler(GatewayError, gateway_error)
    app.state.engine, app.state.secret = engine, SECRET
    return app


@pytest.fixture
def served(database_url: str) -> Iterator[Served]:
    engine = open_engine(database_url)
    migrate(engine)
    tokens = {role: f"token-{role}-{secrets.token_hex(8)}" for role in ("admin", "legal", "auditor")}
    for role, token in tokens.items():
        admin_tokens.create_token(engine, role, keyed_hash(SECRET, token))
    audit_log.append_many_sync(engine, (decision(i) for i in range(45)))
    server = ServerThread(make_app(engine))
    server.start()
    try:
        yield Served(server.url, engine, tokens)
    finally:
        server.stop()
        engine.dispose()


def test_auditors_and_admins_may_read_the_log_and_no_one_else(served: Served) -> None:
    for role, status in (("auditor", 200), ("admin", 200), ("legal", 403), (None, 401)):
        with served.client(role) as client:
            for path in ("/audit", "/audit/export", "/audit/verify"):
                assert client.get(path).status_code == status, (role, path)


def test_pages_follow_the_cursor_and_filters_apply(served: Served) -> None:
    with served.client() as client:
        seen, cursor = [], None
        while True:
            body = client.get("/audit", params={"limit": 10, **({"cursor": cursor} if cursor else {})}).json()
            assert list(body) == ["data", "next_cursor"] and len(body["data"]) <= 10
            seen.extend(r["seq"] for r in body["data"])
            if (cursor := body["next_cursor"]) is None:
                break
        assert seen == list(range(1, 46))
        blocked = client.get("/audit", params={"decision": "block", "agreement_id": "nda-0",
                                               "principal": "user3@example.co.jp"}).json()["data"]
        assert [r["id"] for r in blocked] == [f"dec_{i:06d}test" for i in range(45)
                                              if i % 5 == 1 and i % 3 == 0 and i % 4 == 3]
        assert all(list(r) == list(FIELDS) for r in blocked)
        assert client.get("/audit", params={"since": "2999-01-01"}).json() == {"data": [], "next_cursor": None}
        assert len(client.get("/audit", params={"until": "2999-01-01T00:00:00Z"}).json()["data"]) == 45


@pytest.mark.parametrize("params, status, code", [
    ({"cursor": "not-a-seq"}, 400, "invalid_cursor"),
    ({"cursor": "9" * 40}, 400, "invalid_cursor"),
    ({"limit": 0}, 422, None),
    ({"limit": 100_000}, 422, None),
    ({"decision": "maybe"}, 422, None),
    ({"kind": "gossip"}, 422, None),
    ({"since": "yesterday"}, 422, None),
    ({"principal": "x" * 300}, 422, None),
])
def test_when_a_query_is_malformed_then_the_answer_is_a_4xx(served: Served, params: dict[str, object],
                                                             status: int, code: str | None) -> None:
    with served.client() as client:
        answer = client.get("/audit", params=params)
        assert answer.status_code == status, answer.text
        if code:
            assert answer.json()["error"]["code"] == code
        assert client.get("/audit/export", params={"format": "xml"}).status_code == 422
        assert client.get("/audit/verify", params={"expected_head": "abc"}).status_code == 422


def test_exports_are_attachments_that_round_trip(served: Served) -> None:
    with served.client() as client:
        as_jsonl = client.get("/audit/export", params={"format": "jsonl"})
        assert as_jsonl.status_code == 200 and as_jsonl.headers["content-type"] == "application/x-ndjson"
        assert as_jsonl.headers["content-disposition"].startswith('attachment; filename="shuhi-audit-')
        records = [orjson.loads(line) for line in as_jsonl.content.splitlines()]
        assert [r["seq"] for r in records] == list(range(1, 46)) and verify_records(records).ok
        as_csv = client.get("/audit/export", params={"format": "csv", "decision": "redact"})
        assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
        assert as_csv.headers["content-disposition"].endswith('.csv"')
        rows = [from_csv(row) for row in csv.DictReader(io.StringIO(as_csv.text))]
        assert [r["id"] for r in rows] == [r["id"] for r in records if r["decision"] == "redact"]
        assert rows == [{k: v for k, v in r.items() if v not in (None, [])} for r in records
                        if r["decision"] == "redact"]
        empty = client.get("/audit/export", params={"format": "csv", "principal": "nobody"})
        assert empty.text.splitlines() == [",".join(FIELDS)]


def test_verify_reports_the_chain_and_its_first_break(served: Served) -> None:
    with served.client("admin") as client:
        good = client.get("/audit/verify").json()
        assert good["ok"] and good["records"] == 45 and good["head_seq"] == 45 and len(good["head"]) == 64
        assert client.get("/audit/verify", params={"expected_head": good["head"]}).json()["ok"]
        with served.engine.begin() as conn:
            conn.execute(sa.delete(audit_log.audit_log).where(audit_log.audit_log.c.seq == 20))
        bad = client.get("/audit/verify").json()
        assert not bad["ok"] and bad["records"] == 44
        assert {k: bad["first_bad"][k] for k in ("seq", "reason")} == {"seq": 20, "reason": "removed"}


def test_when_the_log_cannot_be_read_then_the_answer_is_503(served: Served) -> None:
    with served.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE audit_log"))
    with served.client() as client:
        for path in ("/audit", "/audit/export", "/audit/verify"):
            answer = client.get(path)
            assert answer.status_code == 503 and answer.json()["error"]["code"] == "audit_unavailable", path


def test_the_query_choices_are_the_record_model_s() -> None:
    assert typing.get_args(audit_routes.Decision) == DECISIONS
    assert set(typing.get_args(audit_routes.Kind)) == set(KINDS)
