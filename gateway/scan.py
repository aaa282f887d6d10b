"""Scan a request's parts against the registry, seeing through encodings.

Pasting confidential text base64-encoded, hex-encoded, JSON-escaped
(``\\u79d8``), URL-escaped (``%E7%A7%98``) or as HTML entities hides it from
fingerprints. So each part is also decoded, and the decoded text (decoded
again, up to `MAX_DEPTH` layers: base64 of URL-escaped text, say) is scanned
together with the plain parts in one registry call, so coverage adds up over
all of them.

Spans are reported in the client's original part: a match inside a base64 or
hex blob covers the whole blob; a match in escaped text covers exactly the
escaped characters. `Match.encoding` names the chain of encodings,
outermost first (``"base64>url"``).

The fast path stays fast: one regex search per part decides whether anything
looks encoded at all.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from gateway.detection.registry import Registry, ScanResult
from gateway.domain import Match, TextPart

__all__ = ["MAX_DEPTH", "scan"]

MAX_DEPTH = 3
MAX_LAYERS = 64  # per request: bounds the work an adversarial prompt can cause
MIN_BLOB = 16

_CANDIDATE = re.compile(
    r"[A-Za-z0-9+/_-]{%d,}|\\u[0-9a-fA-F]{4}|\\x[0-9a-fA-F]{2}|%%[0-9a-fA-F]{2}|&#?[A-Za-z0-9]+;" % MIN_BLOB
)
_BLOB = re.compile(r"[A-Za-z0-9+/]{%d,}={0,2}|[A-Za-z0-9_-]{%d,}={0,2}" % (MIN_BLOB, MIN_BLOB))
_HEX = re.compile(r"[0-9a-fA-F]+")
_JSON_ESCAPE = re.compile(r"\\u[0-9a-fA-F]{4}|\\[nrtbf\"\\/]")
_HEX_ESCAPES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")
_URL_ESCAPES = re.compile(r"(?:%[0-9a-fA-F]{2})+")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "\\": "\\", "/": "/"}

Mapper = Callable[[int, int], tuple[int, int]]


@dataclass(frozen=True, slots=True)
class _Layer:
    part: int
    text: str
    to_part: Mapper
    chain: tuple[str, ...]


_BLOB_BYTES = bytes(97 if chr(i).isascii() and (chr(i).isalnum() or chr(i) in "+/_-") else 32 for i in range(256))
_BLOB_RUN = b"a" * MIN_BLOB


def _maybe_encoded(text: str) -> bool:
    """Cheap test (tens of microseconds for 16 KB) for anything a decoder could apply to."""
    if "\\" in text or "%" in text or "&" in text:
        return _CANDIDATE.search(text) is not None
    return _BLOB_RUN in text.encode("ascii", "replace").translate(_BLOB_BYTES)


def _identity(start: int, end: int) -> tuple[int, int]:
    return start, end


def _texty(text: str) -> bool:
    """Decoded bytes that read as text rather than binary noise."""
    if not text:
        return False
    printable = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
    return printable >= 0.9 * len(text)


def _decode_bytes(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if _texty(text) else None


def _blob_matches(text: str) -> Iterator[re.Match[str]]:
    """`_BLOB.finditer(text)`, searched only inside runs of blob characters; a match may end in up to
    two `=` after one.

    The runs are found on bytes with `bytes.find` (the first place with `MIN_BLOB` blob characters in
    a row is where a long enough run starts; it ends at the next other character): a regex such as
    `a{16,}` would try every word of ordinary prose in turn, 0.27 ms for 16 KB against 0.01.
    """
    runs = text.encode("ascii", "replace").translate(_BLOB_BYTES)  # one byte per character: same offsets
    start = runs.find(_BLOB_RUN)
    while start >= 0:
        end = runs.find(b" ", start)
        if end < 0:
            end = len(runs)
        yield from _BLOB.finditer(text, start, min(len(text), end + 2))
        start = runs.find(_BLOB_RUN, end)


def _blobs(text: str) -> list[tuple[str, int, int, str]]:
    """Base64 and hex blobs of `text` that decode to text: (encoding, start, end, decoded)."""
    found = []
    for match in _blob_matches(text):
        blob = match.group()
        decoded: str | None = None
        name = "base64"
        if len(blob) % 2 == 0 and _HEX.fullmatch(blob):
            decoded = _decode_bytes(binascii.unhexlify(blob))
            name = "hex"
        if decoded is None:
            name = "base64"
            stripped = blob.rstrip("=")
            padded = stripped + "=" * (-len(stripped) % 4)
            try:
                if "-" in padded or "_" in padded:
                    raw = base64.urlsafe_b64decode(padded)
                else:
                    raw = base64.b64decode(padded, validate=True)
            except (binascii.Error, ValueError):
                continue
            decoded = _decode_bytes(raw)
        if decoded is not None:
            found.append((name, match.start(), match.end(), decoded))
    return found


def _unescape(text: str, pattern: re.Pattern[str], decode: Callable[[str], str | None],
              minimum: int = 2) -> tuple[str, list[int], list[int]] | None:
    """Replace every escape; keep, per decoded character, the source span it came from.

    `minimum` counts escapes, not matches of `pattern`: a run such as
    ``%E7%A7%98`` is one match but three escapes, and a wholly escaped text is
    a single run that must still be decoded. One lone escape (``a%20b``) is
    left alone: it hides nothing.
    """
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    if len(matches) < minimum and sum(_escape_count(m.group()) for m in matches) < minimum:
        return None
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    position = 0
    changed = False
    for match in matches:
        decoded = decode(match.group())
        if decoded is None:
            continue
        literal = text[position : match.start()]
        pieces.append(literal)
        starts.extend(range(position, match.start()))
        ends.extend(range(position + 1, match.start() + 1))
        pieces.append(decoded)
        run = match.group()
        unit = 3 if run.startswith("%") else 4 if run.startswith("\\x") else 0
        if unit and len(run) == unit * len(decoded.encode("utf-8", "surrogatepass")):
            # A run of byte escapes: each character maps to exactly the escapes of its UTF-8 bytes.
            offset = match.start()
            for ch in decoded:
                width = unit * len(ch.encode("utf-8", "surrogatepass"))
                starts.append(offset)
                ends.append(offset + width)
                offset += width
        else:
            starts.extend([match.start()] * len(decoded))
            ends.extend([match.end()] * len(decoded))
        position = match.end()
        changed = True
    if not changed:
        return None
    pieces.append(text[position:])
    starts.extend(range(position, len(text)))
    ends.extend(range(position + 1, len(text) + 1))
    return "".join(pieces), starts, ends


def _escape_count(run: str) -> int:
    """How many escapes a match holds (runs of ``%XX`` or ``\\xXX`` hold several)."""
    return max(1, run.count("%") + run.count("\\x"))


def _json_escape(escape: str) -> str:
    if escape.startswith("\\u"):
        return chr(int(escape[2:], 16))
    return _SIMPLE_ESCAPES[escape[1]]


def _percent_bytes(escape: str) -> str | None:
    try:
        return bytes.fromhex(escape.replace("%", "").replace("\\x", "")).decode("utf-8")
    except (UnicodeDecodeError, ValueError):
        return None


def _entity(escape: str) -> str | None:
    decoded = html.unescape(escape)
    return decoded if decoded != escape else None


# (encoding, a substring every escape of it contains, its pattern, its decoder)
_ESCAPES: tuple[tuple[str, str, re.Pattern[str], Callable[[str], str | None]], ...] = (
    ("json", "\\", _JSON_ESCAPE, _json_escape),
    ("url", "%", _URL_ESCAPES, _percent_bytes),
    ("hex", "\\x", _HEX_ESCAPES, _percent_bytes),
    ("html", "&", _ENTITY, _entity),
)


def _decoded_layers(layer: _Layer, depth: int, budget: list[int]) -> list[_Layer]:
    """Every decoding of `layer` that yields text, recursively up to `MAX_DEPTH`."""
    if depth > MAX_DEPTH or budget[0] <= 0 or not _maybe_encoded(layer.text):
        return []
    out: list[_Layer] = []
    for name, start, end, decoded in _blobs(layer.text):

        def blob_span(s: int, e: int, _start: int = start, _end: int = end, _up: Mapper = layer.to_part) -> tuple[int, int]:
            return _up(_start, _end)

        out.append(_Layer(layer.part, decoded, blob_span, layer.chain + (name,)))
    for name, marker, pattern, decode in _ESCAPES:
        if marker not in layer.text:  # no escape of this kind can be there: skip its regex over the text
            continue
        result = _unescape(layer.text, pattern, decode)
        if result is None:
            continue
        decoded, starts, ends = result

        def escaped_span(s: int, e: int, _starts: list[int] = starts, _ends: list[int] = ends,
                         _up: Mapper = layer.to_part) -> tuple[int, int]:
            first = _starts[s] if s < len(_starts) else (_ends[-1] if _ends else 0)
            return _up(first, _ends[e - 1] if e > s else first)

        out.append(_Layer(layer.part, decoded, escaped_span, layer.chain + (name,)))
    out = out[: max(0, budget[0])]
    budget[0] -= len(out)
    nested: list[_Layer] = []
    for child in out:
        nested.extend(_decoded_layers(child, depth + 1, budget))
    return out + nested


def scan(parts: Sequence[TextPart], registry: Registry) -> list[Match]:
    """All matches of a request, including those hidden in encoded text."""
    return list(scan_result(parts, registry).matches)


def scan_result(parts: Sequence[TextPart], registry: Registry) -> ScanResult:
    """`scan`, keeping the per-item fingerprint hits that cross-request accumulation needs."""
    layers = [_Layer(i, part.text, _identity, ()) for i, part in enumerate(parts)]
    budget = [MAX_LAYERS]
    for i in range(len(parts)):
        layers.extend(_decoded_layers(layers[i], 1, budget))  # checks `_maybe_encoded` first, once
    if len(layers) == len(parts):
        return registry.scan(parts)
    virtual = [TextPart(location=str(n), text=layer.text, role=parts[layer.part].role) for n, layer in enumerate(layers)]
    found: list[Match] = []
    result = registry.scan(virtual)
    for match in result.matches:
        layer = layers[int(match.location)]
        start, end = layer.to_part(match.start, match.end)
        found.append(replace(match, location=parts[layer.part].location, start=start, end=end,
                             encoding=">".join(layer.chain) or None))
    return replace(result, matches=tuple(_dedupe(found)))


def _dedupe(matches: list[Match]) -> list[Match]:
    """Drop a decoded-layer match already covered by a match of the same thing in plainer text."""
    matches.sort(key=lambda m: (m.encoding is not None, len(m.encoding or ""), m.location, m.start))
    kept: list[Match] = []
    for m in matches:
        covered = any(k.kind == m.kind and k.item_id == m.item_id and k.location == m.location and k.entity == m.entity
                      and k.start <= m.start and m.end <= k.end for k in kept)
        if not covered:
            kept.append(m)
    kept.sort(key=lambda m: (m.location, m.start, m.kind, m.item_id or ""))
    return kept
