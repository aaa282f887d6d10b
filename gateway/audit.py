"""The audit record and its hash chain: ids, hashes, spans and decisions, never text (Article 5(3)).

A record is a plain dict whose keys are `FIELDS`; an absent key, null, "", [] and {} all mean "none".

    v, seq, id, at, kind          schema version 1; global order; `dec_…` | `out_…` | `adm_…`; UTC time;
                                  `decision` (before forwarding) | `outcome` (after the upstream) | `admin`
    principal, key_id, endpoint, destination, model
    decision, code, articles, agreements, matches, purpose, consent_id, consent_request_id, body_hash
    decision_id, upstream_status, usage, latency_ms, marking, derived_item_id     (outcomes)
    actor, actor_role, action, target, details                                    (admin changes)
    prev_hash, hash

`hash` is SHA-256 over the canonical serialisation of every other field that is not none
(orjson, keys sorted at every depth), `prev_hash` and `seq` included; `prev_hash` of the first
record is `GENESIS`. `verify_chain` walks records in order and names the first bad one: `edited`,
`removed`, `reordered`, `inserted`, or at the end `truncated` (when an expected head is given).
The chain is unkeyed: whoever can rewrite the store can recompute every later hash, so keep the
head somewhere else (e.g. destruction certificates, exports, a ticket) and pass it back as
`expected_head`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.domain import Match
from gateway.errors import ServiceUnavailable

VERSION = 1
GENESIS = "0" * 64
KINDS = {"decision": "dec", "outcome": "out", "admin": "adm"}
DECISIONS = ("allow", "allow_marked", "redact", "consent_required", "block")
# Field name -> type used by the CSV codec: str | int | float | json.
FIELDS: dict[str, str] = {
    "v": "int", "seq": "int", "id": "str", "at": "str", "kind": "str",
    "principal": "str", "key_id": "str", "endpoint": "str", "destination": "str", "model": "str",
    "decision": "str", "code": "str", "articles": "json", "agreements": "json", "matches": "json",
    "purpose": "json", "consent_id": "str", "consent_request_id": "str", "body_hash": "str",
    "decision_id": "str", "upstream_status": "int", "usage": "json", "latency_ms": "float",
    "marking": "json", "derived_item_id": "str",
    "actor": "str", "actor_role": "str", "action": "str", "target": "str", "details": "json",
    "prev_hash": "str", "hash": "str",
}
MATCH_KEYS = frozenset({"agreement_id", "item_id", "kind", "category", "entity", "location", "start", "end",
                        "encoding", "score"})
_ACCEPTED = {name: kind for name, kind in FIELDS.items() if name not in ("seq", "prev_hash", "hash")}  # the writer's
_ACCEPTED.update(v="skip", at="skip", articles="ids", agreements="ids", matches="matches")  # `at` is read apart
_DECISIONS = frozenset((None, *DECISIONS))
_LISTS = frozenset({"articles", "agreements", "matches"})
_COLUMN = {name: i for i, name in enumerate(FIELDS)}
_LIMITS = {"id": 64, "principal": 256, "kind": 16, "decision": 24}
_MAX_STR = 1024
_STR_LIMITS = {name: _LIMITS.get(name, _MAX_STR) for name, kind in _ACCEPTED.items() if kind == "str"}
_MAX_JSON = 8192  # bytes of one json field but matches: details are a few ids, not documents
Record = dict[str, Any]


class AuditUnavailable(ServiceUnavailable):
    """The audit log cannot be written: the request must be refused (fail closed)."""

    code = "audit_unavailable"


def new_record_id(kind: str) -> str:
    """`dec_…`, `out_…` or `adm_…`; time-ordered like decision ids.

    The tail needs to be unique, not secret (ids are shown in the log): `random` reseeds itself in a
    forked worker and costs a twentieth of `secrets` (a system call) on the request path.
    """
    return f"{KINDS[kind]}_{time.time_ns() // 1_000_000:012x}{random.getrandbits(64):016x}"


def body_hash(secret: bytes, body: bytes) -> str:
    """The record's `body_hash`: HMAC-SHA256 of the request body under the deployment secret, so the
    log can show two requests were identical without letting anyone confirm a guessed body."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def format_at(value: dt.datetime) -> str:
    """The one spelling of a time in records: `2025-04-01T09:30:00.000000Z` (naive means UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    elif value.tzinfo is not dt.UTC:
        value = value.astimezone(dt.UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


_second: list[Any] = [None, ""]  # the last whole second formatted by `now_at`, and its text


def now_at() -> str:
    """`format_at(now)`, a tenth of its cost: the text of the current second is made once per second."""
    micros = time.time_ns() // 1000
    second, fraction = divmod(micros, 1_000_000)
    if second != _second[0]:
        _second[1] = dt.datetime.fromtimestamp(second, dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")
        _second[0] = second
    return f"{_second[1]}.{fraction:06d}Z"


def parse_at(value: str) -> dt.datetime:
    """The aware datetime of a record's `at`."""
    return dt.datetime.fromisoformat(value).astimezone(dt.UTC)


