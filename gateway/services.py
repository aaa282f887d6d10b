"""The long-lived parts of one gateway process, opened at start and closed at stop.

The store, the registry, the policy, the audit log, the upstream clients and the
in-memory snapshots the hot path reads. Changes made in this process take effect
at once; changes made by other replicas arrive with `refresh_all`, which the app
runs every second.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway import metrics, telemetry
from gateway.authenticate import KeyCache
from gateway.domain import Category, Principal
from gateway.errors import GatewayError, ServiceUnavailable
from gateway.facts import FactsHolder
from gateway.forward import Forwarder
from gateway.keyring import keyed_hash, load_secret_key, new_admin_token, token_id_for
from gateway.pipeline import DerivedOutput, Ports
from gateway.policy.evaluation import ConsentScope
from gateway.policy.loader import PolicyError, PolicyStore, policy_from_dict
from gateway.policy.schema import Policy
from gateway.ratelimit import make_limiter
from gateway.redis_bus import ChangeBus, key_prefix, open_client
from gateway.registration import Material, RegistryService
from gateway.routing import Router
from gateway.settings import Settings, SettingsError
from gateway.storage import admin_tokens, changes, destinations, files, policies
from gateway.storage import agreements as agreement_store
from gateway.storage import consents as consent_store
from gateway.storage import principals as principal_store
from gateway.storage.audit_log import AuditLog
from gateway.storage.database import migrate, open_engine

log = logging.getLogger("shuhi")
STORE_CALL_SECONDS = 5.0  # a hung store answers 503 after this, rather than holding the request
DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "policies" / "default.yaml"


def policy_path(settings: Settings) -> Path:
    """`SHUHI_POLICY`, else the seed NDA's policy shipped in `policies/`."""
    path = Path(settings.policy) if settings.policy else DEFAULT_POLICY
    if not path.is_file():
        raise SettingsError(f"SHUHI_POLICY: policy file {path} does not exist")
    return path


class Policies:
    """The policy file, overridden by a document set through the admin API (shared through the store)."""

    def __init__(self, engine: Any, path: Path) -> None:
        self.engine = engine
        try:
            self.file = PolicyStore(path)
        except PolicyError as exc:
            raise SettingsError("; ".join(exc.problems)) from None
        self.override: Policy | None = None
        self._stamp: dt.datetime | None = None

    def current(self) -> Policy:
        return self.override or self.file.current

    def refresh(self) -> None:
        self.file.refresh()
        stored = policies.stored_policy(self.engine)
        if stored is None:
            self.override, self._stamp = None, None
        elif stored[1] != self._stamp:
            try:
                self.override = policy_from_dict(stored[0], source="policy set through the admin API")
            except PolicyError as exc:
                log.error("stored policy rejected: %s", "; ".join(exc.problems))
            self._stamp = stored[1]

    def put(self, document: dict[str, Any], updated_by: str) -> Policy:
        policy = policy_from_dict(document, source="request body")
        policies.store_policy(self.engine, policy.model_dump(mode="json"), updated_by)
        self.override, self._stamp = policy, None
        return policy

    def reset(self) -> None:
        policies.clear_policy(self.engine)
        self.override, self._stamp = None, None


def bootstrap_admin(engine: Any, secret: bytes, settings: Settings) -> None:
    """`SHUHI_ADMIN_TOKEN` is always valid; with none given and no token stored, one is generated and shown once."""
    if settings.admin_token is not None:
        token = settings.admin_token.get_secret_value()
        try:
            admin_tokens.ensure_token(engine, "admin", keyed_hash(secret, token), token_id_for(secret, token))
        except IntegrityError:  # another replica starting at the same moment stored it: it is there now
            admin_tokens.ensure_token(engine, "admin", keyed_hash(secret, token), token_id_for(secret, token))
    elif admin_tokens.count_tokens(engine) == 0:
        token = new_admin_token()
        admin_tokens.create_token(engine, "admin", keyed_hash(secret, token))
        print(f"shuhi: 初回の管理トークン / first admin token (shown once): {token}", file=sys.stderr, flush=True)


