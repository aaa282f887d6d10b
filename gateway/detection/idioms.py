"""Code idioms every Python project shares, as background fingerprints of the code channel.

The code channel canonicalises identifiers, so a delegating method (``def readable(self): return
self.raw.readable()``), an ``__init__`` copying its arguments, or a table of numbered constants is
the same token stream in any two modules, and a prompt holding one matched every registered module
that has it: on the detection evaluation these were most of the false positives left once a match
needed three fingerprints in one run. `code_idioms.txt.gz` holds such idioms as identifier-free
skeletons, learnt from installed third-party packages (never the standard library the evaluation
registers) by `gateway.detection.idioms_build`. Their grams, keyed like any fingerprint, join the
registry's background: they never make a match on their own, and a run made only of them is outside
the guarantee, like a licence header.

Nothing is downloaded: the file ships in the package. If it is missing (a packaging mistake), the
registry works without it and a warning says so: idioms then match as before, which costs false
positives and never hides material.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gateway.detection.fingerprint import Fingerprinter

__all__ = ["IDIOMS_FILE", "idiom_fingerprints"]

IDIOMS_FILE = Path(__file__).with_name("code_idioms.txt.gz")
_log = logging.getLogger(__name__)
_lock = threading.Lock()
_text: str | None = None
_by_key: dict[bytes, npt.NDArray[np.uint64]] = {}


def _skeletons() -> str:
    global _text
    if _text is None:
        try:
            with gzip.open(IDIOMS_FILE, "rt", encoding="utf-8") as source:
                _text = source.read()
        except OSError as exc:
            _log.warning("code idioms unavailable (%s): structural code idioms can match", type(exc).__name__)
            _text = ""
    return _text


def idiom_fingerprints(secret: bytes, fingerprinter: Fingerprinter) -> npt.NDArray[np.uint64]:
    """Every code gram of the shipped idioms under this deployment's key, sorted and unique.

    Computed once per secret, code parameters and process, then shared by every registry that has them.
    """
    key = hashlib.blake2b(secret + repr(fingerprinter.code_params).encode(), digest_size=16,
                          person=b"shuhi-idioms").digest()
    with _lock:
        cached = _by_key.get(key)
        if cached is None:
            text = _skeletons()
            values = fingerprinter.code(text, every_gram=True).values if text else np.empty(0, np.uint64)
            cached = np.unique(values)
            _by_key[key] = cached
        return cached
