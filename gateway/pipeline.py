"""One request's way through the gateway, step by step (PRODUCT.md), failing closed.

    authenticate → parse → route → extract → scan → decide → (consent request) → audit
    → refuse | redact → forward → mark the answer, register it as a derived item → audit the outcome

Every store and client arrives in `Ports`; nothing here knows HTTP frameworks or SQL.
A step that raises stops the request: nothing is forwarded that was not decided and audited.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson

from gateway import metrics, telemetry
from gateway.authenticate import KeyCache, KeyLookup, authenticate
from gateway.decide import DecisionInput, UnscannablePart, evaluate
from gateway.domain import ApiFormat, Decision, DecisionKind, Destination, Endpoint, Match, Principal, TextPart
from gateway.errors import ConfidentialityViolation, InvalidRequest, NotFound, ServiceUnavailable, UpstreamError
from gateway.extract import Extraction, Unscannable, extract, parse_body
from gateway.facts import FactsHolder
from gateway.forward import Forwarder, UpstreamResponse, UpstreamStream
from gateway.mark import Marking, StreamWatcher, add_label, output_text
from gateway.policy.evaluation import ConsentScope, Evaluation
from gateway.policy.messages import render_label, render_refusal
from gateway.pii.lookup import Lookup, lookup_for
from gateway.pii.placeholders import Placeholders, StreamRestorer, redact_payload
from gateway.policy.schema import Policy
from gateway.ratelimit import Limiter
from gateway.redact import placeholder
from gateway.routing import Router
from gateway.uploads import Upload, file_extraction, parse_upload

log = logging.getLogger("shuhi")
INLINE_SCAN_CHARS = 64_000  # larger requests are scanned in a worker thread, so the event loop never stalls
MIN_DERIVED_CHARS = 40  # shorter answers hold too little to fingerprint as a derived item


@dataclass(slots=True)
class Ports:
    """Everything the pipeline talks to, injected so tests and replicas can swap them."""

    secret: bytes
    key_cache: KeyCache
    lookup_key: KeyLookup
    router: Router
    forwarder: Forwarder
    facts: FactsHolder
    policy: Callable[[], Policy]
    scan: Callable[[Sequence[TextPart]], list[Match]]
    scan_for: Callable[[str, Sequence[TextPart]], list[Match]]
    register_derived: Callable[[DerivedOutput], Awaitable[tuple[str, ...]]]
    open_consent_request: Callable[[ConsentScope, str, str], Awaitable[str]]
    audit: Callable[[dict[str, Any]], Awaitable[None]]
    audit_later: Callable[[dict[str, Any]], None]
    record_upload: Callable[[str, str, str, str, str, list[dict[str, Any]]], Awaitable[None]]
    find_upload: Callable[[str], Awaitable[dict[str, Any] | None]]
    files_destination: str | None = None
    limiter: Limiter | None = None  # request rates and token quotas (none configured: no limits)
    find_pii: Callable[[Sequence[TextPart], Lookup], list[Match]] | None = None  # personal information analyzer


@dataclass(frozen=True, slots=True)
class DerivedOutput:
    """An answer generated from confidential input, to register under each marked agreement (Article 4(3))."""

    text: str
    agreements: tuple[str, ...]
    categories: tuple[str, ...]
    decision_id: str
    item_ids: tuple[str, ...]


@dataclass(slots=True)
class Inspection:
    """Where a call goes and what it would disclose."""

    destination: Destination
    payload: dict[str, Any] | None
    extraction: Extraction
    upload: Upload | None = None
    training: bool = False
    inherited: list[Match] = field(default_factory=list)
    rewritten: bool = False


@dataclass(slots=True)
class ProviderCall:
    """What a client sent to a provider endpoint, before anything was trusted."""

    decision_id: str
    endpoint: Endpoint
    method: str
    path: str
    key: str | None
    body: bytes
    headers: dict[str, str]
    destination_hint: str | None = None

    @property
    def api_format(self) -> ApiFormat:
        return self.endpoint.api_format


@dataclass(slots=True)
class Outcome:
    """The decision and the destination's answer, marked where Article 4(3) asks for it."""

    decision: Decision
    principal: Principal
    destination: Destination
    answer: UpstreamResponse | UpstreamStream
    marking: Marking | None = None
    payload: dict[str, Any] | None = field(default=None)


