"""Registering material under an agreement, and keeping this process's registry in step with the store.

Fingerprints are computed in a scratch registry outside any lock, stored, then
spliced into the live registry under a short write lock, so scans never wait
for a large document to be fingerprinted. The splice is short unless it sets
off a merge into the index's largest segment, which is done in place under
the same lock: at 1 GB of registered text the longest measured was 2.2 s (a
few times per gigabyte registered; `bench/README.md`). Other processes pick
the change up from the store's registry events within a second
(`RegistryService.sync`).
Terms, record cells and exclusion texts are stored sealed under the deployment
secret (`keyring.seal`); item text is never stored at all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine

from gateway.convert import to_text
from gateway.detection.accumulate import PrincipalWindow
from gateway.detection.fingerprint import FINGERPRINT_SCHEME
from gateway.detection.registry import Registry
from gateway.domain import Category, Match, TextPart
from gateway.errors import UnprocessableEntity
from gateway.keyring import seal, unseal
from gateway.rwlock import ReadWriteLock
from gateway.scan import scan as scan_parts
from gateway.scan import scan_result
from gateway.storage import agreements as store

log = logging.getLogger("shuhi.registry")
TERMS, CELLS, EXCLUSION = "terms", "record-cells", "exclusion-text"
PROVISIONAL_DAYS = 30  # Article 2(1)(6): oral disclosures must be confirmed in writing within 30 days


@dataclass(frozen=True, slots=True)
class Material:
    """What an administrator submits for one item: text, a file, terms, or several of them."""

    title: str
    category: Category
    text: str | None = None
    file: bytes | None = None
    filename: str | None = None
    terms: tuple[str, ...] = ()
    provisional: bool | None = None
    disclosed_at: dt.datetime | None = None
    written_notice_at: dt.datetime | None = None
    derived_from: str | None = None


class RegistryService:
    """The process's registry behind a readers-writer lock, loaded from and synced with the store."""

    def __init__(self, engine: Engine, secret: bytes, accumulation_window_seconds: float = 0) -> None:
        self.engine = engine
        self.secret = secret
        self.registry = Registry(secret)
        self.window = (PrincipalWindow(accumulation_window_seconds, self.registry.item_size)
                       if accumulation_window_seconds > 0 else None)
        self.lock = ReadWriteLock()
        self._applied: set[str] = set()
        self._matchable: set[str] = set()  # items and record sets: while empty, nothing can match
        # items fingerprinted under an older scheme (id -> agreement): they cannot match until registered again
        self.stale: dict[str, str] = {}

    # -- reading -------------------------------------------------------------------------------------
    def scan(self, parts: Sequence[TextPart]) -> list[Match]:
        """Matches of a request (encoded evasions decoded), safe against concurrent registration."""
        if not self._matchable:
            return []
        with self.lock.reading():
            return scan_parts(parts, self.registry)

    def scan_for(self, principal_id: str, parts: Sequence[TextPart]) -> list[Match]:
        """`scan`, with each item's coverage raised to what this principal sent of it within the window:
        an item leaked a paragraph per request adds up across requests."""
        if not self._matchable:
            return []
        with self.lock.reading():
            result = scan_result(parts, self.registry)
            if self.window is None or not result.item_hits:
                return list(result.matches)
            accumulated = self.window.observe(principal_id, result.item_hits)
        return [dataclasses.replace(m, item_coverage=max(m.item_coverage, accumulated.get(m.item_id, 0.0)))
                if m.item_id in accumulated else m for m in result.matches]

    # -- loading and syncing ------------------------------------------------------------------------
    def load(self) -> None:
        """Build the registry from the store (at start); changes after that arrive through `apply`."""
        rows = store.registry_rows(self.engine)
        with self.lock.writing():
            for row in rows["items"]:
                self._apply_item(row)
            for row in rows["exclusions"]:
                self._apply_exclusion(row)
            for row in rows["record_sets"]:
                self._apply_record_set(row)
            # Loaded item by item, the index is left in the several segments of its merge cascade, and
            # every scan looks each fingerprint up in each of them (a read far out of cache per segment
            # once the registry is large): one sort now leaves one segment before the first scan.
            self.registry.compact()
        log.info("registry loaded: %d items, %d exclusions, %d record sets", len(rows["items"]),
                 len(rows["exclusions"]), len(rows["record_sets"]))

    def apply(self, events: Sequence[Any]) -> None:
        """Apply the registry's share of the change log (what other processes registered or removed)."""
        for event in events:
            kind, object_id = event.kind, event.object_id
            if kind == "item_added" and object_id not in self._applied:
                row = store.object_row(self.engine, "item", object_id)
                if row is not None:
                    with self.lock.writing():
                        self._apply_item(row)
            elif kind == "item_removed":
                self.stale.pop(object_id, None)
                with self.lock.writing():
                    self.registry.remove_item(object_id)
                self._applied.discard(object_id)
                self._matchable.discard(object_id)
            elif kind == "exclusion_added" and object_id not in self._applied:
                row = store.object_row(self.engine, "exclusion", object_id)
                if row is not None:
                    with self.lock.writing():
                        self._apply_exclusion(row)
            elif kind == "record_set_added" and object_id not in self._applied:
                row = store.object_row(self.engine, "record_set", object_id)
                if row is not None:
                    with self.lock.writing():
                        self._apply_record_set(row)
            elif kind == "agreement_destroyed":
                for item_id in [i for i, a in self.stale.items() if a == event.agreement_id]:
                    del self.stale[item_id]
                with self.lock.writing():
                    for removed in self.registry.remove_agreement(event.agreement_id):
                        self._matchable.discard(removed)

    # Each `_apply_*` runs under the writer lock and is idempotent: the refresh loop may see a change-log event
    # for an object that this process is storing at the same moment, and only one of them may load it.
    def _apply_item(self, row: Any) -> None:
        if row.id in self._applied:
            return
        if row.fingerprint_count and row.fingerprint_scheme != FINGERPRINT_SCHEME:
            self.stale[row.id] = row.agreement_id  # /readyz turns red: registered material that cannot be found is unprotected
            log.error("item %s was fingerprinted under scheme %s, this gateway uses %s: register it again",
                      row.id, row.fingerprint_scheme, FINGERPRINT_SCHEME)
        elif row.fingerprint_count:
            self.registry.load_item(row.id, row.agreement_id, row.category, row.fingerprints,
                                    derived=row.derived_from is not None)
        if row.terms is not None:
            terms = orjson.loads(unseal(self.secret, row.terms, TERMS))
            self.registry.add_terms(row.id, row.agreement_id, row.category, terms)
        self._applied.add(row.id)
        self._matchable.add(row.id)

    def _apply_exclusion(self, row: Any) -> None:
        if row.id in self._applied:
            return
        text = unseal(self.secret, row.text_sealed, EXCLUSION).decode()
        self.registry.add_exclusion(row.id, row.agreement_id, text)
        self._applied.add(row.id)

    def _apply_record_set(self, row: Any) -> None:
        if row.id in self._applied:
            return
        rows = orjson.loads(unseal(self.secret, row.cells, CELLS))
        self.registry.add_record_set(row.id, row.agreement_id, rows, list(row.columns), row.min_cells)
        self._applied.add(row.id)
        self._matchable.add(row.id)

    # -- registering ---------------------------------------------------------------------------------
    def register_item(self, agreement_id: str, material: Material, item_id: str | None = None) -> dict[str, Any]:
        """Fingerprint, store, and start matching one item; returns its stored description (no text)."""
        text, source_code, digest = self._material_text(material)
        item_id = item_id or store.new_id("item")
        scratch = Registry(self.secret)
        fingerprints, count = b"", 0
        if text.strip():
            stats = scratch.add_item(item_id, agreement_id, material.category, text, source_code=source_code,
                                     filename=material.filename)
            fingerprints, count = scratch.item_fingerprints(item_id), stats.fingerprints
            if material.derived_from is not None:
                with self.lock.reading():
                    fingerprints = self.registry.novel_fingerprints(agreement_id, fingerprints)
                count = len(fingerprints) // 8
        terms = [t.strip() for t in material.terms if t.strip()]
        if not count and not terms and material.derived_from is None:  # an answer may add nothing new: kept
            raise UnprocessableEntity(
                "登録できる内容がありません（本文が短すぎるか空です）。 / Nothing to register: the text is empty or "
                "too short to fingerprint, and no terms were given.", code="empty_material")
        provisional = material.category is Category.ORAL if material.provisional is None else material.provisional
        disclosed_at = material.disclosed_at or dt.datetime.now(dt.UTC)
        if material.written_notice_at is not None:
            check_written_notice(disclosed_at, material.written_notice_at)
        created = _stored(store.create_item, self.engine, {
            "id": item_id, "agreement_id": agreement_id, "title": material.title,
            "category": material.category.value, "source": _source(material), "filename": material.filename,
            "provisional": provisional, "disclosed_at": disclosed_at, "written_notice_at": material.written_notice_at,
            "derived_from": material.derived_from, "chars": len(text), "sha256": digest,
            "fingerprint_count": count, "fingerprints": fingerprints, "fingerprint_scheme": FINGERPRINT_SCHEME,
            "terms": seal(self.secret, orjson.dumps(terms), TERMS) if terms else None, "term_count": len(terms)})
        with self.lock.writing():
            if item_id not in self._applied:  # else the refresh loop loaded it from the store already
                if count:
                    self.registry.load_item(item_id, agreement_id, material.category, fingerprints,
                                            derived=material.derived_from is not None)
                if terms:
                    self.registry.add_terms(item_id, agreement_id, material.category, terms)
                self._applied.add(item_id)
                self._matchable.add(item_id)
        return created

    def _material_text(self, material: Material) -> tuple[str, bool, str]:
        pieces: list[str] = []
        source_code = material.category is Category.SOURCE_CODE
        digest = hashlib.sha256()
        if material.file is not None:
            converted = to_text(material.file, material.filename or "upload.txt")
            pieces.append(converted.text)
            source_code = source_code or converted.source_code
            digest.update(material.file)
        if material.text:
            pieces.append(material.text)
            digest.update(material.text.encode())
        for term in material.terms:
            digest.update(b"\x00" + term.encode())
        return "\n".join(pieces), source_code, digest.hexdigest()

    def remove_item(self, item_id: str) -> dict[str, Any] | None:
        removed = store.delete_item(self.engine, item_id)
        if removed is not None:
            self.stale.pop(item_id, None)
            with self.lock.writing():
                self.registry.remove_item(item_id)
            self._applied.discard(item_id)
            self._matchable.discard(item_id)
        return removed

    def add_exclusion(self, agreement_id: str, text: str, reason: str) -> dict[str, Any]:
        """Article 2(2): text that never counts as this agreement's material."""
        exclusion_id = store.new_id("excl")
        scratch = Registry(self.secret)
        count = scratch.add_exclusion(exclusion_id, agreement_id, text)
        created = _stored(store.create_exclusion, self.engine, {
            "id": exclusion_id, "agreement_id": agreement_id, "reason": reason, "chars": len(text),
            "sha256": hashlib.sha256(text.encode()).hexdigest(), "fingerprint_count": count,
            "text_sealed": seal(self.secret, text.encode(), EXCLUSION)})
        with self.lock.writing():
            if exclusion_id not in self._applied:
                self.registry.add_exclusion(exclusion_id, agreement_id, text)
                self._applied.add(exclusion_id)
        return created

    def add_record_set(self, agreement_id: str, rows: list[list[str]], columns: list[str], min_cells: int,
                       filename: str | None, digest: str) -> dict[str, Any]:
        """Structured rows matched as exact data: `min_cells` cells of one row together make a match."""
        record_set_id = store.new_id("rset")
        created = _stored(store.create_record_set, self.engine, {
            "id": record_set_id, "agreement_id": agreement_id, "filename": filename, "columns": columns,
            "min_cells": min_cells, "rows": len(rows), "sha256": digest,
            "cells": seal(self.secret, orjson.dumps(rows), CELLS)})
        with self.lock.writing():
            if record_set_id not in self._applied:
                self.registry.add_record_set(record_set_id, agreement_id, rows, columns, min_cells)
                self._applied.add(record_set_id)
                self._matchable.add(record_set_id)
        return created


def _stored(create: Any, engine: Engine, values: dict[str, Any]) -> dict[str, Any]:
    """Store new material; an agreement destroyed meanwhile (Article 8) refuses it."""
    try:
        return create(engine, values)  # type: ignore[no-any-return]
    except store.AgreementDestroyed:
        raise UnprocessableEntity(
            f"契約 '{values['agreement_id']}' の資料は第8条により廃棄済みです。 / The material of agreement "
            f"'{values['agreement_id']}' was destroyed under Article 8.", code="agreement_destroyed") from None


def check_written_notice(disclosed_at: dt.datetime, written_notice_at: dt.datetime) -> None:
    """Article 2(1)(6): a written notice counts only within 30 days of the oral disclosure."""
    if written_notice_at > disclosed_at + dt.timedelta(days=PROVISIONAL_DAYS):
        raise UnprocessableEntity(
            "書面通知が開示から30日を過ぎています（第2条第1項第6号）。 / The written notice is more than 30 days after "
            "the oral disclosure (Article 2(1)(6)).", code="written_notice_too_late", param="written_notice_at")


def _source(material: Material) -> str:
    if material.derived_from:
        return "derived"
    if material.file is not None:
        return "file"
    return "text" if material.text else "terms"
