"""Replacing matched spans before a `redact` decision is forwarded (`replace_spans`, `placeholder`).

Locations are the ones `extract` produced (`messages[2].content[0].text`); spans
are offsets into the string there. The placeholder names the agreement and the
kind of match, never the text, so the model can still follow the sentence.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from gateway.domain import Match

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _path(location: str) -> list[str | int]:
    return [name if name else int(index) for name, index in _STEP.findall(location)]


def _get(payload: Any, path: list[str | int]) -> Any:
    node = payload
    for step in path:
        node = node[step]
    return node


def _set(payload: Any, path: list[str | int], value: Any) -> None:
    node = payload
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value


def placeholder(match: Match, number: int) -> str:
    owner = match.agreement_id or match.entity or "confidential"
    return f"[REDACTED:{owner}:{match.kind}:{number}]"


def replace_spans(payload: dict[str, Any], matches: Iterable[Match],
                  replacement: Callable[[Match, str, int], str]) -> int:
    """Replace every matched span in `payload` in place by `replacement(match, original, n)`, n counting
    from 1 in reading order; overlapping spans merge and the first match of a merged span decides.
    Returns how many spans were replaced."""
    by_location: dict[str, list[Match]] = defaultdict(list)
    for match in matches:
        by_location[match.location].append(match)
    replaced = 0
    for location, found in by_location.items():
        path = _path(location)
        try:
            text = _get(payload, path)
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(text, str):
            continue
        merged: list[list[Any]] = []
        for match in sorted(found, key=lambda m: (m.start, m.end)):
            if merged and match.start < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], match.end)
            else:
                merged.append([match.start, match.end, match])
        pieces = []
        for start, end, match in merged:
            replaced += 1
            pieces.append((start, end, replacement(match, text[start:end], replaced)))
        for start, end, new in reversed(pieces):
            text = text[:start] + new + text[end:]
        _set(payload, path, text)
    return replaced
