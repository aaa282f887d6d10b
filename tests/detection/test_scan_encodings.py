from __future__ import annotations

import base64
import subprocess
import sys
import urllib.parse

import pytest

from gateway.detection.registry import Registry
from gateway.domain import Category, TextPart
from gateway.scan import scan

from .conftest import EN_PLAN, EN_UNRELATED, JA_DESIGN


def _json_escaped(text: str) -> str:
    return "".join(f"\\u{ord(ch):04x}" for ch in text)


ENCODINGS = {
    "base64": lambda t: base64.b64encode(t.encode()).decode(),
    "hex": lambda t: t.encode().hex(),
    "json": _json_escaped,
    "url": lambda t: urllib.parse.quote(t),
    "html": lambda t: "".join(f"&#{ord(ch)};" for ch in t),
    "base64>url": lambda t: base64.b64encode(urllib.parse.quote(t).encode()).decode(),
}


@pytest.fixture
def loaded(registry: Registry) -> Registry:
    registry.add_item("design", "nda-1", Category.AI_TECHNOLOGY, JA_DESIGN)
    registry.add_item("plan", "nda-1", Category.BUSINESS, EN_PLAN)
    return registry


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize(("item_id", "text"), [("design", JA_DESIGN[20:160]), ("plan", EN_PLAN[30:250])])
def test_when_material_is_encoded_then_it_is_found_at_the_encoded_span(
    loaded: Registry, encoding: str, item_id: str, text: str
) -> None:
    blob = ENCODINGS[encoding](text)
    prompt = "Please decode and summarise: " + blob + "\nThanks!"
    matches = scan([TextPart("messages[0].content", prompt)], loaded)
    assert [m.item_id for m in matches] == [item_id]
    match = matches[0]
    assert match.encoding == encoding
    lo = prompt.index(blob)
    assert lo <= match.start < match.end <= lo + len(blob)
    if encoding in ("base64", "hex", "base64>url"):
        assert (match.start, match.end) == (lo, lo + len(blob))


def test_plain_text_is_not_reported_twice(loaded: Registry) -> None:
    prompt = EN_PLAN + " see https://example.com/a%20b?q=%E7%A7%98 &amp; more"
    matches = scan([TextPart("m", prompt)], loaded)
    assert len(matches) == 1 and matches[0].encoding is None


def test_unencoded_unrelated_text_takes_the_fast_path(loaded: Registry) -> None:
    assert scan([TextPart("m", EN_UNRELATED)], loaded) == []


def test_encoded_noise_is_ignored(loaded: Registry) -> None:
    noise = "sha256=9f2c1e7ab04d3c55e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8 token=QUJDREVGR0hJSktMTU5PUA=="
    assert scan([TextPart("m", noise)], loaded) == []


def test_engines_import_no_io_frameworks() -> None:
    code = (
        "import sys, gateway.scan, gateway.detection.accumulate; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert not loaded & {"fastapi", "starlette", "httpx", "sqlalchemy", "redis"}
    code = "import sys, gateway.normalize; print(' '.join(sorted(m for m in sys.modules if m.startswith(('gateway', 'numpy')))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["gateway", "gateway.normalize"]


def test_a_wholly_url_escaped_passage_is_decoded_with_exact_spans(loaded: Registry) -> None:
    """Every byte escaped (one run of %XX) is decoded, alone or under base64."""
    text = EN_PLAN[30:250]
    escaped = "".join(f"%{b:02X}" for b in text.encode("utf-8"))
    prompt = "Decode: " + escaped + "\n"
    matches = scan([TextPart("m", prompt)], loaded)
    assert [(m.item_id, m.encoding) for m in matches] == [("plan", "url")]
    assert prompt.index(escaped) <= matches[0].start < matches[0].end <= prompt.index(escaped) + len(escaped)
    assert (matches[0].end - matches[0].start) % 3 == 0  # whole escapes, never half of one
    nested = base64.b64encode(escaped.encode()).decode()
    matches = scan([TextPart("m", "Decode: " + nested)], loaded)
    assert [(m.item_id, m.encoding) for m in matches] == [("plan", "base64>url")]


def test_a_lone_escape_does_not_open_a_decoded_layer(loaded: Registry) -> None:
    assert scan([TextPart("m", "open https://example.com/a%20b please")], loaded) == []


def test_blobs_are_found_exactly_where_the_regex_over_the_whole_text_finds_them() -> None:
    """The search inside runs of blob characters (the fast path) finds every base64/hex candidate the
    plain regex finds over the whole text, at the same offsets: runs at either end, runs of exactly
    the minimum length, `=` padding, URL-safe characters, non-ASCII characters beside a run."""
    import random

    from gateway.scan import _BLOB, MIN_BLOB, _blob_matches

    rng = random.Random(20261127)
    pieces = ["a", "Z", "0", "+", "/", "-", "_", "=", "==", " ", ".", "é", "秘", "\n", "\\u0041", "%41"]
    samples = [
        "x" * MIN_BLOB, "x" * (MIN_BLOB - 1), "y" * MIN_BLOB + "==", "秘" + "Q" * 20 + "秘", "ab" * 40,
        base64.b64encode(EN_PLAN.encode()).decode(), EN_PLAN, JA_DESIGN,
    ]
    for _ in range(400):
        samples.append("".join(rng.choice(pieces) if rng.random() < 0.3 else rng.choice("abcXYZ019")
                               for _ in range(rng.randrange(0, 120))))
    for text in samples:
        expected = [(m.start(), m.end()) for m in _BLOB.finditer(text)]
        assert [(m.start(), m.end()) for m in _blob_matches(text)] == expected, text
