"""Keyed winnowing fingerprints of normalized text and of source code.

Design (Schleimer, Wilkerson, Aiken, "Winnowing", SIGMOD 2003):

1. Every position of the normalized text starts one *gram*. A gram is the
   shortest run whose weight reaches ``gram_weight``; CJK characters (kanji,
   kana, Hangul) weigh ``cjk_weight`` and everything else weighs 1. With the
   text defaults (36, CJK weight 2) a gram is 36 Latin characters or 18 CJK
   characters, and a mixed run something in between. Because a gram depends
   only on the characters it spans, Japanese quoted inside an English prompt
   (or English inside Japanese) is cut into exactly the grams it was registered
   with: no per-document language decision can disagree between registration
   and scan.
2. Each gram gets a 64-bit polynomial hash mod 2**64 over keyed per-character
   values, computed for all positions at once from prefix sums (steps 2-4
   run as compiled loops: `gateway.detection.kernels`).
3. In every window of ``window`` consecutive grams the gram with the smallest
   keyed *selection* value is kept (rightmost on ties); consecutive windows
   usually keep the same gram, so about 2/(window+1) of the positions survive.
4. Only the kept grams get their *stored* value: SipHash-1-3, under a key
   derived from the deployment secret, of the gram's polynomial hash, with the
   top two bits naming the channel (text or code). The registry stores nothing
   else, so holding it without the secret cannot confirm a guessed text (the
   polynomial hash is never stored, and SipHash is a PRF), as Article 5(3)
   asks. Computing SipHash only for kept grams keeps it off the hot path.

Guarantee: a run of normalized text shared by a prompt and a registered item
holds ``window`` whole grams as soon as it is ``T = k + window - 1`` characters
long, and both sides then keep the same gram of that window. With the text
defaults T is 21 characters of CJK text (k=18, w=4) and 39 of Latin text
(k=36, w=4). Why long grams and a short window rather than the reverse (k=24,
w=16 gives the same Latin T with a third of the fingerprints): a single
shared gram is a match, so k is the shortest shared run that can match at
all. Documents of one domain share many phrases of 24-38 characters (paths,
option lists, titles); with k close to T almost nothing shorter than T
matches (the evaluation measured unrelated prompts with a match falling from
15% to under 1%), at the price of keeping 2/(w+1) = 40% of the grams.

Source code gets a second channel: the code is cut into *canonical tokens*
(identifiers become one placeholder, keywords, numbers and operators are
kept, string literals are reduced to a hash of their folded content,
comments and triple-quoted docstrings vanish, whitespace is ignored) and the
same winnowing runs over tokens (k=28 tokens, w=4: any shared run of 31
canonical tokens, two to four lines, is found, whatever the renaming,
comments or layout). Grams that repeat themselves with a short period
(``self.a = a`` lines, argument lists: `_repetitive`) are idioms every module
shares and are never kept. The
tokenizer is a regex plus numpy pass, cheap enough for every prompt and
independent of the language; at registration Pygments first removes the
comments of the item's language exactly (`strip_comments`), so comment syntaxes
the heuristic does not know cannot hide code either.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.detection import kernels
from gateway.normalize import fold

__all__ = [
    "CHANNEL_CODE",
    "CHANNEL_TEXT",
    "CODE_PARAMS",
    "TEXT_PARAMS",
    "Fingerprinter",
    "Fingerprints",
    "WinnowParams",
    "code_points",
    "strip_comments",
]

U64 = np.uint64
UInt64Array = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.int64]

CHANNEL_TEXT = 0
CHANNEL_CODE = 1
_CHANNEL_SHIFT = 62
_VALUE_MASK = U64((1 << _CHANNEL_SHIFT) - 1)


@dataclass(frozen=True, slots=True)
class WinnowParams:
    """How long a gram is and how far apart kept grams may be.

    ``gram_weight`` is k for text of weight-1 characters (Latin, digits, code
    tokens); CJK characters weigh ``cjk_weight``, so their k is
    ``gram_weight / cjk_weight``. The guarantee threshold is
    ``T = k + window - 1``.
    """

    gram_weight: int
    window: int
    cjk_weight: int = 1

    def __post_init__(self) -> None:
        if self.gram_weight < 1 or self.window < 1 or self.cjk_weight < 1:
            raise ValueError("winnowing parameters must be positive")

    @property
    def k_latin(self) -> int:
        """Gram length in weight-1 characters (or tokens)."""
        return self.gram_weight

    @property
    def k_cjk(self) -> int:
        """Gram length in CJK characters."""
        return -(-self.gram_weight // self.cjk_weight)

    @property
    def t_latin(self) -> int:
        """Shortest shared Latin run (or token run) that is always found."""
        return self.k_latin + self.window - 1

    @property
    def t_cjk(self) -> int:
        """Shortest shared CJK run that is always found."""
        return self.k_cjk + self.window - 1


TEXT_PARAMS = WinnowParams(gram_weight=36, window=4, cjk_weight=2)
CODE_PARAMS = WinnowParams(gram_weight=28, window=4)

# Stored fingerprints match only fingerprints made the same way. Raise this whenever normalization, the
# gram and window sizes, code tokenization or the idiom filter change: items stored under an older scheme
# can no longer be found, and since their text is never kept they must be registered again.
# 1: before versioning (k 24/12, w 4 text; 12 code tokens). 2: k 36/18 text, 28 code tokens, NFD kana folding.
FINGERPRINT_SCHEME = 2


@dataclass(frozen=True, slots=True)
class Fingerprints:
    """Kept grams of one text: stored values and where each gram sits.

    ``starts``/``ends`` are offsets in the normalized text for the text
    channel and in the given source string for the code channel.
    """

    values: UInt64Array
    starts: IntArray
    ends: IntArray

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @classmethod
    def empty(cls) -> Fingerprints:
        """No fingerprints: text shorter than one gram."""
        return cls(np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, np.int64))


def code_points(text: str) -> npt.NDArray[np.uint32]:
    """The code points of `text` as a numpy array (lone surrogates allowed)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _mix(x: UInt64Array) -> UInt64Array:
    """splitmix64's finalizer: spreads every input bit over the output."""
    x = x ^ (x >> U64(30))
    x = x * U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> U64(27))
    x = x * U64(0x94D049BB133111EB)
    return x ^ (x >> U64(31))


