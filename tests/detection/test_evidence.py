"""The evidence a match needs: several fingerprints in one run, and code idioms as background.

`Registry` explains why (phrases and idioms that documents of one field share were most false
positives); these tests pin the guarantee that comes with it: every shared run of T characters is
found, a shared run too short to hold the required grams never is, and a code idiom every project
has makes no match on its own while a renamed copy of real code still does.
"""

from __future__ import annotations

import pytest

from gateway.detection.fingerprint import CHANNEL_CODE, CHANNEL_TEXT
from gateway.detection.registry import Registry
from gateway.domain import Category, TextPart
from gateway.normalize import normalize

from .conftest import EN_PLAN, EN_UNRELATED, JA_DESIGN, JA_UNRELATED, PY_SOURCE, SECRET

DELEGATING = '''
    def readable(self):
        return self.raw.readable()

    def writable(self):
        return self.raw.writable()

    def seekable(self):
        return self.raw.seekable()

    def fileno(self):
        return self.raw.fileno()

    def isatty(self):
        return self.raw.isatty()

    def close(self):
        return self.raw.close()
'''
WRAPPER = "class Wrapper:\n    def __init__(self, raw):\n        self.raw = raw\n" + DELEGATING


def _found(registry: Registry, prompt: str, item_id: str) -> bool:
    return any(m.item_id == item_id for m in registry.scan([TextPart("messages[0].content", prompt)]).matches)


@pytest.mark.parametrize(("text", "carrier", "cjk"), [(EN_PLAN, JA_UNRELATED, False), (JA_DESIGN, EN_UNRELATED, True)],
                         ids=["en", "ja"])
def test_every_run_of_T_characters_is_found_and_two_shared_grams_never_are(registry: Registry, text: str,
                                                                           carrier: str, cjk: bool) -> None:
    """The carrier is in the other script, so a shared run cannot grow by a letter it happens to share."""
    registry.add_item("item", "nda", Category.BUSINESS, text)
    norm = normalize(text).text
    t = registry.guarantee(CHANNEL_TEXT, cjk=cjk)
    k = registry.fingerprinter.text_params.k_cjk if cjk else registry.fingerprinter.text_params.k_latin
    assert registry.run_fingerprints[CHANNEL_TEXT] == 3 and t == k + 3 * registry.fingerprinter.text_params.window - 1
    for start in range(0, len(norm) - t, 3):
        assert _found(registry, f"{carrier}\n{norm[start:start + t]}\n{carrier}", "item"), start
    # k + 1 characters hold two grams: never the three distinct fingerprints a match needs, wherever they are.
    for start in range(0, len(norm) - k - 1, 3):
        assert not _found(registry, f"{carrier}\n{norm[start:start + k + 1]}\n{carrier}", "item"), start


def test_a_lone_shared_gram_matched_before_the_evidence_rule_and_no_longer_does() -> None:
    """The same registry with one fingerprint per run (the former rule) finds a bare gram; the default does not."""
    norm = normalize(EN_PLAN).text
    single = Registry(SECRET, text_run=1)
    default = Registry(SECRET)
    for registry in (single, default):
        registry.add_item("plan", "nda", Category.BUSINESS, EN_PLAN)
    k = single.fingerprinter.text_params.k_latin
    kept = single.fingerprinter.text(norm)
    # A bare kept gram matches under the former rule when the prompt's own winnowing keeps it too. Japanese
    # around it, so the shared run cannot grow by a letter the carrier happens to share.
    lone = [g for s in kept.starts.tolist()
            if _found(single, f"{JA_UNRELATED}\n{(g := norm[s:s + k])}\n{JA_UNRELATED}", "plan")]
    assert len(lone) >= 5
    assert not any(_found(default, f"{JA_UNRELATED}\n{gram}\n{JA_UNRELATED}", "plan") for gram in lone)


def test_a_code_idiom_of_every_project_is_background_and_no_match_on_its_own() -> None:
    with_idioms, without = Registry(SECRET), Registry(SECRET, code_idioms=False)
    for registry in (with_idioms, without):
        registry.add_item("module", "nda", Category.SOURCE_CODE, WRAPPER + PY_SOURCE, source_code=True,
                          language="python")
    other_project = DELEGATING.replace("raw", "buffer")  # the same idiom in someone else's class
    prompt = f"Can you review this?\n```python\n{other_project}\n```"
    grams = with_idioms.fingerprinter.code(other_project, every_gram=True).values
    assert with_idioms.is_background(grams).all() and not without.is_background(grams).any()
    assert _found(without, prompt, "module")  # what the idiom did before: a match on structure alone
    assert not _found(with_idioms, prompt, "module")
    renamed = (PY_SOURCE.replace("schedule_learning_rate", "lr").replace("warmup_steps", "ws")
               .replace("base_rate", "b").replace("clip_gradients", "clip").replace("grads", "gs")
               .replace("max_norm", "mn"))
    assert _found(with_idioms, f"```python\n{renamed}\n```", "module")  # real code, renamed, is still found


def test_the_code_guarantee_is_in_tokens_and_follows_the_run_rule(registry: Registry) -> None:
    params = registry.fingerprinter.code_params
    assert registry.guarantee(CHANNEL_CODE) == params.k_latin + registry.run_fingerprints[CHANNEL_CODE] * params.window - 1
    assert Registry(SECRET, code_run=1).guarantee(CHANNEL_CODE) == params.t_latin
    with pytest.raises(ValueError):
        Registry(SECRET, text_run=0)
