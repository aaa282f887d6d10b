"""The policy document of `policies/*.yaml`, as pydantic models that refuse anything unknown.

A policy is a company's reading of the NDA: what happens to confidential
material of each Article 2(1) category when it is bound for a third party, an
internal model or training; which scanner matches are strong enough to count;
what to do with parts nobody can scan; how outputs are marked; and how refusals
are explained. The models validate the whole document before anything is built
(Presidio's `yaml_recognizer_models.py` habit), so a typo fails at load time
with the field's path instead of silently weakening enforcement.

`policies/README.md` documents every field; keep the two in step.
"""

from __future__ import annotations

import enum
import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

__all__ = [
    "CATEGORY_KEYS",
    "CODES",
    "DESTINATION_KINDS",
    "MATCH_KINDS",
    "MESSAGE_FIELDS",
    "Action",
    "ActionTable",
    "BilingualText",
    "CategoryRule",
    "Marking",
    "Messages",
    "PiiEntityRule",
    "PiiRule",
    "Policy",
    "Threshold",
    "Thresholds",
    "UnscannableRule",
]

CATEGORY_KEYS = ("ai_technology", "data", "source_code", "business", "marked", "oral", "derived")
DESTINATION_KINDS = ("third_party", "internal", "training")
MATCH_KINDS = ("fingerprint", "term", "record", "pii")
CODES = ("blocked", "consent_required", "training_consent_required", "not_authorized", "unscannable_content")
# Names a message template may use. Nothing here can carry matched or registered text (Article 5(3)).
MESSAGE_FIELDS = frozenset({
    "agreement_id", "agreement_ids", "agreement_title", "counterparty", "purpose",
    "article", "articles", "article_ja", "articles_ja", "destination", "decision_id",
})
LABEL_FIELDS = frozenset({"agreement_ids", "decision_id", "article", "article_ja"})


class _Model(BaseModel):
    """Frozen and strict about unknown keys: a misspelt field must fail, not be ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Action(str, enum.Enum):
    """What the gateway does with counting material, from most to least severe.

    `allow` exists for PII and unscannable parts only: material of an agreement
    always leaves marked, because Article 4(3) makes outputs built on it
    confidential too.
    """

    BLOCK = "block"
    CONSENT_REQUIRED = "consent_required"
    REDACT = "redact"
    ALLOW_MARKED = "allow_marked"
    ALLOW = "allow"


TrainingAction = Literal["block", "consent_required"]


class CategoryRule(_Model):
    """Actions for one category by destination kind; a missing field falls back to `actions.default`.

    Training (Article 4(1)) can only be refused outright or held for a
    training consent: the contract allows no other way.
    """

    third_party: Action | None = Field(default=None, description="Article 4(2): input to a third-party AI service.")
    internal: Action | None = Field(default=None, description="Article 3(3): an internal model, authorized staff only.")
    training: TrainingAction | None = Field(default=None, description="Article 4(1): fine-tuning, trains_on_inputs.")

    @field_validator("third_party", "internal")
    @classmethod
    def _no_plain_allow(cls, value: Action | None) -> Action | None:
        if value is Action.ALLOW:
            raise ValueError("'allow' would leave outputs unmarked (Article 4(3)); use 'allow_marked'")
        return value


class ActionTable(_Model):
    """The action matrix: a default row and optional per-category overrides (Article 2(1) categories)."""

    default: CategoryRule = Field(default_factory=lambda: CategoryRule(
        third_party=Action.CONSENT_REQUIRED, internal=Action.ALLOW_MARKED, training="consent_required"))
    ai_technology: CategoryRule | None = None
    data: CategoryRule | None = None
    source_code: CategoryRule | None = None
    business: CategoryRule | None = None
    marked: CategoryRule | None = None
    oral: CategoryRule | None = None
    derived: CategoryRule | None = None

    @field_validator("default")
    @classmethod
    def _default_is_complete(cls, value: CategoryRule) -> CategoryRule:
        missing = [k for k in DESTINATION_KINDS if getattr(value, k) is None]
        if missing:
            raise ValueError(f"the default row must set every destination kind; missing: {', '.join(missing)}")
        return value

    def resolve(self, category: str, kind: str) -> Action:
        """The action for a category and destination kind, the default row filling gaps."""
        row = getattr(self, category, None) if category in CATEGORY_KEYS else None
        value = getattr(row, kind) if row is not None else None
        return Action(value if value is not None else getattr(self.default, kind))


PiiAction = Literal["block", "reversible", "redact", "allow_marked", "allow"]
PiiTrainingAction = Literal["block", "redact", "allow"]  # nothing comes back from training to restore


class PiiEntityRule(_Model):
    """One entity's own actions (unset: the `pii` row's) and the score a finding needs to count."""

    third_party: PiiAction | None = None
    internal: PiiAction | None = None
    training: PiiTrainingAction | None = None
    min_score: float | None = Field(default=None, ge=0.0, le=1.0)


class PiiRule(_Model):
    """PII found by recognizers belongs to no agreement, so no consent can cover it.

    It is customer information in the sense of Article 2(1)(4) when it came
    from the discloser; the policy decides how careful to be with it anyway.
    `entities` lists what the analyzer looks for: with none listed, no analyzer
    is loaded and no request pays for one. `reversible` replaces each value by a
    numbered placeholder and puts the value back into the answer.
    """

    third_party: PiiAction = "redact"
    internal: PiiAction = "allow"
    training: PiiTrainingAction = "block"
    entities: dict[str, PiiEntityRule] = Field(default_factory=dict)
    deny_list: tuple[str, ...] = Field(default=(), description="technical words never taken for PII (S3, C4)")
    japanese_ner: bool = Field(default=False, description="GiNZA's NER adds Japanese names beyond the dictionary")

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, value: dict[str, PiiEntityRule]) -> dict[str, PiiEntityRule]:
        from gateway.pii.entities import ALL_ENTITIES

        unknown = sorted(set(value) - ALL_ENTITIES)
        if unknown:
            raise ValueError(f"unknown entity {', '.join(unknown)}; known: {', '.join(sorted(ALL_ENTITIES))}")
        return value

    def action_for(self, entity: str | None, kind: str) -> str:
        """The action for one entity and destination kind, the row's action filling gaps."""
        rule = self.entities.get(entity or "")
        own = getattr(rule, kind) if rule is not None else None
        return str(own if own is not None else getattr(self, kind))