IDIOM_PERIOD = 12
IDIOM_SHARE = 0.85


def _repetitive(symbols: UInt64Array, k: int) -> npt.NDArray[np.bool_]:
    """Code grams that repeat themselves with a short period: idioms, not anyone's code.

    With identifiers canonicalised, ``self.a = a; self.b = b; ...``, argument
    lists (``a, b, c, d, ...``) and runs of ``x = y.replace(...)`` are the same
    few tokens over and over, and unrelated modules share them. A gram whose
    tokens equal the tokens `p` places later (for some `p` up to
    `IDIOM_PERIOD`) at `IDIOM_SHARE` of its positions is such an idiom; it
    depends only on the gram's own tokens, so registration and scan agree.
    """
    n = symbols.shape[0]
    m = n - k + 1
    barred = np.zeros(max(m, 0), bool)
    if m <= 0:
        return barred
    starts = np.arange(m)
    for p in range(1, min(IDIOM_PERIOD, k - 1) + 1):
        same = np.zeros(n - p + 1, np.int64)
        np.cumsum(symbols[p:] == symbols[:-p], out=same[1:])
        barred |= (same[starts + k - p] - same[starts]) >= IDIOM_SHARE * (k - p)
    return barred


def _cjk_table() -> npt.NDArray[np.bool_]:
    table = np.zeros(0x10000, bool)
    for lo, hi in ((0x3040, 0x3100), (0x3400, 0xA000), (0xAC00, 0xD7B0), (0xF900, 0xFB00)):
        table[lo:hi] = True
    return table


_CJK_BMP = _cjk_table()


