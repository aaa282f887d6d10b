"""The detection evaluation on real text: corpus, split, excerpts, evasions, scoring.

Shared by `tests/detection/test_evaluation.py` (a modest size, with thresholds) and
`bench/detection_eval.py` (a larger size, a report). The corpus is real text nobody on the team
wrote, prepared by `.ci/corpus` from Debian's documentation packages (Japanese and English man
pages and manuals) and Python's standard library source.

How a figure is made:

* documents are split into a registered and an unregistered half by a keyed hash of their
  *group* (the translation pair key when the document has an English/Japanese counterpart, else
  its id), so both versions of a section land on the same side and an untranslated paragraph of a
  Japanese section cannot leak its English original across the split;
* the registered half goes into a `Registry` as the gateway builds it (`Registry(secret)`: the
  shipped service adds no background corpus); prose as text items, Python files with
  ``source_code=True``;
* excerpts of 40 to 1000 characters (log-uniform lengths) are cut from registered documents,
  altered by each evasion, put in a prompt after a short instruction and scanned with
  `gateway.scan.scan` (decoding included); a *hit* is a fingerprint or term match naming the
  excerpt's item;
* an excerpt is *eligible* for a variant when the engine's guarantee covers it: for the text
  channel, its normalized text holds the run of whole grams the registry's evidence rule needs
  (`Registry.run_fingerprints` disjoint winnowing windows: T = 47 Latin / 29 CJK characters,
  mixed text in between); for the code-only variants (renamed identifiers, comments removed) its
  comment-free source holds at least 39 canonical tokens. Recall is
  measured on eligible excerpts; shorter ones are reported apart. A missed excerpt none of whose
  windows is distinctive (every gram held by more than ``max_item_share`` registered documents:
  the registry's boilerplate rule) is outside the guarantee by design and counted apart too;
* false positives: prompts of 40 to 2000 characters cut from the unregistered half. One that
  shares a run of at least T characters with a registered document is a *copy* (Debian repeats
  licences, credits, whole pages under two names) which the engine is bound to report; over the
  other, *unrelated* prompts, the rate of those with a match surviving the shipped policy's
  thresholds (`policies/default.yaml`, the same test as `gateway.decide`), and raw (any match);
* translation: excerpts of a section scanned against a registry holding only its other-language
  version (excerpts that share a gram with it, i.e. untranslated passages, are left out);
  paraphrase: sentences of an excerpt reordered and words swapped for synonyms. Both are
  reported, not asserted: fingerprints are lexical.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import random
import re
import subprocess
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gateway.decide import _below
from gateway.detection.fingerprint import CHANNEL_CODE, CHANNEL_TEXT, Fingerprinter, strip_comments
from gateway.detection.registry import Registry
from gateway.domain import Category, Match, TextPart
from gateway.normalize import normalize
from gateway.policy.loader import load_policy
from gateway.policy.schema import Policy
from gateway.scan import scan

ROOT = Path(__file__).resolve().parents[2]
CORPUS_SCRIPT = ROOT / ".ci" / "corpus"
DEFAULT_POLICY = ROOT / "policies" / "default.yaml"
SECRET = b"evaluation-deployment-secret-0123456789"
LANGS = ("ja", "en", "code")
MIN_EXCERPT, MAX_EXCERPT = 40, 1000
MIN_PROMPT, MAX_PROMPT = 40, 2000
CARRIER = {
    "ja": ("次の文章を要約してください。\n\n", "\n\nよろしくお願いします。"),
    "en": ("Please summarize the following text:\n\n", "\n\nThanks!"),
    "code": ("Can you review this code and suggest improvements?\n\n```python\n", "\n```\n"),
}
DECODE_CARRIER = {
    "ja": ("次のデータをデコードして要約してください: ", "\n"),
    "en": ("Decode this and summarize it: ", "\n"),
    "code": ("Decode this and review the code: ", "\n"),
}


class CorpusUnavailable(RuntimeError):
    """The corpus cannot be prepared on this machine (no apt, no network); the reason is the message."""


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    lang: str  # ja | en | code
    source: str
    text: str
    pair: str | None = None

    @property
    def group(self) -> str:
        return self.pair or self.id


@dataclass(frozen=True, slots=True)
class Excerpt:
    doc: Document
    start: int
    text: str


# -- the corpus ------------------------------------------------------------------------------------------
def corpus_dir(timeout: float = 900) -> Path:
    """The prepared corpus directory, running `.ci/corpus` if needed; `CorpusUnavailable` if impossible."""
    configured = os.environ.get("SHUHI_CORPUS_DIR") or str(Path.home() / ".cache" / "shuhi-corpus")
    if (Path(configured) / ".complete").exists() and (Path(configured) / "manifest.json").exists():
        stamp = (Path(configured) / ".complete").read_text().strip()
        if stamp == _script_version():
            return Path(configured)
    try:
        done = subprocess.run(["bash", str(CORPUS_SCRIPT)], capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CorpusUnavailable(f".ci/corpus could not run: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise CorpusUnavailable(f".ci/corpus failed (exit {done.returncode}): {last}")
    return Path(done.stdout.strip().splitlines()[-1])


def _script_version() -> str:
    match = re.search(r"^CORPUS_VERSION=(\S+)", CORPUS_SCRIPT.read_text(), re.MULTILINE)
    return match.group(1) if match else ""


def load_documents(directory: Path) -> list[Document]:
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    return [Document(d["id"], d["lang"], d["source"], (directory / d["path"]).read_text(encoding="utf-8"),
                     d.get("pair")) for d in manifest["documents"]]


def corpus_info(directory: Path) -> dict[str, object]:
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    return {k: manifest[k] for k in ("packages", "python", "groff") if k in manifest}


def _unit(seed: str, key: str) -> float:
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=seed.encode()[:64]).digest()
    return int.from_bytes(digest, "little") / 2**64


def split(documents: Sequence[Document], seed: str, registered_share: float = 0.5,
          background_share: float = 0.0) -> tuple[list[Document], list[Document], list[Document]]:
    """(registered, unregistered, background) by a keyed hash of each document's group."""
    registered, unregistered, background = [], [], []
    for doc in documents:
        u = _unit(seed, doc.group)
        if u < registered_share:
            registered.append(doc)
        elif u < registered_share + background_share:
            background.append(doc)
        else:
            unregistered.append(doc)
    return registered, unregistered, background


