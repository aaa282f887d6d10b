"""The NDA policy: the schema of `policies/*.yaml`, its loader, and the pieces `gateway.decide` evaluates with.

Free of I/O except `loader`, which reads policy files; free of HTTP, SQL and
`gateway.detection` (STYLE.md), so a decision can be tested with plain values.
"""

from gateway.policy.permissions import consent_applies, covering_consent, is_authorized, purposes_for
from gateway.policy.evaluation import (
    SEVERITY, AgreementOutcome, ConsentScope, DecisionInput, Evaluation, MatchVerdict, UnscannablePart,
    destination_kind,
)
from gateway.policy.loader import PolicyError, PolicyStore, check_policy_file, load_policy, policy_from_dict
from gateway.policy.messages import article_ja, render_label, render_refusal
from gateway.policy.schema import Action, Policy
from gateway.policy.validity import agreement_period, agreement_status, item_status

__all__ = [
    "SEVERITY",
    "Action",
    "AgreementOutcome",
    "ConsentScope",
    "DecisionInput",
    "Evaluation",
    "MatchVerdict",
    "Policy",
    "PolicyError",
    "PolicyStore",
    "UnscannablePart",
    "agreement_period",
    "agreement_status",
    "article_ja",
    "check_policy_file",
    "consent_applies",
    "covering_consent",
    "destination_kind",
    "is_authorized",
    "item_status",
    "load_policy",
    "policy_from_dict",
    "purposes_for",
    "render_label",
    "render_refusal",
]