class _Channel:
    """The keys and cached powers of one fingerprint channel."""

    def __init__(self, secret: bytes, name: str, channel: int) -> None:
        material = hashlib.blake2b(secret, digest_size=64, person=b"shuhi-fp", salt=name.encode()[:16]).digest()
        words = [int.from_bytes(material[i : i + 8], "little") for i in range(0, 64, 8)]
        self.char_key = U64(words[0])
        self.base = words[1] | 1
        self.base_inv = pow(self.base, -1, 1 << 64)
        self.select_key = U64(words[2])
        self.sip_k0, self.sip_k1 = U64(words[3]), U64(words[4])
        self.tag = U64(channel << _CHANNEL_SHIFT)
        self._powers = np.ones(1, np.uint64)
        self._inverse_powers = np.ones(1, np.uint64)
        self._bmp: UInt64Array | None = None

    def powers(self, n: int) -> tuple[UInt64Array, UInt64Array]:
        if self._powers.shape[0] <= n:
            size = max(n + 1, 2 * self._powers.shape[0], 4096)
            for attr, base in (("_powers", self.base), ("_inverse_powers", self.base_inv)):
                arr = np.full(size, U64(base))
                arr[0] = 1
                np.cumprod(arr, out=arr)
                setattr(self, attr, arr)
        return self._powers[: n + 1], self._inverse_powers[: n + 1]

    def store(self, raw: UInt64Array) -> UInt64Array:
        """The stored form of gram hashes: keyed PRF output tagged with the channel."""
        stored = kernels.siphash13(self.sip_k0, self.sip_k1, raw)
        np.bitwise_and(stored, _VALUE_MASK, out=stored)
        np.bitwise_or(stored, self.tag, out=stored)
        return stored

    def grams(self, symbols: npt.NDArray[np.unsignedinteger], gram_weight: int,
              cjk_weight: int = 1) -> tuple[UInt64Array, IntArray]:
        """Hash of the gram starting at each position, and where it ends (exclusive): `kernels.gram_hashes`.

        With `cjk_weight` 1 every symbol weighs 1 and a gram is `gram_weight`
        symbols long.
        """
        if self._bmp is None:
            self._bmp = _mix(np.arange(0x10000, dtype=np.uint64) ^ self.char_key)
        powers, inverse = self.powers(symbols.shape[0])
        cjk = _CJK_BMP if cjk_weight != 1 else _NONE
        return kernels.gram_hashes(symbols, self.char_key, self._bmp, powers, inverse, gram_weight, cjk, cjk_weight)

    def winnow(self, hashes: UInt64Array, window: int, barred: npt.NDArray[np.bool_] | None = None) -> IntArray:
        """Positions of the grams kept by robust winnowing (`kernels.winnow`).

        `barred` grams (code idioms) are never kept: a window keeps one of
        its other grams; a window of barred grams only keeps nothing.
        """
        return kernels.winnow(hashes, self.select_key, window, _NONE if barred is None else barred)


_NONE = np.zeros(0, bool)  # the kernels' "no such array": no barred grams, no CJK weights


