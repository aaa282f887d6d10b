"""The gateway's nouns, as frozen dataclasses and enums.

Only the standard library is imported here: every other module may depend on
these types, and they depend on nothing.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field


class ApiFormat(str, enum.Enum):
    """The wire format a client speaks and a destination understands."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class Endpoint(str, enum.Enum):
    """The employee endpoints of API.md, by what they do."""

    CHAT_COMPLETIONS = "chat.completions"
    COMPLETIONS = "completions"
    RESPONSES = "responses"
    EMBEDDINGS = "embeddings"
    MODELS = "models"
    FILES = "files"
    FINE_TUNING_JOBS = "fine_tuning.jobs"
    MESSAGES = "messages"

    @property
    def api_format(self) -> ApiFormat:
        return ApiFormat.ANTHROPIC if self is Endpoint.MESSAGES else ApiFormat.OPENAI


class Category(str, enum.Enum):
    """Article 2(1) categories of confidential information."""

    AI_TECHNOLOGY = "ai_technology"  # 2(1)(1)
    DATA = "data"  # 2(1)(2)
    SOURCE_CODE = "source_code"  # 2(1)(3)
    BUSINESS = "business"  # 2(1)(4)
    MARKED = "marked"  # 2(1)(5)
    ORAL = "oral"  # 2(1)(6)


class DecisionKind(str, enum.Enum):
    """What the gateway does with one request."""

    ALLOW = "allow"
    ALLOW_MARKED = "allow_marked"
    REDACT = "redact"
    CONSENT_REQUIRED = "consent_required"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class Principal:
    """An employee or service that holds gateway keys."""

    id: str
    groups: tuple[str, ...] = ()
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class Destination:
    """An upstream provider endpoint the gateway forwards to."""

    id: str
    base_url: str
    api_format: ApiFormat
    models: tuple[str, ...]
    third_party: bool = True
    trains_on_inputs: bool = False
    api_key_env: str | None = None
    timeout_seconds: float = 600.0


@dataclass(frozen=True, slots=True)
class TextPart:
    """One piece of text a model would see, with where it sits in the request.

    `location` reads like `messages[2].content[0].text`; offsets in matches are
    offsets into `text`, the string at that location after JSON decoding.
    """

    location: str
    text: str
    role: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """A registered thing found in a request: which item, where, how much."""

    kind: str  # fingerprint | term | record | pii
    location: str
    start: int
    end: int
    agreement_id: str | None = None
    item_id: str | None = None
    category: str | None = None
    entity: str | None = None
    score: float = 1.0
    item_coverage: float = 0.0
    request_coverage: float = 0.0
    encoding: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision about one request, with the articles it rests on."""

    id: str
    kind: DecisionKind
    articles: tuple[str, ...] = ()
    code: str | None = None
    matches: tuple[Match, ...] = ()
    agreements: tuple[str, ...] = field(default=())
    consent_id: str | None = None
    consent_request_id: str | None = None


class ConsentPurpose(str, enum.Enum):
    """Article 4: consent to input for inference (4(2)) or to training (4(1))."""

    INFERENCE = "inference"
    TRAINING = "training"


@dataclass(frozen=True, slots=True)
class Agreement:
    """An NDA as the engine needs it: who may see its material, and for how long it binds (Article 11)."""

    id: str
    title: str
    counterparty: str
    purpose: str
    effective_date: datetime.date
    term_years: int
    survival_years: int
    terminated_at: datetime.datetime | None = None
    authorized_principals: tuple[str, ...] = ()
    authorized_groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ItemInfo:
    """What the engine knows of a registered item (never its text)."""

    id: str
    agreement_id: str
    category: Category
    title: str = ""
    provisional: bool = False
    disclosed_at: datetime.datetime | None = None
    written_notice_at: datetime.datetime | None = None
    derived_from: str | None = None  # the decision whose output it was derived from (Article 4(3))


@dataclass(frozen=True, slots=True)
class Consent:
    """The discloser's recorded consent: agreement (or some items), destinations, purpose, validity."""

    id: str
    agreement_id: str
    destinations: tuple[str, ...]
    purpose: ConsentPurpose
    item_ids: tuple[str, ...] = ()
    valid_from: datetime.datetime | None = None
    valid_until: datetime.datetime | None = None
    revoked_at: datetime.datetime | None = None