def new_decision_id() -> str:
    """Time-ordered, so audit records sort by id as they sort by time."""
    return f"dec_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def _files_destination(call: ProviderCall, ports: Ports) -> Destination:
    destination_id = call.destination_hint or ports.files_destination
    if not destination_id:
        raise InvalidRequest(
            "ファイルの送信先がありません。X-Shuhi-Destination ヘッダーで接続先を指定してください。 / "
            "No destination for this file: name one in the X-Shuhi-Destination header.",
            code="destination_required")
    destination = ports.router.get(destination_id)
    if destination is None or destination.api_format is not ApiFormat.OPENAI:
        raise NotFound(f"接続先 '{destination_id}' はありません。 / There is no destination '{destination_id}'.",
                       code="destination_not_found")
    return destination


async def _scan(principal: Principal, parts: Sequence[TextPart], ports: Ports) -> list[Match]:
    with metrics.SCAN_SECONDS.time(), telemetry.span("shuhi.scan"):
        if sum(len(p.text) for p in parts) <= INLINE_SCAN_CHARS:
            return ports.scan_for(principal.id, parts)
        return await anyio.to_thread.run_sync(ports.scan_for, principal.id, parts)


def pii_kind(destination: Destination, training: bool) -> str:
    """The policy column for PII, as `destination_kind` reads it (training first)."""
    if training or destination.trains_on_inputs:
        return "training"
    return "third_party" if destination.third_party else "internal"


async def find_pii(parts: Sequence[TextPart], destination: Destination, training: bool, ports: Ports
                   ) -> list[Match]:
    """Personal information (Article 2(1)(4)) in every text part, analyzed in a worker thread.

    Fails closed: a policy that asks for PII with no analyzer, or an analyzer that
    fails, refuses the request (503) before anything is forwarded.
    """
    lookup = lookup_for(ports.policy().pii, pii_kind(destination, training)) if parts else None
    if lookup is None:
        return []
    unavailable = ServiceUnavailable(
        "個人情報（顧客情報）の検査ができないため、送信しませんでした（第2条第1項第4号）。 / "
        "Personal information (customer information) could not be checked, so nothing was sent "
        "(Article 2(1)(4)).", code="pii_unavailable")
    if ports.find_pii is None:
        raise unavailable
    try:
        return await anyio.to_thread.run_sync(ports.find_pii, parts, lookup)
    except Exception as exc:  # the error's text may quote the prompt: only its type is logged
        log.error("PII analysis failed (%s); request refused", type(exc).__name__)
        raise unavailable from None


def _redact(payload: dict[str, Any], evaluation: Evaluation, policy: Policy) -> Placeholders | None:
    """Replace the spans to redact; PII the policy marks `reversible` gets numbered placeholders to restore."""
    kind = evaluation.destination_kind

    def reversible(match: Match) -> bool:
        return match.kind == "pii" and policy.pii.action_for(match.entity, kind) == "reversible"

    return redact_payload(payload, evaluation.redactions, reversible, placeholder) or None


def match_json(match: Match) -> dict[str, Any]:
    """A match as API.md and the audit log show it: ids and spans, never text."""
    found: dict[str, Any] = {"agreement_id": match.agreement_id, "item_id": match.item_id,
                             "category": match.category, "kind": match.kind, "location": match.location,
                             "start": match.start, "end": match.end}
    if match.entity:
        found["entity"] = match.entity
    if match.encoding:
        found["encoding"] = match.encoding
    return found


def _stored_match(found: dict[str, Any]) -> Match:
    return Match(kind=found["kind"], location=found["location"], start=found["start"], end=found["end"],
                 agreement_id=found.get("agreement_id"), item_id=found.get("item_id"),
                 category=found.get("category"), entity=found.get("entity"), score=1.0, item_coverage=1.0,
                 request_coverage=1.0)