class UnscannableRule(_Model):
    """Images, audio, unknown files and unseen file ids: nobody can tell what they hold.

    Refused (`unscannable_content`) where a leak would break the contract,
    allowed where the material stays inside the company.
    """

    third_party: Literal["block", "allow"] = "block"
    internal: Literal["block", "allow"] = "allow"
    training: Literal["block", "allow"] = "block"


class Threshold(_Model):
    """Minimums a match of one kind must reach, all of them, to count; weaker matches are dropped and explained."""

    min_score: float = Field(default=0.0, ge=0.0, le=1.0, description="Match.score")
    min_item_coverage: float = Field(default=0.0, ge=0.0, le=1.0, description="share of the item found in the request")
    min_request_coverage: float = Field(default=0.0, ge=0.0, le=1.0, description="share of the request that is item")
    min_chars: int = Field(default=0, ge=0, description="end - start of the span in the request")


class Thresholds(_Model):
    """One `Threshold` per match kind; kinds the scanner may add later count unfiltered (fail closed)."""

    fingerprint: Threshold = Field(default_factory=lambda: Threshold(min_chars=20))
    term: Threshold = Field(default_factory=lambda: Threshold())
    record: Threshold = Field(default_factory=lambda: Threshold())
    pii: Threshold = Field(default_factory=lambda: Threshold(min_score=0.5))


class BilingualText(_Model):
    """A Japanese and an English text, shown together: legal staff and engineers read the same message."""

    ja: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def placeholders(self) -> set[str]:
        """Every `{name}` the two templates use."""
        names: set[str] = set()
        for text in (self.ja, self.en):
            for _, name, _, _ in string.Formatter().parse(text):
                if name is not None:
                    names.add(name)
        return names


def _check_fields(text: BilingualText, allowed: frozenset[str]) -> BilingualText:
    unknown = sorted(text.placeholders() - allowed)
    if unknown:
        raise ValueError(f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
                         f"allowed: {', '.join(sorted(allowed))}")
    return text


class Marking(_Model):
    """Article 4(3): how outputs built on confidential input are marked.

    Headers and the `confidentiality` body field are always added; the visible
    label is optional because it changes what the employee's tool displays.
    """

    visible_label: bool = False
    label: BilingualText = BilingualText(
        ja="【秘密情報】この出力は秘密保持契約（{agreement_ids}）の対象情報から生成されました（{article_ja}）。",
        en="[CONFIDENTIAL] This output was generated from material under NDA {agreement_ids} (Article {article}).",
    )

    @field_validator("label")
    @classmethod
    def _label_fields(cls, value: BilingualText) -> BilingualText:
        return _check_fields(value, LABEL_FIELDS)