class Fingerprinter:
    """Turns normalized text and source code into keyed fingerprints.

    One instance per deployment secret; it caches powers of the hash bases,
    so reuse it. Not thread-safe while the cache grows.
    """

    def __init__(self, secret: bytes, *, text: WinnowParams = TEXT_PARAMS, code: WinnowParams = CODE_PARAMS) -> None:
        if len(secret) < 16:
            raise ValueError("the fingerprint secret must be at least 16 bytes")
        self.text_params = text
        self.code_params = code
        self._text = _Channel(secret, "text", CHANNEL_TEXT)
        self._code = _Channel(secret, "code", CHANNEL_CODE)
        self._token_key = _Channel(secret, "token", CHANNEL_CODE)
        kernels.warm()  # compiled or loaded once per process, before the first request rather than during it

    # -- text -------------------------------------------------------------
    def text(self, normalized: str, *, every_gram: bool = False) -> Fingerprints:
        """Fingerprints of normalized text; `every_gram` skips winnowing (exclusions, background)."""
        symbols: npt.NDArray[np.unsignedinteger]
        cjk_weight = 1
        if normalized.isascii():  # one byte per character, and every character weighs 1
            symbols = np.frombuffer(normalized.encode("ascii"), np.uint8)
        else:
            symbols = code_points(normalized)
            cjk_weight = self.text_params.cjk_weight
        hashes, ends = self._text.grams(symbols, self.text_params.gram_weight, cjk_weight)
        return self._select(self._text, hashes, ends, self.text_params.window,
                            every_gram, None, None)

    # -- code -------------------------------------------------------------
    def code(self, source: str, *, every_gram: bool = False) -> Fingerprints:
        """Fingerprints of the canonical token stream of `source`; spans are offsets in `source`."""
        symbols, tok_starts, tok_ends = self._tokens(source)
        hashes, ends = self._code.grams(symbols, self.code_params.gram_weight)
        barred = _repetitive(symbols, self.code_params.gram_weight) if hashes.shape[0] else None
        return self._select(self._code, hashes, ends, self.code_params.window,
                            every_gram, tok_starts, tok_ends, barred)

    def _select(self, channel: _Channel, hashes: UInt64Array, ends: IntArray, window: int,
                every_gram: bool, tok_starts: IntArray | None, tok_ends: IntArray | None,
                barred: npt.NDArray[np.bool_] | None = None) -> Fingerprints:
        if hashes.shape[0] == 0:
            return Fingerprints.empty()
        if every_gram:
            chosen = np.arange(hashes.shape[0], dtype=np.int64)
            if barred is not None:
                chosen = chosen[~barred]
        else:
            chosen = channel.winnow(hashes, window, barred)
        if chosen.shape[0] == 0:
            return Fingerprints.empty()
        starts = chosen
        gram_ends = ends[chosen]
        if tok_starts is not None and tok_ends is not None:
            starts, gram_ends = tok_starts[starts], tok_ends[gram_ends - 1]
        return Fingerprints(channel.store(hashes[chosen]), starts.astype(np.int64), gram_ends.astype(np.int64))

    def _tokens(self, source: str) -> tuple[UInt64Array, IntArray, IntArray]:
        """Canonical tokens of `source`: symbol values and their spans."""
        cps = code_points(source).astype(np.int64)
        n = cps.shape[0]
        cls = np.where(cps < 128, _ASCII_CLASS[np.minimum(cps, 127)], _WORD)
        string_starts: list[int] = []
        string_ends: list[int] = []
        string_values: list[int] = []
        head = _inside_docstring_at_start(source)
        cls[:head] = _SPACE
        for match in _LITERALS.finditer(source, head):
            start, end = match.span()
            cls[start:end] = _SPACE
            if match.lastgroup == "string":
                body = match.group()[1:-1]
                digest = hashlib.blake2b(fold(body).encode("utf-8", "surrogatepass"), digest_size=8).digest()
                string_starts.append(start)
                string_ends.append(end)
                string_values.append(int.from_bytes(digest, "little") | 1)
        is_word = cls == _WORD
        prev_word = np.zeros(n, bool)
        prev_word[1:] = is_word[:-1]
        next_word = np.zeros(n, bool)
        next_word[:-1] = is_word[1:]
        word_starts = np.flatnonzero(is_word & ~prev_word)
        word_ends = np.flatnonzero(is_word & ~next_word) + 1
        # Unkeyed polynomial hash of each lowercased word, to recognise keywords and numbers.
        lowered = np.where((cps >= 65) & (cps <= 90), cps + 32, cps).astype(np.uint64)
        powers, inverse = _WORD_CHANNEL.powers(n)
        prefix = np.zeros(n + 1, np.uint64)
        np.cumsum((lowered + U64(1)) * powers[:n], out=prefix[1:])
        word_hash = (prefix[word_ends] - prefix[word_starts]) * inverse[word_starts]
        first = cps[word_starts] if n else cps[:0]
        keep_text = np.isin(word_hash, _KEYWORD_HASHES) | ((first >= 48) & (first <= 57))
        word_values = np.where(keep_text, word_hash, U64(_IDENTIFIER))
        other = np.flatnonzero(cls == _OTHER)
        starts = np.concatenate([word_starts, other, np.asarray(string_starts, np.int64)])
        ends = np.concatenate([word_ends, other + 1, np.asarray(string_ends, np.int64)])
        values = np.concatenate([word_values, cps[other].astype(np.uint64) + U64(_PUNCT_TAG),
                                 np.asarray(string_values, np.uint64)])
        order = np.argsort(starts, kind="stable")
        return _mix(values[order] ^ self._token_key.char_key), starts[order], ends[order]