def match_entry(match: Match) -> dict[str, Any]:
    """What a record keeps of a match: which agreement, item or entity, where; never the text."""
    entry = {"agreement_id": match.agreement_id, "item_id": match.item_id, "kind": match.kind,
             "category": match.category, "entity": match.entity, "location": match.location,
             "start": match.start, "end": match.end, "encoding": match.encoding}
    return {k: v for k, v in entry.items() if v is not None}


def _json_value(name: str, value: Any) -> Any:
    try:
        encoded = orjson.dumps(value)
    except TypeError as exc:
        raise ValueError(f"audit field {name}: not JSON ({exc})") from None
    if len(encoded) > _MAX_JSON:
        raise ValueError(f"audit field {name}: over {_MAX_JSON} bytes (records hold ids and hashes, not documents)")
    return orjson.loads(encoded)  # tuples become lists, NaN null: as they will read back


def _flat_counts(value: Any) -> bool:
    """A small object of integer counts (`usage`): valid JSON as it is, no round trip needed."""
    return (type(value) is dict and len(value) <= 32
            and all(type(k) is str and len(k) <= 64 and type(v) is int and -2**53 < v < 2**53
                    for k, v in value.items()))


def _match(entry: Any) -> dict[str, Any]:
    if type(entry) is not dict:
        entry = match_entry(entry) if isinstance(entry, Match) else dict(entry)
    if not entry.keys() <= MATCH_KEYS:
        raise ValueError(f"audit field matches: entries hold only {sorted(MATCH_KEYS)}")
    for key, item in entry.items():
        kind = type(item)
        if not (kind is int or item is None or (kind is str and len(item) <= 256)
                or (kind is float and math.isfinite(item))):
            raise ValueError(f"audit field matches.{key}: an id, label or offset")
    return entry if None not in entry.values() else {k: v for k, v in entry.items() if v is not None}


def _ids(name: str, value: Any) -> list[str] | None:
    if isinstance(value, str) or not all(type(v) is str and len(v) <= 128 for v in value):
        raise ValueError(f"audit field {name}: a list of ids")
    return list(dict.fromkeys(value)) or None


def _scalar(name: str, kind: str, value: Any) -> Any:
    if kind == "str":
        if type(value) is not str or len(value) > _LIMITS.get(name, _MAX_STR):
            raise ValueError(f"audit field {name}: a string of at most {_LIMITS.get(name, _MAX_STR)} characters")
        return value or None
    if kind == "int":
        if type(value) is not int or abs(value) >= 2**63:
            raise ValueError(f"audit field {name}: an integer")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"audit field {name}: a finite number")
    return round(float(value), 3)