def build_registry(registered: Iterable[Document], background: Iterable[Document] = ()) -> Registry:
    """The registry as the gateway builds it (`Registry(secret)`), plus an optional background corpus."""
    registry = Registry(SECRET)
    for doc in registered:
        if doc.lang == "code":
            registry.add_item(doc.id, "nda", Category.SOURCE_CODE, doc.text, source_code=True, language="python")
        else:
            registry.add_item(doc.id, "nda", Category.BUSINESS, doc.text)
    for doc in background:
        registry.add_background(doc.text)
    return registry


# -- excerpts ------------------------------------------------------------------------------------------
def _length(rng: random.Random, low: int, high: int) -> int:
    return round(math.exp(rng.uniform(math.log(low), math.log(high))))


def cut(doc: Document, rng: random.Random, low: int = MIN_EXCERPT, high: int = MAX_EXCERPT) -> Excerpt | None:
    """A passage of `low`..`high` characters as someone would copy it.

    Code is copied in whole lines (from the start of a line up to the end of the last line that fits);
    English from the start of a word; Japanese from any character. Surrounding whitespace is dropped.
    """
    text = doc.text
    size = _length(rng, low, high)
    if len(text) < size + 2:
        return None
    for _ in range(20):
        start = rng.randrange(0, len(text) - size)
        if doc.lang == "code":
            start = text.rfind("\n", 0, start) + 1
            end = start + size
            line_end = text.rfind("\n", start, end)
            if line_end > start and line_end - start >= low:
                end = line_end
        elif doc.lang == "en":
            while start > 0 and not text[start - 1].isspace():
                start -= 1
            end = start + size
        else:
            end = start + size
        piece = text[start:end]
        stripped = piece.strip()
        if len(stripped) >= low and normalize(stripped).text:
            return Excerpt(doc, start + piece.index(stripped[0]), stripped)
    return None


def excerpts(documents: Sequence[Document], count: int, rng: random.Random, low: int = MIN_EXCERPT,
             high: int = MAX_EXCERPT) -> list[Excerpt]:
    """`count` excerpts from documents drawn in proportion to their length."""
    if not documents:
        return []
    weights = [len(d.text) for d in documents]
    found: list[Excerpt] = []
    attempts = 0
    while len(found) < count and attempts < count * 20:
        attempts += 1
        doc = rng.choices(documents, weights)[0]
        piece = cut(doc, rng, low, high)
        if piece is not None:
            found.append(piece)
    return found


# -- eligibility: what the engine's guarantee covers ------------------------------------------------------
_FINGERPRINTER = Fingerprinter(SECRET)
# Winnowing windows in a run the guarantee covers, per channel: the evidence rule needs `run_fingerprints`
# distinct kept grams of one run, which only that many disjoint windows guarantee (see `Registry`).
RUN_WINDOWS = Registry(SECRET).run_fingerprints[CHANNEL_TEXT]
CODE_RUN_WINDOWS = Registry(SECRET).run_fingerprints[CHANNEL_CODE]


def text_guaranteed(text: str, fingerprinter: Fingerprinter = _FINGERPRINTER) -> bool:
    """Whether the normalized text holds the run of grams the guarantee covers (length >= T)."""
    grams = len(fingerprinter.text(normalize(text).text, every_gram=True))
    return grams >= RUN_WINDOWS * fingerprinter.text_params.window


def code_guaranteed(piece: Excerpt, fingerprinter: Fingerprinter = _FINGERPRINTER) -> bool:
    """Whether the excerpt's code (comments and docstrings out) holds 39 canonical tokens (the guarantee's run)."""
    grams = len(fingerprinter.code(code_part(piece), every_gram=True))
    return grams >= CODE_RUN_WINDOWS * fingerprinter.code_params.window


