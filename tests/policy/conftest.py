"""Builders for decision inputs: realistic agreements of 2026, destinations, items, consents, matches."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.domain import (
    Agreement, ApiFormat, Category, Consent, ConsentPurpose, Destination, Endpoint, ItemInfo, Match, Principal,
)
from gateway.policy import DecisionInput, Policy, UnscannablePart, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 6, 15, 9, 30, tzinfo=UTC)

# Joint development of a demand-forecasting model with a retailer, signed 2026-04-01, 2 years + 3 years.
FORECAST = Agreement(
    id="agr_forecast", title="需要予測AI共同開発に関する秘密保持契約", counterparty="北星リテール株式会社",
    purpose="需要予測モデルの共同開発の検討", effective_date=datetime.date(2026, 4, 1), term_years=2,
    survival_years=3, authorized_groups=("ai-lab",))
# An evaluation NDA with a speech-recognition vendor, open to everyone in the company.
SPEECH = Agreement(
    id="agr_speech", title="Speech model evaluation NDA", counterparty="Koeru AI Inc.",
    purpose="evaluation of a speech recognition engine", effective_date=datetime.date(2025, 10, 1),
    term_years=1, survival_years=2)

ITEMS = {
    "itm_arch": ItemInfo("itm_arch", "agr_forecast", Category.AI_TECHNOLOGY, "モデル構成書 v3"),
    "itm_sales": ItemInfo("itm_sales", "agr_forecast", Category.DATA, "店舗別販売データ 2025"),
    "itm_code": ItemInfo("itm_code", "agr_forecast", Category.SOURCE_CODE, "特徴量生成パイプライン"),
    "itm_plan": ItemInfo("itm_plan", "agr_forecast", Category.BUSINESS, "出店計画 2027"),
    "itm_asr_api": ItemInfo("itm_asr_api", "agr_speech", Category.SOURCE_CODE, "ASR API specification"),
    "itm_asr_bench": ItemInfo("itm_asr_bench", "agr_speech", Category.DATA, "Benchmark set description"),
}

OPENAI = Destination("openai", "https://api.openai.com/v1", ApiFormat.OPENAI, ("gpt-4.1",), third_party=True)
ANTHROPIC = Destination("anthropic", "https://api.anthropic.com", ApiFormat.ANTHROPIC, ("claude-sonnet-4",),
                        third_party=True)
INTERNAL = Destination("onprem", "http://llm.internal:8000/v1", ApiFormat.OPENAI, ("qwen3-32b",),
                       third_party=False)
TRAINER = Destination("freetier", "https://free.example.ai/v1", ApiFormat.OPENAI, ("free-model",),
                      third_party=True, trains_on_inputs=True)

ML_ENGINEER = Principal("tanaka", ("ai-lab", "engineering"))
SALES = Principal("suzuki", ("sales",))


def match(item_id: str | None = "itm_arch", agreement_id: str | None = None, kind: str = "fingerprint",
          start: int = 0, end: int = 120, score: float = 0.9, item_coverage: float = 0.4,
          request_coverage: float = 0.6, location: str = "messages[1].content", entity: str | None = None,
          category: str | None = None) -> Match:
    """A match of a registered item, its agreement and category filled from ITEMS when not given."""
    item = ITEMS.get(item_id) if item_id else None
    return Match(kind=kind, location=location, start=start, end=end,
                 agreement_id=agreement_id or (item.agreement_id if item else None), item_id=item_id,
                 category=category or (item.category.value if item else None), entity=entity, score=score,
                 item_coverage=item_coverage, request_coverage=request_coverage)


def pii_match(entity: str = "PHONE_NUMBER", score: float = 0.85) -> Match:
    """A PII finding: an entity, no agreement."""
    return Match(kind="pii", location="messages[1].content", start=10, end=23, entity=entity, score=score)


def consent(cid: str = "cns_1", agreement_id: str = "agr_forecast", destinations: Iterable[str] = ("openai",),
            purpose: ConsentPurpose = ConsentPurpose.INFERENCE, item_ids: Iterable[str] = (),
            valid_from: datetime.datetime | None = datetime.datetime(2026, 5, 1, tzinfo=UTC),
            valid_until: datetime.datetime | None = datetime.datetime(2026, 12, 31, tzinfo=UTC),
            revoked_at: datetime.datetime | None = None) -> Consent:
    """A consent recorded by legal; by default inference at OpenAI for the forecast NDA, May-December 2026."""
    return Consent(cid, agreement_id, tuple(destinations), purpose, tuple(item_ids), valid_from, valid_until,
                   revoked_at)


def make_input(*matches: Match, destination: Destination = OPENAI, principal: Principal = ML_ENGINEER,
               consents: Iterable[Consent] = (), now: datetime.datetime = NOW,
               endpoint: Endpoint = Endpoint.CHAT_COMPLETIONS, agreements: Iterable[Agreement] = (FORECAST, SPEECH),
               items: dict[str, ItemInfo] | None = None, unscannable: Iterable[UnscannablePart] = (),
               training: bool = False) -> DecisionInput:
    """A decision input with the two realistic agreements and their items on hand."""
    return DecisionInput(
        decision_id="dec_test", principal=principal, destination=destination, endpoint=endpoint,
        matches=tuple(matches), now=now, agreements={a.id: a for a in agreements},
        items=ITEMS if items is None else items, consents=tuple(consents), unscannable=tuple(unscannable),
        training=training)


def with_item(item_id: str, **changes: object) -> dict[str, ItemInfo]:
    """ITEMS with one item changed (provisional, derived...)."""
    return {**ITEMS, item_id: replace(ITEMS[item_id], **changes)}  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def default_policy() -> Policy:
    """The shipped policy for the seed NDA."""
    return load_policy(POLICIES / "default.yaml")


@pytest.fixture(scope="session")
def strict_policy() -> Policy:
    """The shipped strict policy."""
    return load_policy(POLICIES / "strict.yaml")


@pytest.fixture(scope="session")
def permissive_policy() -> Policy:
    """The shipped permissive policy."""
    return load_policy(POLICIES / "permissive.yaml")