_CODE_SIGNS = re.compile(r"[=(){}\[\]:]")


def _inside_docstring_at_start(source: str) -> int:
    """Where a docstring cut by the start of a pasted excerpt ends (0 if there is none).

    An excerpt that begins inside a docstring has an odd number of triple
    quotes; pairing them from the left would take the code between this
    docstring's end and the next one's start for a docstring. When nothing
    code-like precedes the first triple quote, it is taken to close a
    docstring the excerpt began in.
    """
    for quote in ('"""', "'''"):
        first = source.find(quote)
        if first >= 0 and source.count(quote) % 2 == 1 and not _CODE_SIGNS.search(source, 0, first):
            return first + 3
    return 0


def strip_comments(source: str, language: str | None = None, filename: str | None = None) -> str:
    """Remove comments and docstrings with the Pygments lexer of the item's language.

    Used at registration only (Pygments costs milliseconds per kilobyte). The
    language comes from `language` (a Pygments alias such as ``python``),
    else from `filename`, else from Pygments' guess; if none fits the source
    is returned unchanged and the scan-time heuristic still drops the common
    comment syntaxes.
    """
    from pygments.lexers import get_lexer_by_name, get_lexer_for_filename, guess_lexer
    from pygments.token import Comment, String
    from pygments.util import ClassNotFound

    options = {"stripnl": False, "ensurenl": False, "stripall": False}
    try:
        if language:
            lexer = get_lexer_by_name(language, **options)
        elif filename:
            lexer = get_lexer_for_filename(filename, source, **options)
        else:
            lexer = guess_lexer(source, **options)
    except ClassNotFound:
        return source
    pieces: list[str] = []
    for token_type, value in lexer.get_tokens(source):
        if token_type in Comment or token_type in String.Doc:
            pieces.append("\n" if "\n" in value else " ")
        else:
            pieces.append(value)
    return "".join(pieces)


# Character classes for the canonical tokenizer.
_SPACE, _WORD, _OTHER = 0, 1, 2
_ASCII_CLASS = np.full(128, _OTHER, np.int64)
for _c in range(128):
    if chr(_c).isspace() or _c < 32 or _c == 127:
        _ASCII_CLASS[_c] = _SPACE
    elif chr(_c).isalnum() or chr(_c) in "_$":
        _ASCII_CLASS[_c] = _WORD
_IDENTIFIER = 0x5EED_1D
_PUNCT_TAG = 1 << 40
_LITERALS = re.compile(
    r"(?P<fence>```[^\n]*|~~~[^\n]*)"  # Markdown code fences around pasted code
    r'|(?P<doc>"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\')'
    r'|(?P<string>"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`(?:[^`\\]|\\.)*`)'
    r"|(?P<comment>/\*[\s\S]*?\*/|//[^\n]*|#[^\n]*|<!--[\s\S]*?-->)"
)
_WORD_CHANNEL = _Channel(b"shuhi-keyword-recognition", "word", CHANNEL_CODE)
# Words kept as themselves: reserved in Python or in the C family, so no one renames them. Words that
# are keywords elsewhere but ordinary names in Python (type, default, values, end, this, match, order,
# select...) are identifiers like any other: renaming them must not change the token stream.
_KEYWORDS = """
and as assert async await break catch class const continue def del do elif else except extends extern false
finally float for from global goto if implements import in instanceof int is lambda nonlocal not null none or
pass private protected public raise return signed sizeof static struct switch synchronized throw throws true
try typedef typeof unsigned void volatile while with yield
""".split()


def _keyword_hashes() -> UInt64Array:
    hashes = []
    for word in sorted(set(_KEYWORDS)):
        cps = np.frombuffer(word.encode("utf-32-le"), np.uint32).astype(np.uint64)
        powers, _ = _WORD_CHANNEL.powers(len(word))
        hashes.append(int(np.sum((cps + U64(1)) * powers[: len(word)], dtype=np.uint64)))
    return np.unique(np.asarray(hashes, np.uint64))


_KEYWORD_HASHES = _keyword_hashes()