def prepare(fields: Mapping[str, Any], now: dt.datetime | None = None) -> Record:
    """Validate a record's fields and fill `v`, `id`, `at`; the writer adds `seq`, `prev_hash`, `hash`.

    Raises ValueError for unknown fields, wrong types, or matches carrying more than ids and offsets.
    Empty strings, lists and objects become null (absent); `latency_ms` keeps three decimals.
    Two records per call pass through here on the event loop, so the common shapes (an id within its
    limit, an empty list, an int, a finite float) are accepted inline; anything else takes the
    detailed checks, which also word the complaint.
    """
    record: Record = {"v": VERSION}
    for name, value in fields.items():
        if value is None:
            continue
        kind = _ACCEPTED.get(name, "unknown")
        if kind == "str":  # the common case first: most fields are ids
            if type(value) is str and len(value) <= _STR_LIMITS[name]:
                if value:
                    record[name] = value
            else:
                record[name] = _scalar(name, kind, value)
        elif kind == "skip":
            continue
        elif kind == "ids":
            if type(value) is list and not value:
                continue
            ids = _ids(name, value)
            if ids:
                record[name] = ids
        elif kind == "matches":
            if type(value) is list and not value:
                continue
            matches = [_match(entry) for entry in value]
            if matches:
                record[name] = matches
        elif kind == "int" and type(value) is int and -2**63 < value < 2**63:
            record[name] = value
        elif kind == "float" and type(value) is float and math.isfinite(value):
            record[name] = round(value, 3)
        elif kind == "json":
            if (type(value) is list or type(value) is dict) and not value:
                continue
            if not _flat_counts(value):  # token usage, the common case, reads back as it is
                value = _json_value(name, value)
            if value != [] and value != {} and value is not None:
                record[name] = value
        elif kind != "unknown":
            record[name] = _scalar(name, kind, value)
        else:
            raise ValueError(f"audit field not accepted here: {name}")
    kind = record.get("kind")
    if kind not in KINDS:
        raise ValueError(f"audit field kind: one of {sorted(KINDS)}")
    if record.get("decision") not in _DECISIONS:
        raise ValueError(f"audit field decision: one of {DECISIONS}")
    at = fields.get("at")
    if isinstance(at, str):
        at = parse_at(at)
    if isinstance(at, dt.datetime) or now is not None:
        record["at"] = format_at(at if isinstance(at, dt.datetime) else now)  # type: ignore[arg-type]
    else:
        record["at"] = now_at()
    if "id" not in record:
        record["id"] = new_record_id(kind)
    return record


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes the hash covers: every field but `hash` that is not null, [] or {}, keys sorted."""
    return orjson.dumps({k: v for k, v in record.items() if k != "hash" and v is not None and v != [] and v != {}},
                        option=orjson.OPT_SORT_KEYS)


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of `canonical(record)`."""
    return hashlib.sha256(canonical(record)).hexdigest()


def chain(prepared: Record, seq: int, prev_hash: str) -> tuple[Record, bytes]:
    """Place a prepared record after `prev_hash` at `seq`: the sealed record and its canonical bytes."""
    record = {**prepared, "seq": seq, "prev_hash": prev_hash}
    body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)  # prepared records hold no nulls
    record["hash"] = hashlib.sha256(body).hexdigest()
    return record, body


def complete(record: Mapping[str, Any]) -> Record:
    """Every field of `FIELDS`, in that order, absent ones as None or [] (the shape the API shows)."""
    full = {name: [] if name in _LISTS else None for name in FIELDS}
    full.update(record)
    return full


def csv_line(record: Mapping[str, Any]) -> str:
    """One CSV line (RFC 4180 quoting, `\\n` ends it) in `FIELDS` order: none is empty, lists and objects JSON.

    Built by hand rather than by `csv.writer`: only the few fields present cost anything.
    """
    cells = [""] * len(FIELDS)
    for name, value in record.items():
        column = _COLUMN.get(name)
        if column is None or value is None:
            continue
        kind = FIELDS[name]
        if kind == "str":
            if '"' in value or "," in value or "\n" in value or "\r" in value:
                value = '"' + value.replace('"', '""') + '"'
        elif kind == "json":
            value = '"' + orjson.dumps(value).decode().replace('"', '""') + '"'
        else:
            value = repr(value)
        cells[column] = value
    return ",".join(cells) + "\n"


CSV_HEADER = ",".join(FIELDS) + "\n"


