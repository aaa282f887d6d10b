"""Bilingual refusal messages and the visible output label, from the policy's templates.

Legal staff read Japanese, many engineers read English, so every refusal says
both, joined by " / " as the rest of the gateway's errors do. The templates may
name the agreement, its counterparty and purpose, the article and the
destination: the placeholders offered here are the complete list, and none of
them can carry prompt text or registered material (Article 5(3)).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gateway.domain import Agreement, Decision
from gateway.policy.schema import BilingualText, Policy

__all__ = ["article_en", "article_ja", "render_label", "render_refusal"]

_ARTICLE = re.compile(r"^(\d+)((?:\(\d+\))*)$")
_PART = re.compile(r"\((\d+)\)")


def article_ja(article: str) -> str:
    """`4(2)` → `第4条第2項`, `2(1)(6)` → `第2条第1項第6号`: how a Japanese contract cites itself."""
    found = _ARTICLE.match(article)
    if found is None:
        return article
    parts = _PART.findall(found.group(2))
    text = f"第{found.group(1)}条"
    if parts:
        text += f"第{parts[0]}項"
    if len(parts) > 1:
        text += "".join(f"第{p}号" for p in parts[1:])
    return text


def article_en(article: str) -> str:
    """The article as the English messages print it: the citation itself, `4(2)`."""
    return article


class _Blank(dict[str, str]):
    """Template values where a missing one reads as an empty string rather than failing the refusal."""

    def __missing__(self, key: str) -> str:
        return ""


def _fill(template: BilingualText, values: Mapping[str, str]) -> str:
    blank = _Blank(values)
    return f"{template.ja.format_map(blank)} / {template.en.format_map(blank)}"


def _values(decision: Decision, agreements: Mapping[str, Agreement], destination: str) -> dict[str, str]:
    first = agreements.get(decision.agreements[0]) if decision.agreements else None
    articles = decision.articles or ()
    main = articles[0] if articles else ""
    return {
        "agreement_id": first.id if first else (decision.agreements[0] if decision.agreements else "-"),
        "agreement_ids": ", ".join(decision.agreements) or "-",
        "agreement_title": first.title if first else "-",
        "counterparty": first.counterparty if first else "-",
        "purpose": first.purpose if first else "-",
        "article": article_en(main),
        "articles": ", ".join(articles),
        "article_ja": article_ja(main),
        "articles_ja": "、".join(article_ja(a) for a in articles),
        "destination": destination or "-",
        "decision_id": decision.id,
    }


def render_refusal(decision: Decision, agreements: Mapping[str, Agreement], policy: Policy,
                   destination: str = "") -> str:
    """The `message` of API.md's 403 body: Japanese, then English, naming agreement and article.

    `decide()` puts the agreement that caused the refusal first in
    `decision.agreements` and the article the refusal rests on first in
    `decision.articles`, so the message names the right ones. Only ids,
    titles, counterparty and purpose of the agreement are used, which the
    employee may see; never the matched text.
    """
    if decision.code == "blocked" and decision.articles[:1] == ("2(1)(4)",):
        template = policy.messages.personal_data  # PII won: no agreement to name
    else:
        template = policy.messages.for_code(decision.code or "blocked")
    return _fill(template, _values(decision, agreements, destination))


def render_label(decision: Decision, policy: Policy) -> str | None:
    """The visible Article 4(3) label for an output, or None when the policy does not add one.

    Only for decisions that let confidential material through (`allow_marked`,
    or `redact` with unredacted agreement material); the caller decides that,
    this only renders.
    """
    if not policy.marking.visible_label:
        return None
    values = {
        "agreement_ids": ", ".join(decision.agreements) or "-",
        "decision_id": decision.id,
        "article": "4(3)",
        "article_ja": article_ja("4(3)"),
    }
    return _fill(policy.marking.label, values)