def _refusal(evaluation: Evaluation, ports: Ports, destination: Destination) -> ConfidentialityViolation:
    decision = evaluation.decision
    message = render_refusal(decision, ports.facts.current.agreements, ports.policy(), destination.id)
    extra: dict[str, Any] = {"articles": list(decision.articles), "decision_id": decision.id,
                             "matches": [match_json(m) for m in decision.matches]}
    if decision.consent_request_id:
        extra["consent_request_id"] = decision.consent_request_id
    return ConfidentialityViolation(message, code=decision.code or "blocked", extra=extra)


def decision_record(call: ProviderCall, principal: Principal, destination: Destination | None,
                    decision: Decision, model: str | None, ports: Ports) -> dict[str, Any]:
    """The audit record written before forwarding (ids, hashes and spans only)."""
    from gateway.keyring import keyed_hash

    agreements = ports.facts.current.agreements
    return {
        "id": decision.id, "kind": "decision", "principal": principal.id, "key_id": principal.key_id,
        "endpoint": call.endpoint.value, "destination": destination.id if destination else None, "model": model,
        "decision": decision.kind.value, "code": decision.code, "articles": list(decision.articles),
        "agreements": list(decision.agreements), "matches": [match_json(m) for m in decision.matches],
        "consent_id": decision.consent_id, "consent_request_id": decision.consent_request_id,
        "purpose": [agreements[a].purpose for a in decision.agreements if a in agreements],
        "body_hash": keyed_hash(ports.secret, call.body.decode("utf-8", "surrogateescape")),
    }


async def _inspect(call: ProviderCall, ports: Ports) -> Inspection:
    """Route the call and collect what it would disclose: its texts, unscannable parts, inherited matches."""
    if call.endpoint is Endpoint.FILES:
        destination = _files_destination(call, ports)
        upload = parse_upload(call.body, call.headers.get("content-type", ""))
        return Inspection(destination, None, file_extraction(upload), upload, training=upload.purpose == "fine-tune")
    payload = parse_body(call.endpoint, call.body)
    destination, upstream_model = ports.router.resolve(payload["model"], call.api_format)
    rewritten = upstream_model != payload["model"]
    payload["model"] = upstream_model
    if call.endpoint is not Endpoint.FINE_TUNING_JOBS:
        return Inspection(destination, payload, extract(payload), rewritten=rewritten)
    inspection = Inspection(destination, payload, Extraction(), training=True, rewritten=rewritten)
    for name in ("training_file", "validation_file"):
        file_id = payload.get(name)
        if not isinstance(file_id, str):
            continue
        seen = await ports.find_upload(file_id)
        if seen is None:  # a file the gateway never saw cannot be vouched for (Article 4(1))
            inspection.extraction.unscannable.append(Unscannable(name, "file"))
        else:
            inspection.inherited += [_stored_match(m) for m in seen["matches"]]
    return inspection