def from_csv(row: Mapping[str, str]) -> Record:
    """The record of one exported CSV row (a `csv.DictReader` row)."""
    record: Record = {}
    for name, kind in FIELDS.items():
        cell = row.get(name, "")
        if cell == "":
            continue
        record[name] = {"str": str, "int": int, "float": float, "json": orjson.loads}[kind](cell)
    return record


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where a chain starts: after `seq` whose hash was `hash` (GENESIS at 0, or a retention checkpoint)."""

    seq: int = 0
    hash: str = GENESIS


@dataclass(frozen=True, slots=True)
class Link:
    """One record as found: the position the store files it under and whether it is intact."""

    position: int
    record: Mapping[str, Any]
    intact: bool  # its content hashes to its `hash`, and the store's columns agree with the content


@dataclass(frozen=True, slots=True)
class Broken:
    """The first place the chain is wrong; `seq` is the position, `id` the record there (if any)."""

    seq: int
    id: str | None
    reason: str  # edited | removed | reordered | inserted | truncated | anchor_unconfirmed
    detail: str


@dataclass(frozen=True, slots=True)
class Verification:
    """Result of a walk: records checked, the last good head, and the first break if any."""

    records: int
    head: str
    head_seq: int
    first_bad: Broken | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def _judge(x: Link, prev: Link | None, nxt: Link | None, p: int, head: str) -> Broken | None:
    """Why `x` cannot follow `head` at position `p` (None when it can); one record of lookahead."""
    rec, rid = x.record, x.record.get("id")
    if not x.intact:
        return Broken(x.position, rid, "edited", "content does not match its hash or its columns")
    s, link = rec.get("seq"), rec.get("prev_hash")
    if link == head:
        if s == p == x.position:
            return None
        if s == p:
            return Broken(p, rid, "reordered", f"record {p} is filed at position {x.position}")
        return Broken(x.position, rid, "edited", f"sequence number rewritten to {s}")
    if prev is not None and link == prev.record.get("prev_hash"):  # two records claim one predecessor
        if s == prev.record.get("seq"):
            return Broken(prev.position, prev.record.get("id"), "inserted", "a record was put before this one")
        return Broken(x.position, rid, "inserted", "claims the same predecessor as the record before it")
    if nxt is not None and nxt.record.get("prev_hash") == head:  # the true successor comes later
        if link == nxt.record.get("hash"):
            return Broken(p, rid, "reordered", f"records {p} and {nxt.position} are swapped")
        return Broken(x.position, rid, "inserted", "does not follow from the record before it")
    if isinstance(s, int) and s > p:
        if x.position != s and not (nxt is None or nxt.record.get("prev_hash") == rec.get("hash")):
            return Broken(p, rid, "reordered", f"record {s} is filed at position {x.position}")
        return Broken(p, None, "removed", f"records {p}..{s - 1} are missing before {rid}")
    if nxt is not None and nxt.record.get("prev_hash") == rec.get("hash") and prev is not None:
        return Broken(prev.position, prev.record.get("id"), "edited", "rewritten with a recomputed hash")
    return Broken(x.position, rid, "inserted", "does not follow from the record before it")


def verify_chain(links: Iterable[Link], anchor: Anchor | None = None, expected_head: str | None = None,
                 confirm_anchor: bool = False) -> Verification:
    """Walk `links` in order from `anchor`; stop at the first break. Memory stays constant.

    `expected_head`: a hash kept elsewhere; if no record carries it, the tail was cut (`truncated`).
    `confirm_anchor`: a retention anchor must be named by a later `audit.prune` admin record.
    """
    anchor = anchor or Anchor()
    p, head, count = anchor.seq + 1, anchor.hash, 0
    head_seen = expected_head is None or expected_head == anchor.hash
    confirmed = not confirm_anchor or anchor.seq == 0
    it: Iterator[Link] = iter(links)
    prev, x = None, next(it, None)
    while x is not None:
        nxt = next(it, None)
        broken = _judge(x, prev, nxt, p, head)
        if broken is not None:
            return Verification(count, head, p - 1, broken)
        head, count, p, prev = str(x.record["hash"]), count + 1, p + 1, x
        head_seen = head_seen or head == expected_head
        if not confirmed and x.record.get("action") == "audit.prune":
            details = x.record.get("details") or {}
            confirmed = details.get("anchor_seq") == anchor.seq and details.get("anchor_hash") == anchor.hash
        x = nxt
    if not head_seen:
        return Verification(count, head, p - 1, Broken(p, None, "truncated",
                            f"no record carries the expected head; the log ends at {p - 1}"))
    if not confirmed:
        return Verification(count, head, p - 1, Broken(anchor.seq, None, "anchor_unconfirmed",
                            "no audit.prune record names the retention anchor"))
    return Verification(count, head, p - 1)


def verify_records(records: Iterable[Mapping[str, Any]], anchor: Anchor | None = None,
                   expected_head: str | None = None) -> Verification:
    """Verify exported records (JSONL lines or `from_csv` rows) in file order.

    For a slice that does not start at seq 1, pass `Anchor(first_seq - 1, first_prev_hash)`.
    """
    links = (Link(r.get("seq", -1), r, record_hash(r) == r.get("hash")) for r in records)
    return verify_chain(links, anchor, expected_head)
