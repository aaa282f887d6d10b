"""Aggregates for the console's dashboard: decisions per day by kind, top agreements, pending requests.

An extension of API.md. Counts only: ids, dates and numbers, never text.

Why it is shaped so: the audit log is append-only and its records are wide (their canonical
JSON), so counting a month of decisions reads a month of rows (about 150 ms for 50,000 records
on SQLite). A day that is over never changes again, except by pruning a prefix of the chain, so
its counts are kept in the process (`SettledDays`, dropped whenever the chain's anchor moves)
and only the current day is counted at each call. No index is added for this: every index costs
each append on the request path. The agreements are counted from the audit log's agreements
index alone, which only decision records and a destruction record ever name.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Date, Engine, cast, func, select
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit import DECISIONS, AuditUnavailable
from gateway.routes.admin.agreements import plain_parameters
from gateway.routes.admin.auth import Admin, require
from gateway.storage.audit_log import audit_checkpoints, audit_log, audit_log_agreements
from gateway.storage.tables import agreements, consent_requests

log = logging.getLogger("shuhi.stats")
router = APIRouter(tags=["stats"], dependencies=[Depends(plain_parameters)])
TOP = 10
WIDEST = 366  # days: the largest window `GET /stats` accepts
GRACE = dt.timedelta(minutes=10)  # a record stamped just before midnight may commit just after it
Counts = dict[str, dict[str, int]]


@dataclass
class SettledDays:
    """Decision counts of days that are over, valid while the chain's anchor (pruning) stays put."""

    anchor: int = -1
    days: Counts = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    warming: bool = False


def _day(engine: Engine) -> Any:
    """The UTC date of a record's `at` (SQLite stores the text `YYYY-MM-DD hh:mm:ss…`; PostgreSQL sessions are UTC)."""
    if engine.dialect.name == "sqlite":
        return func.substr(audit_log.c.at, 1, 10)
    return cast(audit_log.c.at, Date)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def count_decisions(engine: Engine, since: dt.datetime, until: dt.datetime | None = None) -> Counts:
    """`{date: {decision: count}}` of the decision records in [since, until)."""
    day = _day(engine).label("day")
    query = (select(day, audit_log.c.decision, func.count().label("n"))
             .where(audit_log.c.at >= since, audit_log.c.kind == "decision")
             .group_by(day, audit_log.c.decision))
    if until is not None:
        query = query.where(audit_log.c.at < until)
    out: Counts = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            key = row.day if isinstance(row.day, str) else row.day.isoformat()
            out.setdefault(key, {})[row.decision or "unknown"] = int(row.n)
    return out


def decisions_per_day(engine: Engine, first_day: dt.date, settled: SettledDays,
                      now: dt.datetime | None = None) -> Counts:
    """Counts from `first_day` on: settled days from `settled` (counted once), the rest now."""
    now = now or dt.datetime.now(dt.UTC)
    open_from = (now - GRACE).date()  # days before this one are over
    with engine.connect() as conn:
        anchor = int(conn.execute(select(func.coalesce(func.max(audit_checkpoints.c.seq), 0))).scalar_one())
    with settled.lock:
        if settled.anchor != anchor:
            settled.days.clear()
            settled.anchor = anchor
        missing = [first_day + dt.timedelta(days=n) for n in range((open_from - first_day).days)]
        missing = [d for d in missing if d.isoformat() not in settled.days]
        if missing:
            counted = count_decisions(engine, _midnight(missing[0]), _midnight(open_from))
            for offset in range((open_from - missing[0]).days):
                key = (missing[0] + dt.timedelta(days=offset)).isoformat()
                settled.days[key] = counted.get(key, {})
        out = {key: counts for key, counts in settled.days.items() if key >= first_day.isoformat()}
    out.update(count_decisions(engine, _midnight(max(first_day, open_from))))
    return out


def top_agreements(engine: Engine, since: dt.datetime, limit: int = TOP) -> list[dict[str, Any]]:
    """The agreements named by the most decision records from `since` on, with title and counterparty."""
    with engine.connect() as conn:
        first = conn.execute(select(func.min(audit_log.c.seq)).where(audit_log.c.at >= since)).scalar()
        if first is None:
            return []
        n = func.count().label("n")
        named = conn.execute(select(audit_log_agreements.c.agreement_id, n)
                             .where(audit_log_agreements.c.seq >= first)
                             .group_by(audit_log_agreements.c.agreement_id)).all()
        # Besides decisions, only the record of an agreement's destruction names it (gateway.destroy).
        destroyed = set(conn.execute(select(agreements.c.id).where(agreements.c.destroyed_at >= since)).scalars())
        counts = {r.agreement_id: int(r.n) - (r.agreement_id in destroyed) for r in named}
        ranked = sorted(((c, a) for a, c in counts.items() if c > 0), key=lambda p: (-p[0], p[1]))[:limit]
        facts = {r.id: r for r in conn.execute(select(agreements.c.id, agreements.c.title, agreements.c.counterparty)
                                               .where(agreements.c.id.in_([a for _, a in ranked])))}
    return [{"agreement_id": a, "title": facts[a].title if a in facts else None,
             "counterparty": facts[a].counterparty if a in facts else None, "decisions": c} for c, a in ranked]


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


def settled_days(state: Any) -> SettledDays:
    """The process's settled-day counts, kept on the app's state."""
    found = getattr(state, "settled_decision_days", None)
    if found is None:
        found = state.settled_decision_days = SettledDays()
    return found  # type: ignore[no-any-return]


def _warm(engine: Engine, settled: SettledDays) -> None:
    try:
        decisions_per_day(engine, dt.datetime.now(dt.UTC).date() - dt.timedelta(days=WIDEST - 1), settled)
    except Exception as exc:  # a store that is away: the dashboard counts on demand instead
        log.info("dashboard counts not prepared: %s", type(exc).__name__)


def prepare_in_background(state: Any) -> None:
    """Count the settled days of the widest window once, in a thread, when the console is opened:
    signing in takes the user longer, so the first dashboard finds them counted."""
    settled = settled_days(state)
    with settled.lock:
        if settled.warming:
            return
        settled.warming = True
    threading.Thread(target=_warm, args=(state.engine, settled), name="shuhi-dashboard-counts", daemon=True).start()


@router.get("/stats")
def stats(request: Request, days: int = Query(30, ge=1, le=WIDEST, description="days back, today included (UTC)"),
          _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    """`{since, days: [{date, allow, allow_marked, redact, consent_required, block}], totals,
    top_agreements, pending_consent_requests, audit: {head_seq}}` for the dashboard."""
    engine = request.app.state.engine
    today = dt.datetime.now(dt.UTC).date()
    first_day = today - dt.timedelta(days=days - 1)
    since = _midnight(first_day)
    try:
        per_day = decisions_per_day(engine, first_day, settled_days(request.app.state))
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