async def run(call: ProviderCall, ports: Ports) -> Outcome:
    """Authenticate, inspect, decide, audit, then refuse or forward and mark."""
    started = time.perf_counter()
    principal = await authenticate(call.key, ports.secret, ports.key_cache, ports.lookup_key)
    if ports.limiter is not None:
        await ports.limiter.admit(principal)  # 429 when spent; 503 when the counters cannot be reached
    seen = await _inspect(call, ports)
    destination, payload, extraction = seen.destination, seen.payload, seen.extraction
    matches = seen.inherited + await _scan(principal, extraction.parts, ports)
    matches += await find_pii(seen.extraction.parts, seen.destination,
                              seen.training or call.endpoint is Endpoint.FINE_TUNING_JOBS, ports)
    facts = ports.facts.current
    policy = ports.policy()
    evaluation = evaluate(DecisionInput(
        decision_id=call.decision_id, principal=principal, destination=destination, endpoint=call.endpoint,
        matches=matches, now=dt.datetime.now(dt.UTC), agreements=facts.agreements, items=facts.items,
        consents=facts.consents, training=seen.training,
        unscannable=[UnscannablePart(u.location, u.kind) for u in extraction.unscannable]), policy)
    decision = evaluation.decision
    if evaluation.consent_possible:
        scope = evaluation.consent_scopes[0]
        request_id = await ports.open_consent_request(scope, principal.id, decision.id)
        decision = dataclasses.replace(decision, consent_request_id=request_id)
        evaluation = dataclasses.replace(evaluation, decision=decision)
    if decision.kind is DecisionKind.REDACT and call.endpoint is Endpoint.FILES:
        decision = dataclasses.replace(decision, kind=DecisionKind.BLOCK, code="blocked")  # files cannot be cut
        evaluation = dataclasses.replace(evaluation, decision=decision)
    model = payload.get("model") if payload else None
    await ports.audit(decision_record(call, principal, destination, decision, model, ports))  # raises 503
    if evaluation.refused:
        raise _refusal(evaluation, ports, destination)
    body = call.body
    restore: Placeholders | None = None  # reversible placeholders: in memory for this request only
    if payload is not None and (decision.kind is DecisionKind.REDACT or seen.rewritten):
        if decision.kind is DecisionKind.REDACT:
            restore = _redact(payload, evaluation, policy)
        body = orjson.dumps(payload)
    stream = bool(payload and payload.get("stream") is True)
    with metrics.UPSTREAM_SECONDS.labels(destination.id).time(), telemetry.span("shuhi.forward"):
        answer = await ports.forwarder.send(destination, call.method, call.path, body, call.headers, stream=stream)
    marked = evaluation.marked_agreements
    outcome = Outcome(decision, principal, destination, answer, payload=payload)
    if isinstance(answer, UpstreamStream):
        if marked:  # known before the first byte: the headers say it; the closing event says it again
            answer.headers += Marking(marked, decision.id).headers()
        if restore:  # values go back before marking reads the text, so the output scan sees what the client sees
            answer.chunks = StreamRestorer(call.endpoint, restore).wrap(answer.chunks)
        answer.chunks = _watched(answer.chunks, call, outcome, marked, principal, ports, started)
        return outcome
    usage: Any = None
    if answer.status < 300 and answer.is_json:
        parsed = _parse_answer(answer, destination)
        if restore:
            parsed = restore.restore_json(parsed)
            answer.content = orjson.dumps(parsed)
        if seen.upload is not None and isinstance(parsed, dict) and isinstance(parsed.get("id"), str):
            await ports.record_upload(parsed["id"], destination.id, principal.id, seen.upload.purpose, decision.id,
                                      [match_json(m) for m in matches if m.agreement_id])
        await _mark_whole(parsed, answer, call, outcome, marked, principal, ports)
        usage = parsed.get("usage") if isinstance(parsed, dict) else None
    ports.audit_later(outcome_record(outcome, answer.status, usage, started))
    return outcome


def outcome_record(outcome: Outcome, status: int, usage: Any, started: float) -> dict[str, Any]:
    """The audit record written after the destination answered (not awaited: the decision record came first)."""
    marking = outcome.marking
    return {
        "kind": "outcome", "decision_id": outcome.decision.id, "principal": outcome.principal.id,
        "destination": outcome.destination.id, "model": (outcome.payload or {}).get("model"),
        "decision": outcome.decision.kind.value, "upstream_status": status,
        "usage": usage if isinstance(usage, dict) else None,
        "latency_ms": (time.perf_counter() - started) * 1000,
        "marking": marking.field() if marking else None,
        "derived_item_id": marking.derived_item_ids[0] if marking and marking.derived_item_ids else None,
    }