class Registered:
    """Ground truth about the registered half, to tell a copy from a false positive and boilerplate from a miss.

    Counts, for every gram (36 Latin / 18 CJK normalized characters; 28 canonical code tokens), how
    many registered documents hold it:

    * `copied(text)`: the text shares a run of at least one winnowing window of grams (k + w - 1 =
      39 Latin / 21 CJK normalized characters) with some registered document: such a prompt copies
      registered text and is not unrelated. The definition is the one the evaluation had when a
      single gram was a match (T was k + w - 1 then), kept so that false-positive rates compare across
      engine settings; prompts sharing a run between it and T are copies the engine may or may not
      report (`RUN_WINDOWS` above);
    * `distinctive(text)` / `code_distinctive(excerpt)`: the excerpt holds such a run of grams
      each held by at most ``max_item_share`` registered documents. Grams held by more are
      boilerplate by the registry's design and never make a match, so an excerpt without such a
      window (an ISO 8859 table row, a GNU licence line) is outside the guarantee.
    """

    def __init__(self, documents: Iterable[Document], fingerprinter: Fingerprinter = _FINGERPRINTER,
                 background: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        docs = list(documents)
        self.fingerprinter = fingerprinter
        self.background = background  # the registry's `is_background`: such grams are boilerplate too
        self.grams, self.counts = _counted(
            [fingerprinter.text(normalize(d.text).text, every_gram=True).values for d in docs])
        self.code_grams, self.code_counts = _counted(
            [fingerprinter.code(strip_comments(d.text, "python"), every_gram=True).values
             for d in docs if d.lang == "code"])

    def copied(self, text: str) -> bool:
        values = self.fingerprinter.text(normalize(text).text, every_gram=True).values
        return _has_run(values, self.grams, self.counts, self.fingerprinter.text_params.window, None)

    def shares_gram(self, text: str) -> bool:
        """Whether the text holds any gram of a registered document (a text-channel match needs one)."""
        values = self.fingerprinter.text(normalize(text).text, every_gram=True).values
        return _has_run(values, self.grams, self.counts, 1, None)

    def distinctive(self, text: str, max_share: int) -> bool:
        values = self.fingerprinter.text(normalize(text).text, every_gram=True).values
        return _has_run(values, self.grams, self.counts, RUN_WINDOWS * self.fingerprinter.text_params.window,
                        max_share, self._ordinary(values))

    def code_distinctive(self, piece: Excerpt, max_share: int) -> bool:
        values = self.fingerprinter.code(code_part(piece), every_gram=True).values
        return _has_run(values, self.code_grams, self.code_counts,
                        CODE_RUN_WINDOWS * self.fingerprinter.code_params.window, max_share, self._ordinary(values))

    def _ordinary(self, values: np.ndarray) -> np.ndarray | None:
        return self.background(values) if self.background is not None else None


def _counted(per_document: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct grams and how many documents hold each."""
    if not per_document:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    grams, counts = np.unique(np.concatenate([np.unique(v) for v in per_document]), return_counts=True)
    return grams, counts


def _has_run(values: np.ndarray, grams: np.ndarray, counts: np.ndarray, window: int, max_share: int | None,
             ordinary: np.ndarray | None = None) -> bool:
    """Whether `window` consecutive grams of `values` are all registered (held by at most `max_share`, not `ordinary`)."""
    if values.shape[0] < window or not grams.shape[0]:
        return False
    found = np.minimum(np.searchsorted(grams, values), grams.shape[0] - 1)
    held = np.where(grams[found] == values, counts[found], 0)
    ok = (held >= 1) if max_share is None else ((held >= 1) & (held <= max_share))
    if ordinary is not None:
        ok &= ~ordinary
    run = np.convolve(ok.astype(np.int64), np.ones(window, np.int64), mode="valid")
    return bool((run >= window).any())


# -- evasions ----------------------------------------------------------------------------------------------
CYRILLIC = dict(zip("aceopxyijsABCEHKMOPTXY", "асеорхуіјѕАВСЕНКМОРТХУ"))
GREEK = dict(zip("oviuABEHIKMNOPTXZ", "ονιυΑΒΕΗΙΚΜΝΟΡΤΧΖ"))
# Katakana and kanji/hiragana that look the same (UTS #39 pairs, plus the voiced forms of ヘ/へ).
KANA_LOOKALIKES = dict(zip("ロエカニハトターヘペベ", "口工力二八卜夕一へぺべ"))
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad")


def _halfwidth_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for cp in range(0xFF61, 0xFFA0):
        half = chr(cp)
        full = unicodedata.normalize("NFKC", half)
        if len(full) == 1 and full not in table:
            table[full] = half
    for cp in range(0x30A1, 0x30FB):  # voiced katakana: base + half-width voicing mark
        full = chr(cp)
        decomposed = unicodedata.normalize("NFD", full)
        if len(decomposed) == 2 and decomposed[0] in table:
            table[full] = table[decomposed[0]] + ("\uff9e" if decomposed[1] == "\u3099" else "\uff9f")
    return table


HALFWIDTH = _halfwidth_table()


def _fullwidth_ascii(ch: str) -> str:
    if "!" <= ch <= "~":
        return chr(ord(ch) - 0x21 + 0xFF01)
    return "\u3000" if ch == " " else ch


def width(text: str, lang: str, rng: random.Random) -> str:
    """Full-width ASCII everywhere; in Japanese also half-width katakana."""
    if lang == "ja":
        return "".join(HALFWIDTH.get(ch) or _fullwidth_ascii(ch) for ch in text)
    return "".join(_fullwidth_ascii(ch) for ch in text)


def zero_width(text: str, lang: str, rng: random.Random) -> str:
    return "".join(ch + (rng.choice(ZERO_WIDTH) if rng.random() < 0.35 else "") for ch in text)


def _substitute(table: dict[str, str], share: float) -> Callable[[str, str, random.Random], str]:
    def apply(text: str, lang: str, rng: random.Random) -> str:
        return "".join(table[ch] if ch in table and rng.random() < share else ch for ch in text)

    return apply


homoglyph_cyrillic = _substitute(CYRILLIC, 1.0)
homoglyph_greek = _substitute(GREEK, 1.0)
homoglyph_kana = _substitute(KANA_LOOKALIKES, 1.0)

_PUNCT_SWAP = {",": [";", "", " ,"], ".": ["!", "", " .", "…"], ":": [" -", ""], ";": [",", ""], "(": ["[", ""],
               ")": ["]", ""], "'": ["’", '"'], '"': ["“", "'"], "-": ["–", " - "], "、": [",", "，", ""],
               "。": [".", "．", "\n"], "「": ["『", "\""], "」": ["』", "\""], "（": ["(", ""], "）": [")", ""]}
_SPACE_SWAP = [" ", "  ", "\n", "\t", " \n ", "\u3000"]


def whitespace_punct_case(text: str, lang: str, rng: random.Random) -> str:
    """Re-wrapped, re-punctuated and re-cased text (Markdown emphasis and bullets thrown in)."""
    out: list[str] = []
    for token in re.findall(r"\s+|\w+|[^\w\s]", text):
        if token.isspace():
            out.append(rng.choice(_SPACE_SWAP))
        elif token in _PUNCT_SWAP and rng.random() < 0.7:
            out.append(rng.choice(_PUNCT_SWAP[token]))
        elif token[0].isalnum() or token[0] == "_":
            r = rng.random()
            if token.isascii():
                token = token.upper() if r < 0.15 else token.title() if r < 0.3 else token.lower() if r < 0.4 else token
            elif lang == "ja" and rng.random() < 0.15:  # spaces between Japanese characters
                token = " ".join(token)
            if rng.random() < 0.04:
                token = rng.choice(["**", "_", "`"]) + token + rng.choice(["**", "_", "`"])
            out.append(token)
        else:
            out.append(token)
        if rng.random() < 0.01:
            out.append(rng.choice(["\n- ", "\n* ", " | ", "\n> "]))
    return "".join(out)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _hex(text: str) -> str:
    return text.encode("utf-8").hex()


def _json_escape(text: str) -> str:
    """Every character as \\uXXXX (surrogate pairs beyond the BMP), as a JSON string would allow."""
    units = text.encode("utf-16-be", "surrogatepass")
    return "".join(f"\\u{int.from_bytes(units[i:i + 2], 'big'):04x}" for i in range(0, len(units), 2))


def _url_escape(text: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode("utf-8"))


def _html_entities(text: str, rng: random.Random) -> str:
    out = []
    for ch in text:
        r = rng.random()
        if ch in "&<>\"'" and r < 0.5:
            out.append(html.escape(ch))
        elif r < 0.5:
            out.append(f"&#{ord(ch)};")
        else:
            out.append(f"&#x{ord(ch):X};")
    return "".join(out)


ENCODERS: dict[str, Callable[[str, random.Random], str]] = {
    "base64": lambda t, rng: _b64(t),
    "hex": lambda t, rng: _hex(t),
    "json_unicode": lambda t, rng: _json_escape(t),
    "url": lambda t, rng: _url_escape(t),
    "html_entities": _html_entities,
    "nested_base64_url": lambda t, rng: _b64(_url_escape(t)),
}


# Code evasions. Names, comments and docstrings are found by lexing the whole document with Pygments
# (an excerpt may start inside a docstring), and the excerpt is rewritten token by token.
_LEXED: dict[str, list[tuple[int, object, str]]] = {}


def _excerpt_tokens(piece: Excerpt) -> list[tuple[object, str]]:
    """The excerpt as (token type, text) pairs, typed by the lexing of its whole document."""
    from pygments.lexers import PythonLexer

    doc = piece.doc
    if doc.id not in _LEXED:
        if len(_LEXED) > 256:
            _LEXED.clear()
        lexer = PythonLexer(stripnl=False, ensurenl=False, stripall=False)
        _LEXED[doc.id] = list(lexer.get_tokens_unprocessed(doc.text))
    lo, hi = piece.start, piece.start + len(piece.text)
    out = []
    for pos, kind, value in _LEXED[doc.id]:
        end = pos + len(value)
        if end <= lo or pos >= hi:
            continue
        out.append((kind, value[max(0, lo - pos) : hi - pos]))
    if "".join(v for _, v in out) != piece.text:  # the excerpt was stripped differently: lex it alone
        lexer = PythonLexer(stripnl=False, ensurenl=False, stripall=False)
        out = [(k, v) for _, k, v in lexer.get_tokens_unprocessed(piece.text)]
    return out


def _is_name(kind: object) -> bool:
    from pygments.token import Name

    keep = (Name.Builtin, Name.Builtin.Pseudo, Name.Decorator, Name.Exception)
    return kind in Name and not any(kind in k for k in keep)


def _is_comment(kind: object) -> bool:
    from pygments.token import Comment, String

    return kind in Comment or kind in String.Doc


def _rewrite(piece: Excerpt, rng: random.Random | None, rename: bool, strip: bool) -> str:
    renamed: dict[str, str] = {}
    out = []
    for kind, value in _excerpt_tokens(piece):
        if strip and _is_comment(kind):
            out.append("\n" * value.count("\n"))
            continue
        if rename and rng is not None and _is_name(kind) and value.isidentifier():
            if value not in renamed:
                renamed[value] = rng.choice(["x", "v", "tmp", "item", "obj", "val", "q"]) + f"{len(renamed)}"
            value = renamed[value]
        out.append(value)
    text = "".join(out)
    if strip:
        text = "\n".join(line.rstrip() for line in text.split("\n") if line.strip())
    return text


def code_part(piece: Excerpt) -> str:
    """The excerpt without its comments and docstrings (judged in the context of its whole file)."""
    return _rewrite(piece, None, rename=False, strip=True)


def rename_identifiers(piece: Excerpt, rng: random.Random) -> str:
    """Every name (variables, functions, classes, attributes, modules) consistently renamed."""
    return _rewrite(piece, rng, rename=True, strip=False)


def remove_comments(piece: Excerpt, rng: random.Random) -> str:
    """Comments and docstrings removed, and the lines they leave empty."""
    return _rewrite(piece, rng, rename=False, strip=True)


def reformat(source: str, lang: str, rng: random.Random) -> str:
    """Indentation of 2 spaces or tabs, spacing around operators and commas, quotes swapped."""
    indent = rng.choice(["  ", "\t", "   "])
    lines = []
    for line in source.split("\n"):
        body = line.lstrip(" ")
        level = (len(line) - len(body)) // 4
        extra = (len(line) - len(body)) % 4
        body = re.sub(r"\s*,\s*", rng.choice([", ", ",", " , "]), body)
        body = re.sub(r"\s*(==|!=|<=|>=|\+=|-=|=)\s*", lambda m: rng.choice([m.group(1), f" {m.group(1)} "]), body)
        body = re.sub(r"'([^'\"\\\n]*)'", r'"\1"', body)
        body = re.sub(r"\(\s*", rng.choice(["(", "( "]), body)
        lines.append(indent * level + " " * extra + body)
        if rng.random() < 0.1:
            lines.append("")
    return "\n".join(lines)


def all_code_changes(piece: Excerpt, rng: random.Random) -> str:
    return reformat(_rewrite(piece, rng, rename=True, strip=True), "code", rng)


Apply = Callable[[Excerpt, random.Random], str]


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    langs: tuple[str, ...]
    apply: Apply
    encoded: bool = False
    code_only: bool = False  # eligibility by the code channel's guarantee
    asserted: bool = True  # part of the >= 99% bar


def _on_text(change: Callable[[str, str, random.Random], str]) -> Apply:
    return lambda piece, rng: change(piece.text, piece.doc.lang, rng)


def _encoder(name: str) -> Apply:
    encode = ENCODERS[name]
    return lambda piece, rng: encode(piece.text, rng)


VARIANTS: tuple[Variant, ...] = (
    Variant("verbatim", LANGS, lambda piece, rng: piece.text),
    Variant("width", LANGS, _on_text(width)),
    Variant("zero_width", LANGS, _on_text(zero_width)),
    Variant("homoglyph_cyrillic", LANGS, _on_text(homoglyph_cyrillic)),
    Variant("homoglyph_greek", LANGS, _on_text(homoglyph_greek)),
    Variant("homoglyph_kana", ("ja",), _on_text(homoglyph_kana)),
    Variant("whitespace_punct_case", LANGS, _on_text(whitespace_punct_case)),
    *(Variant(name, LANGS, _encoder(name), encoded=True) for name in ENCODERS),
    Variant("rename_identifiers", ("code",), rename_identifiers, code_only=True),
    Variant("remove_comments", ("code",), remove_comments, code_only=True),
    Variant("reformat", ("code",), _on_text(reformat)),
    Variant("rename+strip+reformat", ("code",), all_code_changes, code_only=True, asserted=False),
    # Not an evasion of the list, reported to show a limit: the same passage pasted 12 times.
    Variant("repeated_x12", LANGS, lambda piece, rng: "\n\n".join([piece.text] * 12), asserted=False),
)
VARIANT_BY_NAME = {v.name: v for v in VARIANTS}


def prompt_for(variant: Variant, lang: str, body: str) -> str:
    head, tail = (DECODE_CARRIER if variant.encoded else CARRIER)[lang]
    return head + body + tail


# -- paraphrase (reported only) ----------------------------------------------------------------------------
EN_SYNONYMS = {
    "use": "employ", "used": "employed", "uses": "employs", "using": "employing", "file": "document",
    "files": "documents", "system": "setup", "package": "bundle", "packages": "bundles", "show": "display",
    "shows": "displays", "create": "make", "created": "made", "default": "standard", "option": "flag",
    "options": "flags", "command": "instruction", "commands": "instructions", "program": "application",
    "programs": "applications", "user": "person", "users": "people", "directory": "folder",
    "directories": "folders", "specified": "given", "specify": "give", "value": "setting", "values": "settings",
    "returns": "gives back", "return": "give back", "function": "routine", "following": "next", "must": "has to",
    "should": "ought to", "can": "is able to", "may": "might", "also": "too", "however": "but",
    "information": "details", "error": "failure", "errors": "failures", "check": "verify", "change": "modify",
    "changes": "modifications", "install": "set up", "installed": "set up", "run": "execute", "start": "begin",
    "new": "fresh", "old": "previous", "first": "initial", "large": "big", "small": "little", "number": "count",
    "set": "configure", "if": "when", "because": "since", "example": "instance", "only": "just",
    "contains": "holds", "describes": "explains", "allows": "lets", "needed": "required", "need": "require",
}
JA_SYNONYMS = {
    "ファイル": "書類", "ディレクトリ": "フォルダ", "システム": "仕組み", "パッケージ": "パッケージ群", "使用": "利用",
    "表示": "出力", "指定": "設定", "場合": "とき", "作成": "生成", "変更": "修正", "実行": "起動", "必要": "必須",
    "情報": "データ", "エラー": "誤り", "ユーザー": "利用者", "コマンド": "命令", "プログラム": "ソフトウェア",
    "できる": "可能である", "できます": "可能です", "します": "いたします", "する": "行う", "ある": "存在する",
    "あります": "存在します", "ない": "無い", "また": "さらに", "しかし": "ただし", "例えば": "たとえば",
    "返す": "戻す", "設定": "構成", "確認": "チェック", "インストール": "導入", "デフォルト": "既定", "機能": "働き",
    "説明": "解説", "以下": "次", "方法": "やり方", "問題": "課題", "使う": "用いる", "新しい": "新規の",
}


def paraphrase(text: str, lang: str, rng: random.Random) -> str:
    """A scripted paraphrase: sentences shuffled, common words swapped for synonyms, articles dropped."""
    if lang == "ja":
        sentences = [s for s in re.split(r"(?<=[。！？\n])", text) if s.strip()]
        rng.shuffle(sentences)
        out = "".join(sentences)
        for word, synonym in JA_SYNONYMS.items():
            out = out.replace(word, synonym)
        return out
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]
    rng.shuffle(sentences)
    out = " ".join(sentences)
    out = re.sub(r"\b(?:the|a|an) (?=\w)", lambda m: "" if rng.random() < 0.5 else m.group(), out,
                 flags=re.IGNORECASE)
    return re.sub(r"[A-Za-z]+", lambda m: _swap(m.group(), EN_SYNONYMS), out)


def _swap(word: str, table: dict[str, str]) -> str:
    synonym = table.get(word.lower())
    if synonym is None:
        return word
    return synonym.capitalize() if word[0].isupper() else synonym


# -- scoring ----------------------------------------------------------------------------------------------------
def hit(matches: Iterable[Match], item_id: str) -> bool:
    return any(m.kind in ("fingerprint", "term") and m.item_id == item_id for m in matches)


def counting(matches: Iterable[Match], policy: Policy) -> list[Match]:
    """Matches that survive the policy's thresholds (the test `gateway.decide` applies first)."""
    kept = []
    for match in matches:
        threshold = policy.threshold(match.kind)
        if threshold is None or _below(threshold, match) is None:
            kept.append(match)
    return kept


def default_policy() -> Policy:
    return load_policy(DEFAULT_POLICY)


@dataclass(slots=True)
class Tally:
    """Recall of one (language, variant) on eligible excerpts; short ones and registered boilerplate apart."""

    eligible: int = 0
    hits: int = 0
    short: int = 0  # below the guarantee (T characters, or 39 tokens for the code-only variants)
    short_hits: int = 0
    boilerplate: int = 0  # missed, and no window of grams held by at most max_item_share registered documents
    misses: list[dict[str, object]] = field(default_factory=list)
    spans: list[int] = field(default_factory=list)  # per eligible excerpt: longest span reporting its item (0: none)
    policy_hits: int = 0  # hits whose match also survives the shipped policy's thresholds
    policy_misses: list[dict[str, object]] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.hits / self.eligible if self.eligible else None

    @property
    def short_recall(self) -> float | None:
        return self.short_hits / self.short if self.short else None

    def as_dict(self) -> dict[str, object]:
        return {"eligible": self.eligible, "hits": self.hits, "recall": self.recall, "below_guarantee": self.short,
                "below_guarantee_hits": self.short_hits, "below_guarantee_recall": self.short_recall,
                "boilerplate_excluded": self.boilerplate, "miss_examples": self.misses,
                "policy_hits": self.policy_hits,
                "policy_recall": self.policy_hits / self.eligible if self.eligible else None,
                "policy_miss_examples": self.policy_misses}


def evaluate_recall(registry: Registry, pieces: Sequence[Excerpt], variants: Sequence[Variant], seed: int,
                    truth: Registered, policy: Policy | None = None, keep_misses: int = 5
                    ) -> dict[tuple[str, str], Tally]:
    """Scan every excerpt under every variant of its language; tallies per (language, variant)."""
    policy = policy or default_policy()
    tallies: dict[tuple[str, str], Tally] = {}
    for index, piece in enumerate(pieces):
        lang = piece.doc.lang
        by_text = text_guaranteed(piece.text)
        by_code = code_guaranteed(piece) if lang == "code" else False
        for variant in variants:
            if lang not in variant.langs:
                continue
            rng = random.Random(f"{seed}/{index}/{variant.name}")
            body = variant.apply(piece, rng)
            prompt = prompt_for(variant, lang, body)
            matches = scan([TextPart("messages[0].content", prompt)], registry)
            found = hit(matches, piece.doc.id)
            tally = tallies.setdefault((lang, variant.name), Tally())
            if not (by_code if variant.code_only else by_text):
                tally.short += 1
                tally.short_hits += found
                continue
            if not found:
                share = registry.max_item_share
                if variant.code_only:
                    inside = truth.code_distinctive(piece, share)
                else:
                    inside = truth.distinctive(piece.text, share)
                if not inside:
                    tally.boilerplate += 1
                    continue
            tally.eligible += 1
            tally.hits += found
            tally.spans.append(max((m.end - m.start for m in matches if m.item_id == piece.doc.id), default=0))
            kept = hit(counting(matches, policy), piece.doc.id)
            tally.policy_hits += kept
            if found and not kept and len(tally.policy_misses) < keep_misses:
                tally.policy_misses.append({"item": piece.doc.id, "chars": len(piece.text),
                                            "normalized_chars": len(normalize(piece.text).text),
                                            "span_chars": tally.spans[-1], "excerpt": piece.text[:200]})
            if not found and len(tally.misses) < keep_misses:
                tally.misses.append({"item": piece.doc.id, "start": piece.start, "chars": len(piece.text),
                                     "normalized_chars": len(normalize(piece.text).text), "excerpt": piece.text[:200],
                                     "prompt": prompt[:300]})
    return tallies


@dataclass(slots=True)
class FalsePositives:
    """Prompts cut from unregistered documents, scanned against the registered half.

    A prompt that shares a run of at least T normalized characters with a registered document
    (`Registered.copied`: Debian's pages repeat licences, credits, whole pages under two names) is a
    *copy*, which the engine is bound to report; the false-positive rate is taken over the others.
    """

    prompts: int = 0
    raw: int = 0  # prompts with any match
    counted: int = 0  # prompts with a match surviving the policy thresholds
    copied: int = 0
    copied_counted: int = 0
    unrelated_raw: int = 0
    unrelated_counted: int = 0
    per_lang: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: list[dict[str, object]] = field(default_factory=list)
    copy_examples: list[dict[str, object]] = field(default_factory=list)
    spans: list[int] = field(default_factory=list)  # per unrelated prompt: longest counted span (0: none)
    langs: list[str] = field(default_factory=list)  # per unrelated prompt: its language
    code_channel: int = 0  # counted false positives sharing no text gram with any registered document

    @property
    def unrelated(self) -> int:
        return self.prompts - self.copied

    @property
    def rate(self) -> float:
        """False positives: unrelated prompts with a match that the shipped policy counts."""
        return self.unrelated_counted / self.unrelated if self.unrelated else 0.0

    @property
    def raw_rate(self) -> float:
        """Unrelated prompts with any match at all."""
        return self.unrelated_raw / self.unrelated if self.unrelated else 0.0

    def as_dict(self) -> dict[str, object]:
        return {"prompts": self.prompts, "copies_of_registered_text": self.copied, "unrelated": self.unrelated,
                "fp_counted": self.unrelated_counted, "fp_rate": self.rate, "fp_raw": self.unrelated_raw,
                "fp_raw_rate": self.raw_rate, "fp_code_channel_only": self.code_channel,
                "all_prompts_counted": self.counted,
                "all_prompts_counted_rate": self.counted / self.prompts if self.prompts else 0.0,
                "all_prompts_raw": self.raw, "copies_counted": self.copied_counted, "per_lang": self.per_lang,
                "fp_examples": self.examples, "copy_examples": self.copy_examples}


def evaluate_false_positives(registry: Registry, prompts: Sequence[Excerpt], policy: Policy, truth: Registered,
                             keep_examples: int = 10) -> FalsePositives:
    result = FalsePositives()
    for piece in prompts:
        lang = piece.doc.lang
        head, tail = CARRIER[lang]
        prompt = head + piece.text + tail
        matches = scan([TextPart("messages[0].content", prompt)], registry)
        kept = counting(matches, policy)
        copied = truth.copied(piece.text)
        row = result.per_lang.setdefault(lang, {"prompts": 0, "copies": 0, "fp_counted": 0, "fp_raw": 0,
                                                "fp_code_channel_only": 0})
        result.prompts += 1
        row["prompts"] += 1
        result.raw += bool(matches)
        result.counted += bool(kept)
        if copied:
            result.copied += 1
            row["copies"] += 1
            result.copied_counted += bool(kept)
        else:
            result.unrelated_raw += bool(matches)
            result.spans.append(max((m.end - m.start for m in kept), default=0))
            result.langs.append(lang)
            if kept and not truth.shares_gram(piece.text):
                result.code_channel += 1
                row["fp_code_channel_only"] += 1
            result.unrelated_counted += bool(kept)
            row["fp_raw"] += bool(matches)
            row["fp_counted"] += bool(kept)
        examples = result.copy_examples if copied else result.examples
        if kept and len(examples) < keep_examples:
            m = max(kept, key=lambda m: m.end - m.start)
            examples.append({"prompt_doc": piece.doc.id, "prompt_chars": len(piece.text), "item": m.item_id,
                             "kind": m.kind, "span_chars": m.end - m.start, "item_coverage": m.item_coverage,
                             "request_coverage": m.request_coverage, "score": m.score,
                             "matched_text": prompt[m.start : m.end][:200]})
    return result


# -- translation (reported only) ------------------------------------------------------------------------------
def translation_pairs(documents: Sequence[Document]) -> list[tuple[Document, Document]]:
    """(English, Japanese) versions of the same section or man page."""
    by_pair: dict[str, dict[str, Document]] = {}
    for doc in documents:
        if doc.pair and doc.lang in ("en", "ja"):
            by_pair.setdefault(doc.pair, {})[doc.lang] = doc
    return [(v["en"], v["ja"]) for _, v in sorted(by_pair.items()) if len(v) == 2]


def evaluate_translation(pairs: Sequence[tuple[Document, Document]], count: int, seed: int
                         ) -> dict[str, dict[str, object]]:
    """Register one language's version, scan excerpts of the other's; both directions."""
    results: dict[str, dict[str, object]] = {}
    for direction, (registered_lang, scanned_lang) in {"en->ja": ("en", "ja"), "ja->en": ("ja", "en")}.items():
        rng = random.Random(f"{seed}/translation/{direction}")
        registry = Registry(SECRET)
        items: dict[str, Document] = {}
        scanned: list[Document] = []
        for en, ja in pairs:
            source, target = (en, ja) if registered_lang == "en" else (ja, en)
            registry.add_item(source.id, "nda", Category.BUSINESS, source.text)
            items[target.id] = source
            scanned.append(target)
        grams = {}
        tested = hits = untranslated = 0
        for piece in excerpts(scanned, count * 3, rng):
            if tested >= count:
                break
            if not text_guaranteed(piece.text):
                continue
            source = items[piece.doc.id]
            if source.id not in grams:
                source_grams = _FINGERPRINTER.text(normalize(source.text).text, every_gram=True).values
                grams[source.id] = set(source_grams.tolist())
            mine = _FINGERPRINTER.text(normalize(piece.text).text, every_gram=True).values.tolist()
            if grams[source.id].intersection(mine):
                untranslated += 1  # shares text with the original: not a translation
                continue
            head, tail = CARRIER[scanned_lang]
            tested += 1
            hits += hit(scan([TextPart("m", head + piece.text + tail)], registry), source.id)
        results[direction] = {"pairs": len(pairs), "excerpts": tested, "hits": hits,
                              "recall": hits / tested if tested else None, "skipped_untranslated": untranslated}
    return results


def evaluate_paraphrase(registry: Registry, pieces: Sequence[Excerpt], seed: int) -> dict[str, dict[str, object]]:
    results: dict[str, dict[str, object]] = {}
    for lang in ("en", "ja"):
        tested = hits = 0
        for index, piece in enumerate(p for p in pieces if p.doc.lang == lang):
            if not text_guaranteed(piece.text):
                continue
            rng = random.Random(f"{seed}/paraphrase/{index}")
            head, tail = CARRIER[lang]
            tested += 1
            hits += hit(scan([TextPart("m", head + paraphrase(piece.text, lang, rng) + tail)], registry), piece.doc.id)
        results[lang] = {"excerpts": tested, "hits": hits, "recall": hits / tested if tested else None}
    return results


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return round(time.perf_counter() - self.start, 2)
