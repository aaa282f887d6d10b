"""Aggregates for the console's dashboard: decisions per day by kind, top agreements, pending requests.

An extension of API.md. Counts only: ids, dates and numbers, never text. Each figure is one
grouped query over the audit log's filter columns (`at`, `kind`, `decision`) and its agreements
index, so the dashboard stays fast on a log of any size within the window asked for.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Date, Engine, cast, func, select
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit import DECISIONS, AuditUnavailable
from gateway.routes.admin.agreements import plain_parameters
from gateway.routes.admin.auth import Admin, require
from gateway.storage.audit_log import audit_log, audit_log_agreements
from gateway.storage.tables import agreements, consent_requests

router = APIRouter(tags=["stats"], dependencies=[Depends(plain_parameters)])
TOP = 10


def _day(engine: Engine) -> Any:
    """The UTC date of a record's `at` (SQLite stores the text `YYYY-MM-DD hh:mm:ss…`; PostgreSQL sessions are UTC)."""
    if engine.dialect.name == "sqlite":
        return func.substr(audit_log.c.at, 1, 10)
    return cast(audit_log.c.at, Date)


def decisions_per_day(engine: Engine, since: dt.datetime) -> dict[str, dict[str, int]]:
    """`{date: {decision: count}}` of the decision records from `since` on."""
    day = _day(engine).label("day")
    query = (select(day, audit_log.c.decision, func.count().label("n"))
             .where(audit_log.c.at >= since, audit_log.c.kind == "decision")
             .group_by(day, audit_log.c.decision))
    out: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            key = row.day if isinstance(row.day, str) else row.day.isoformat()
            out.setdefault(key, {})[row.decision or "unknown"] = int(row.n)
    return out


def top_agreements(engine: Engine, since: dt.datetime, limit: int = TOP) -> list[dict[str, Any]]:
    """The agreements named by the most decision records from `since` on, with their titles and counterparties."""
    with engine.connect() as conn:
        first = conn.execute(select(func.min(audit_log.c.seq)).where(audit_log.c.at >= since)).scalar()
        if first is None:
            return []
        n = func.count().label("n")
        counted = (select(audit_log_agreements.c.agreement_id, n)
                   .join(audit_log, audit_log.c.seq == audit_log_agreements.c.seq)
                   .where(audit_log_agreements.c.seq >= first, audit_log.c.kind == "decision")
                   .group_by(audit_log_agreements.c.agreement_id).order_by(n.desc(), audit_log_agreements.c.agreement_id)
                   .limit(limit)).subquery()
        rows = conn.execute(select(counted.c.agreement_id, counted.c.n, agreements.c.title, agreements.c.counterparty)
                            .join(agreements, agreements.c.id == counted.c.agreement_id, isouter=True)
                            .order_by(counted.c.n.desc(), counted.c.agreement_id)).all()
    return [{"agreement_id": r.agreement_id, "title": r.title, "counterparty": r.counterparty, "decisions": int(r.n)}
            for r in rows]


def pending_requests(engine: Engine) -> dict[str, Any]:
    """How many consent requests wait, in all and per agreement."""
    n = func.count().label("n")
    with engine.connect() as conn:
        rows = conn.execute(select(consent_requests.c.agreement_id, n)
                            .where(consent_requests.c.status == "pending")
                            .group_by(consent_requests.c.agreement_id).order_by(n.desc())).all()
    return {"total": sum(int(r.n) for r in rows),
            "by_agreement": [{"agreement_id": r.agreement_id, "pending": int(r.n)} for r in rows]}


def audit_head(engine: Engine) -> dict[str, int]:
    """The newest sequence number (0 for an empty log), so a reader can page backwards from it."""
    with engine.connect() as conn:
        head = conn.execute(select(func.max(audit_log.c.seq))).scalar()
    return {"head_seq": int(head or 0)}


@router.get("/stats")
def stats(request: Request, days: int = Query(30, ge=1, le=366, description="days back, today included (UTC)"),
          _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    """`{since, days: [{date, allow, allow_marked, redact, consent_required, block}], totals,
    top_agreements, pending_consent_requests, audit}` for the dashboard."""
    engine = request.app.state.engine
    today = dt.datetime.now(dt.UTC).date()
    first_day = today - dt.timedelta(days=days - 1)
    since = dt.datetime.combine(first_day, dt.time(), dt.UTC)
    try:
        per_day = decisions_per_day(engine, since)
        top = top_agreements(engine, since)
        pending = pending_requests(engine)
        head = audit_head(engine)
    except SQLAlchemyError as exc:
        raise AuditUnavailable(f"監査ログを読めません。 / The audit log cannot be read ({type(exc).__name__}).") \
            from exc
    series = []
    for offset in range(days):
        date = (first_day + dt.timedelta(days=offset)).isoformat()
        counts = per_day.get(date, {})
        series.append({"date": date, **{kind: counts.get(kind, 0) for kind in DECISIONS}})
    totals = {kind: sum(day[kind] for day in series) for kind in DECISIONS}
    return {"since": since.isoformat(), "days": series, "totals": totals, "top_agreements": top,
            "pending_consent_requests": pending, "audit": head}