def _output_agreements(text: str, call: ProviderCall, outcome: Outcome, ports: Ports) -> tuple[str, ...]:
    """Agreements whose material the answer itself contains (counted by the same rules as input)."""
    if not text:
        return ()
    facts = ports.facts.current
    matches = ports.scan([TextPart(location="output", text=text, role="assistant")])
    if not matches:
        return ()
    evaluation = evaluate(DecisionInput(
        decision_id=outcome.decision.id, principal=outcome.principal, destination=outcome.destination,
        endpoint=call.endpoint, matches=matches, now=dt.datetime.now(dt.UTC), agreements=facts.agreements,
        items=facts.items, consents=facts.consents), ports.policy())
    return tuple(dict.fromkeys(v.match.agreement_id for v in evaluation.verdicts if v.counts and v.match.agreement_id))


async def _mark_whole(parsed: Any, answer: UpstreamResponse, call: ProviderCall, outcome: Outcome,
                      marked: tuple[str, ...], principal: Principal, ports: Ports) -> None:
    text = output_text(call.endpoint, parsed)
    found = _output_agreements(text, call, outcome, ports)
    agreements = tuple(dict.fromkeys(marked + found))
    if not agreements or not isinstance(parsed, dict):
        return
    derived: tuple[str, ...] = ()
    if marked and len(text) >= MIN_DERIVED_CHARS:
        derived = await ports.register_derived(DerivedOutput(
            text, marked, _categories(outcome.decision, marked), outcome.decision.id, _new_item_ids(marked)))
    outcome.marking = Marking(agreements, outcome.decision.id, derived)
    parsed["confidentiality"] = outcome.marking.field()
    label = render_label(dataclasses.replace(outcome.decision, agreements=agreements), ports.policy())
    if label:
        add_label(call.endpoint, parsed, label)
    answer.content = orjson.dumps(parsed)
    answer.headers += outcome.marking.headers()


def _new_item_ids(agreements: tuple[str, ...]) -> tuple[str, ...]:
    """Chosen before registering, so a stream's closing event can name them."""
    return tuple(f"item_{secrets.token_hex(8)}" for _ in agreements)


def _categories(decision: Decision, agreements: tuple[str, ...]) -> tuple[str, ...]:
    """For each marked agreement, the category of its first counting match (the derived item inherits it)."""
    by_agreement: dict[str, str] = {}
    for match in decision.matches:
        if match.agreement_id and match.category and match.agreement_id not in by_agreement:
            by_agreement[match.agreement_id] = match.category
    return tuple(by_agreement.get(a, "business") for a in agreements)


async def _watched(chunks: AsyncIterator[bytes], call: ProviderCall, outcome: Outcome, marked: tuple[str, ...],
                   principal: Principal, ports: Ports, started: float) -> AsyncIterator[bytes]:
    """Relay a stream event by event; mark its closing event; register the answer once complete."""
    derived_ids: tuple[str, ...] = ()

    def on_close(text: str) -> Marking | None:
        nonlocal derived_ids
        agreements = tuple(dict.fromkeys(marked + _output_agreements(text, call, outcome, ports)))
        if not agreements:
            return None
        if marked and len(text) >= MIN_DERIVED_CHARS:
            derived_ids = _new_item_ids(marked)
        outcome.marking = Marking(agreements, outcome.decision.id, derived_ids)
        return outcome.marking

    registered = False

    async def register_before_naming() -> None:
        """The closing event names the derived item: it exists before a client can read that name."""
        nonlocal registered
        if derived_ids and not registered:
            registered = True
            await ports.register_derived(DerivedOutput(
                watcher.text, marked, _categories(outcome.decision, marked), outcome.decision.id, derived_ids))

    watcher = StreamWatcher(call.endpoint, on_close)
    async for chunk in chunks:
        ready = watcher.feed(chunk)
        await register_before_naming()
        if ready:
            yield ready
    rest = watcher.flush()
    await register_before_naming()
    if rest:
        yield rest
    ports.audit_later(outcome_record(outcome, 200, watcher.usage, started))


def _parse_answer(answer: UpstreamResponse, destination: Destination) -> Any:
    """A provider that says JSON must send JSON; anything else is a failed upstream, not an answer."""
    try:
        return orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        raise UpstreamError(
            f"接続先 '{destination.id}' から不正な応答を受け取りました。 / "
            f"The destination '{destination.id}' sent a malformed answer.", code="upstream_malformed") from None
