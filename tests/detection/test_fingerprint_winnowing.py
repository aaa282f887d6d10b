from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.detection.fingerprint import CODE_PARAMS, TEXT_PARAMS, Fingerprinter, strip_comments
from gateway.normalize import normalize

from .conftest import EN_PLAN, JA_DESIGN, PY_SOURCE, SECRET

FP = Fingerprinter(SECRET)


def test_default_thresholds_are_documented_values() -> None:
    assert (TEXT_PARAMS.k_latin, TEXT_PARAMS.k_cjk, TEXT_PARAMS.window) == (36, 18, 4)
    assert (TEXT_PARAMS.t_latin, TEXT_PARAMS.t_cjk) == (39, 21)
    assert (CODE_PARAMS.k_latin, CODE_PARAMS.t_latin) == (28, 31)


def test_idioms_of_canonical_tokens_are_never_kept_and_the_rest_of_the_code_is() -> None:
    """Runs of `self.x = x` or of bare argument names are shared by unrelated code: no fingerprint."""
    assert len(FP.code("".join(f"        self.{n} = {n}\n" for n in "abcdefghijklmnop"))) == 0
    assert len(FP.code("    return combine(" + ", ".join("abcdefghijklmnopqrstuvwxyz") + ")\n")) == 0
    assert len(FP.code(PY_SOURCE)) > 0


def test_an_excerpt_starting_inside_a_docstring_keeps_its_code() -> None:
    """The excerpt's first triple quote closes a docstring; the code after it is not a docstring."""
    whole = FP.code(strip_comments(PY_SOURCE, "python"))
    body = PY_SOURCE[PY_SOURCE.index("(internal recipe v3)."):]
    cut = FP.code(body)
    assert np.intersect1d(whole.values, cut.values).size >= 2


def test_when_the_key_changes_then_every_stored_value_changes() -> None:
    text = normalize(EN_PLAN).text
    a = FP.text(text)
    b = Fingerprinter(b"another-deployment-secret-4567").text(text)
    assert len(a) and len(b)
    assert not np.intersect1d(a.values, b.values).size


def test_fingerprints_are_deterministic_for_one_key() -> None:
    text = normalize(JA_DESIGN).text
    assert np.array_equal(FP.text(text).values, Fingerprinter(SECRET).text(text).values)


def test_gram_spans_lie_inside_the_text() -> None:
    text = normalize(JA_DESIGN + EN_PLAN).text
    prints = FP.text(text)
    assert np.all(prints.starts >= 0) and np.all(prints.ends <= len(text)) and np.all(prints.starts < prints.ends)


_LATIN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=120)
_CJK = st.text(alphabet="秘密情報のモデル学習推論データ顧客契約あいうえおかきくけこアイウエオ", min_size=1, max_size=80)
_MIXED = st.text(alphabet="abcdefghij秘密情報のモデル学習01", min_size=1, max_size=100)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_shared_run_of_at_least_t_characters_is_found(data: st.DataObject) -> None:
    alphabet = data.draw(st.sampled_from([_LATIN, _CJK, _MIXED]))
    left_a, left_b = data.draw(alphabet), data.draw(alphabet)
    right_a, right_b = data.draw(alphabet), data.draw(alphabet)
    cjk_only = all("\u3040" <= ch for ch in "".join([left_a]))
    t = TEXT_PARAMS.t_latin  # the larger threshold holds for any mix of scripts
    shared = data.draw(st.text(alphabet="abcdef秘密情報モデル01", min_size=t, max_size=t + 40))
    del cjk_only
    a = FP.text(left_a + shared + right_a)
    b = FP.text(left_b + shared + right_b)
    assert np.intersect1d(a.values, b.values).size > 0


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="秘密情報のモデル学習推論データ顧客契約", min_size=TEXT_PARAMS.t_cjk, max_size=60), _LATIN, _LATIN)
def test_a_shared_cjk_run_of_t_cjk_characters_is_found(shared: str, left: str, right: str) -> None:
    a = FP.text(left + shared)
    b = FP.text(shared + right)
    assert np.intersect1d(a.values, b.values).size > 0


def test_strip_comments_removes_comments_and_docstrings_only() -> None:
    stripped = strip_comments(PY_SOURCE, "python")
    assert "warm up linearly" not in stripped
    assert "Inverse square root" not in stripped
    assert "global norm" not in stripped
    assert "math.sqrt(warmup_steps / step)" in stripped


def test_code_fingerprints_survive_renaming_reformatting_and_comment_removal() -> None:
    registered = FP.code(strip_comments(PY_SOURCE, "python"))
    disguised = (
        "import math\n"
        "def lr(s, w=4000, b=3e-4, d=0.5):\n"
        "  if s < w: return b * s / w\n"
        "  k = math.sqrt(w / s)\n"
        "  return b * k ** d\n"
        "def clip(gs, m=1.0):\n"
        "  t = math.sqrt(sum(float(x * x) for x in gs))\n"
        "  if t > m:\n"
        "    f = m / (t + 1e-6)\n"
        "    return [x * f for x in gs]\n"
        "  return gs\n"
    )
    found = FP.code(disguised)
    assert np.isin(found.values, registered.values).sum() >= 3
    unrelated = FP.code("for (int i = 0; i < n; ++i) { total += prices[i] * weights[i]; }\nprintf(\"%d\", total);")
    assert not np.isin(unrelated.values, registered.values).any()


def _siphash_reference(key: bytes, message: bytes, c: int, d: int) -> int:
    mask = (1 << 64) - 1
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & mask

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & mask; v[1] = rotl(v[1], 13) ^ v[0]; v[0] = rotl(v[0], 32)  # noqa: E702
            v[2] = (v[2] + v[3]) & mask; v[3] = rotl(v[3], 16) ^ v[2]  # noqa: E702
            v[0] = (v[0] + v[3]) & mask; v[3] = rotl(v[3], 21) ^ v[0]  # noqa: E702
            v[2] = (v[2] + v[1]) & mask; v[1] = rotl(v[1], 17) ^ v[2]; v[2] = rotl(v[2], 32)  # noqa: E702

    blocks = [int.from_bytes(message[i : i + 8], "little") for i in range(0, len(message) - len(message) % 8, 8)]
    tail = message[len(message) - len(message) % 8 :]
    blocks.append(int.from_bytes(tail, "little") | ((len(message) & 0xFF) << 56))
    for m in blocks:
        v[3] ^= m
        rounds(c)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(d)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def test_compiled_siphash_matches_the_reference_construction() -> None:
    from gateway.detection.kernels import siphash13

    key = bytes(range(16))
    # The reference itself reproduces the published SipHash-2-4 vector for bytes 00..07.
    assert _siphash_reference(key, bytes(range(8)), 2, 4) == 0x93F5F5799A932462
    words = np.array([0, 1, 2**63 + 12345, 2**64 - 1], dtype=np.uint64)
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    expected = [_siphash_reference(key, int(w).to_bytes(8, "little"), 1, 3) for w in words]
    assert siphash13(np.uint64(k0), np.uint64(k1), words).tolist() == expected