class Services:
    """Everything one process holds open; `ports` is what the request pipeline sees."""

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.environ = environ

    def open(self) -> None:
        """Synchronous part of start-up (run in a thread): store, schema, secret, snapshots."""
        settings = self.settings
        self.engine = open_engine(settings.database_url)
        migrate(self.engine)
        self.secret = load_secret_key(settings)
        bootstrap_admin(self.engine, self.secret, settings)
        from gateway.routes.admin.destinations import DestinationIn

        for declared in settings.destinations:
            destination = DestinationIn.model_validate(declared.model_dump()).to_domain()
            try:
                destinations.upsert_destination(self.engine, destination)
            except IntegrityError:  # another replica starting at the same moment inserted it: update it instead
                destinations.upsert_destination(self.engine, destination)
        self._seq = changes.last_change(self.engine)  # read first: what changes during start-up is applied again
        self.router = Router(destinations.all_destinations(self.engine))
        self.facts = FactsHolder()
        self._facts_reading = threading.Lock()
        self.refresh_policy_facts()
        self.registry = RegistryService(self.engine, self.secret, settings.accumulation_window_seconds)
        self.registry.load()
        self.policies = Policies(self.engine, policy_path(settings))
        self.policies.refresh()
        self.audit_log = AuditLog(self.engine, durable=settings.audit_sync == "full",
                                  linger=settings.audit_linger_ms / 1000)
        self.forwarder = Forwarder(self.environ, settings.upstream_connect_timeout)
        self.redis = open_client(settings.redis_url) if settings.redis_url else None
        self.bus = ChangeBus(self.redis, key_prefix(settings.database_url)) if self.redis is not None else None
        if self.bus is not None:
            self.bus.watch(self.engine)
        self.limiter = make_limiter(settings, self.redis)
        self.refreshed_at = time.monotonic()  # last successful read of the change log (readiness)
        self.ports = Ports(
            secret=self.secret, key_cache=KeyCache(settings.key_cache_seconds), lookup_key=self._lookup_key,
            router=self.router, forwarder=self.forwarder, facts=self.facts, policy=self.policies.current,
            scan=self.registry.scan, scan_for=self.registry.scan_for, register_derived=self._register_derived,
            open_consent_request=self._open_consent_request, audit=self._audit, audit_later=self._audit_later,
            record_upload=self._record_upload,
            find_upload=self._find_upload, files_destination=settings.files_destination, limiter=self.limiter,
            find_pii=self._find_pii)
        if self.policies.current().pii.entities:  # loaded at start-up, never on a request; no `entities`: no cost
            self._pii_analyzer()

    async def start(self) -> None:
        # A thread that waits for the GIL (the audit log's disk sync, store look-ups) gets it within
        # 0.5 ms instead of Python's 5 ms while the event loop is busy: audited requests wait on it.
        sys.setswitchinterval(0.0005)
        await anyio.to_thread.run_sync(self.open)
        await self.audit_log.start()
        if self.bus is not None:
            await self.bus.start()

    async def wait_for_change(self, seconds: float) -> None:
        """Until another replica announces a change (Redis), or `seconds` pass (the poll, always on)."""
        if self.bus is None:
            await asyncio.sleep(seconds)
        else:
            await self.bus.wait(seconds)

    async def aclose(self) -> None:
        if self.bus is not None:
            await self.bus.aclose()
        elif self.redis is not None:
            await self.redis.aclose()
        await self.audit_log.aclose()  # commits what is queued, outcome records included
        await self.forwarder.aclose()
        self.engine.dispose()

    # -- refreshing ------------------------------------------------------------------------------------
    def reload_destinations(self) -> None:
        self.router.replace(destinations.all_destinations(self.engine))

    def refresh_policy_facts(self) -> None:
        """One reader at a time: a refresh that began before an admin change must not land after the
        refresh that change made, or the older reading would replace the newer one."""
        with self._facts_reading:
            self.facts.replace(agreements=agreement_store.all_agreements(self.engine),
                               items=agreement_store.all_item_infos(self.engine),
                               consents=consent_store.active_consents(self.engine))

    def refresh_all(self) -> None:
        """Pick up what other replicas changed (run every second): one query when nothing did."""
        self.policies.file.refresh()
        found = changes.changes_since(self.engine, self._seq)
        if not found:
            self.refreshed_at = time.monotonic()
            return
        kinds = {row.kind for row in found}
        if kinds & changes.DESTINATIONS:
            self.reload_destinations()
        if kinds & changes.FACTS:
            self.refresh_policy_facts()
        if kinds & changes.POLICY:
            self.policies.refresh()
        if kinds & changes.KEYS:
            self.ports.key_cache.forget()
        self.registry.apply(found)
        self._seq = max(self._seq, max(int(row.seq) for row in found))
        self.refreshed_at = time.monotonic()

    # -- ports -----------------------------------------------------------------------------------------
    async def _in_store(self, fn: Any, *args: Any) -> Any:
        """Run a store call in a thread; a store that fails or hangs is a 503 that says so, never a 500."""
        try:
            with anyio.fail_after(STORE_CALL_SECONDS):
                return await anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)
        except (TimeoutError, SQLAlchemyError) as exc:
            log.warning("store call failed: %s", type(exc).__name__)
            raise ServiceUnavailable("ストアに接続できないため、リクエストを処理できません。 / "
                                     "The store is unreachable, so the request cannot be decided.",
                                     code="store_unavailable") from None

    async def _lookup_key(self, key_hash: str) -> Principal | None:
        return await self._in_store(principal_store.principal_for_key_hash, self.engine, key_hash)  # type: ignore[no-any-return]

    async def _audit(self, fields: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            with telemetry.span("shuhi.audit"):
                await self.audit_log.append(fields)
        except Exception:
            metrics.AUDIT_FAILURES.inc()
            raise
        metrics.AUDIT_SECONDS.observe(time.perf_counter() - started)
        if fields.get("kind") == "decision":
            metrics.observe_decision(str(fields.get("decision")), fields.get("articles") or ())

    def _audit_later(self, fields: dict[str, Any]) -> None:
        """Outcome records: queued at once, committed with the next batch, not awaited by the response."""
        self.audit_log.append_nowait(fields)
        if self.limiter is not None and fields.get("kind") == "outcome":
            self.limiter.spend_later(str(fields.get("principal")), fields.get("usage"))

    async def _open_consent_request(self, scope: ConsentScope, principal_id: str, decision_id: str) -> str:
        return await self._in_store(  # type: ignore[no-any-return]
            lambda: consent_store.open_request(self.engine, scope.agreement_id, list(scope.item_ids),
                                               scope.destination_id, scope.purpose, principal_id, decision_id))

    async def _record_upload(self, file_id: str, destination_id: str, principal_id: str, purpose: str,
                             decision_id: str, matches: list[dict[str, Any]]) -> None:
        await anyio.to_thread.run_sync(files.record_upload, self.engine, file_id, destination_id, principal_id,
                                       purpose, decision_id, matches)

    def _pii_analyzer(self) -> Any:
        """Presidio and its language models, loaded once per process (a policy set later may need them first)."""
        from gateway.pii.analyzer import shared_analyzer

        return shared_analyzer(self.policies.current().pii.japanese_ner)

    def _find_pii(self, parts: Any, lookup: Any) -> list[Any]:
        """Runs in a worker thread (see `pipeline._find_pii`)."""
        return self._pii_analyzer().analyze(parts, lookup)  # type: ignore[no-any-return]

    async def _find_upload(self, file_id: str) -> dict[str, Any] | None:
        return await anyio.to_thread.run_sync(files.get_upload, self.engine, file_id)

    async def _register_derived(self, output: DerivedOutput) -> tuple[str, ...]:
        """Article 4(3): the answer's fingerprints become an item of each agreement it was generated from."""
        def register() -> tuple[str, ...]:
            done: list[str] = []
            for agreement_id, category, item_id in zip(output.agreements, output.categories, output.item_ids,
                                                       strict=True):
                material = Material(title=f"生成物 / output of {output.decision_id}",
                                    category=Category(category) if category in Category._value2member_map_
                                    else Category.BUSINESS, text=output.text, derived_from=output.decision_id)
                try:
                    self.registry.register_item(agreement_id, material, item_id=item_id)
                    done.append(item_id)
                except GatewayError as exc:  # too short to fingerprint: nothing to register
                    log.info("derived item not registered: %s", exc.code)
            added = [agreement_store.item_domain(agreement_store.get_item_row(self.engine, i)) for i in done]
            with self._facts_reading:
                self.facts.add_items(added)
            return tuple(done)

        return await anyio.to_thread.run_sync(register)