class Messages(_Model):
    """Refusal explanations per error code. Placeholders name the agreement and article, never the material.

    `personal_data` is not a code of its own: it explains a `blocked` refusal
    caused by PII, which belongs to no agreement the other texts could name.
    """

    blocked: BilingualText = BilingualText(
        ja="この送信は、{counterparty}との秘密保持契約「{agreement_title}」（{agreement_id}）の{article_ja}に"
           "基づき、接続先 {destination} への送信が禁止されている情報を含むため拒否されました。",
        en="Refused: the request contains material under the NDA '{agreement_title}' ({agreement_id}) with "
           "{counterparty}, which Article {article} forbids sending to {destination}.")
    consent_required: BilingualText = BilingualText(
        ja="この送信には、{counterparty}との秘密保持契約「{agreement_title}」（{agreement_id}）の{article_ja}に"
           "基づき、開示者の承諾が必要です。承諾の申請を受け付けました。",
        en="Held: the request contains material under the NDA '{agreement_title}' ({agreement_id}) with "
           "{counterparty}; Article {article} requires the discloser's consent for {destination}. "
           "A consent request has been raised.")
    training_consent_required: BilingualText = BilingualText(
        ja="秘密保持契約「{agreement_title}」（{agreement_id}、相手方：{counterparty}）の対象情報による学習・"
           "微調整には、{article_ja}に基づき開示者の書面による事前承諾が必要です。",
        en="Refused: training or fine-tuning on material under the NDA '{agreement_title}' ({agreement_id}) "
           "with {counterparty} needs the discloser's prior written consent (Article {article}).")
    not_authorized: BilingualText = BilingualText(
        ja="あなたは秘密保持契約「{agreement_title}」（{agreement_id}、相手方：{counterparty}）の情報を扱う"
           "権限者に含まれていません（{article_ja}）。",
        en="Refused: you are not among the staff authorized for the NDA '{agreement_title}' ({agreement_id}) "
           "with {counterparty} (Article {article}).")
    unscannable_content: BilingualText = BilingualText(
        ja="画像・音声・不明な形式のファイルなど内容を検査できない部分を含むため、接続先 {destination} への"
           "送信を拒否しました（{article_ja}）。",
        en="Refused: the request has parts that cannot be scanned (images, audio, unknown files) and is bound "
           "for {destination} (Article {article}).")

    personal_data: BilingualText = BilingualText(
        ja="個人情報（顧客情報等）を含むため、接続先 {destination} への送信を拒否しました（{articles_ja}）。",
        en="Refused: the request contains personal data (customer information) and is bound for "
           "{destination} (Articles {articles}).")

    @field_validator("*")
    @classmethod
    def _message_fields(cls, value: BilingualText) -> BilingualText:
        return _check_fields(value, MESSAGE_FIELDS)

    def for_code(self, code: str) -> BilingualText:
        """The template of a refusal code; an unknown code gets the generic `blocked` text."""
        text = getattr(self, code, None) if code in CODES else None
        return text if isinstance(text, BilingualText) else self.blocked


class Policy(_Model):
    """A whole policy document; `decide()` reads only this.

    The action table is flattened once after validation so that a decision
    costs a dictionary lookup per match, not a walk through the models.
    """

    version: Literal[1] = 1
    name: str = "unnamed"
    description: str = ""
    provisional_window_days: int = Field(default=30, ge=1, le=366, description="Article 2(1)(6)")
    actions: ActionTable = Field(default_factory=ActionTable)
    pii: PiiRule = Field(default_factory=PiiRule)
    unscannable: UnscannableRule = Field(default_factory=UnscannableRule)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    marking: Marking = Field(default_factory=Marking)
    messages: Messages = Field(default_factory=Messages)

    _table: dict[tuple[str, str], Action] = PrivateAttr(default_factory=dict)
    _thresholds: dict[str, Threshold] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: object, /) -> None:
        """Flatten the action table, PII and unscannable rules and thresholds into plain dictionaries."""
        table = {(c, k): self.actions.resolve(c, k) for c in CATEGORY_KEYS for k in DESTINATION_KINDS}
        for k in DESTINATION_KINDS:
            table[("pii", k)] = Action("redact" if getattr(self.pii, k) == "reversible" else getattr(self.pii, k))
            table[("unscannable", k)] = Action(getattr(self.unscannable, k))
        self._table = table
        self._thresholds = {kind: getattr(self.thresholds, kind) for kind in MATCH_KINDS}

    def action(self, category: str, kind: str) -> Action:
        """The action for a category (or `pii`, `unscannable`) and destination kind.

        An unknown category takes the default row: material the scanner
        attributes to an agreement is enforced even if its category is new.
        """
        # Read the private dict directly: pydantic's __getattr__ for private attributes costs microseconds.
        private = self.__pydantic_private__ or {}
        found = private["_table"].get((category, kind))
        return found if found is not None else self.actions.resolve(category, kind)

    def threshold(self, kind: str) -> Threshold | None:
        """The minimums for a match kind, or None for a kind this policy does not know."""
        private = self.__pydantic_private__ or {}
        found: Threshold | None = private["_thresholds"].get(kind)
        return found
