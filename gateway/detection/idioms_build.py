"""Build `code_idioms.txt.gz`: code idioms that unrelated Python projects share, as identifier-free skeletons.

    .venv/bin/python -m gateway.detection.idioms_build .venv/lib/python3.11/site-packages

Why: the code channel canonicalises identifiers, so structural idioms (delegating methods, ``__init__``
bodies that copy their arguments, ``__eq__`` comparing fields, tables of numbered constants) are the
same token stream in every project, and a prompt holding one matched any registered module that has
it. Such a gram is boilerplate, like a licence header: `Registry` adds the file to its background, so
idiom grams never make a match on their own.

What counts as an idiom: a gram of canonical code tokens (28 tokens, the code channel's k) found in
at least `MIN_FILES` files of at least `MIN_PROJECTS` different top-level packages among the
installed ones given on the command line. Packages that vendor or backport the Python standard
library (pip, setuptools and its distutils, typing_extensions, importlib backports...) are left out,
so the standard library, which the detection evaluation uses as registered code, is not what the
idioms are learnt from.

What is written: for each run of idiom grams, the run's tokens with every identifier written as
``x`` (keywords, numbers, operators and short string literals as they are; comments and docstrings
are not tokens): a skeleton that canonicalises to exactly the same tokens (each is checked), and no
project's code. Runs holding a string literal longer than `MAX_LITERAL` characters are dropped.
Nothing here runs in the gateway; the file is read at start (`gateway.detection.idioms`).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from gateway.detection.fingerprint import CODE_PARAMS, Fingerprinter

MIN_FILES = 2
MIN_PROJECTS = 2
MAX_LITERAL = 32
SEPARATOR = "'shuhi:idiom'"  # between skeletons: a gram across it holds a literal no real code has
OUTPUT = Path(__file__).with_name("code_idioms.txt.gz")
# Vendored or backported standard-library code, tests of other projects' own, caches.
EXCLUDED = {"pip", "setuptools", "pkg_resources", "_distutils_hack", "typing_extensions.py", "backports",
            "importlib_metadata", "importlib_resources", "zipp", "tomli", "exceptiongroup", "__pycache__",
            "_pytest", "pytest", "gateway", "tests"}
_WORD = re.compile(r"[A-Za-z_$][\w$]*\Z")
_SECRET = b"idiom-counting-key-not-a-secret!"  # counting needs equal grams only, not a deployment's key


def _sources(root: Path) -> dict[str, list[Path]]:
    """Python files per top-level package under a site-packages directory."""
    found: dict[str, list[Path]] = defaultdict(list)
    for top in sorted(os.listdir(root)):
        if top in EXCLUDED or top.endswith((".dist-info", ".egg-info", ".pth")):
            continue
        path = root / top
        if path.is_file():
            if top.endswith(".py"):
                found[top.removesuffix(".py")].append(path)
            continue
        for folder, _, names in os.walk(path):
            if "_vendor" in folder or "vendored" in folder:
                continue
            found[top].extend(Path(folder) / n for n in names if n.endswith(".py"))
    return found


def _skeleton(fingerprinter: Fingerprinter, source: str, identifier: int) -> str | None:
    """The tokens of `source` with identifiers written ``x``; None if a literal is too long or it would not round-trip."""
    symbols, starts, ends = fingerprinter._tokens(source)
    pieces = []
    for symbol, start, end in zip(symbols.tolist(), starts.tolist(), ends.tolist(), strict=True):
        text = source[start:end]
        if text[0] in "\"'`" and len(text) > MAX_LITERAL + 2:
            return None
        pieces.append("x" if symbol == identifier and _WORD.match(text) else text)
    skeleton = " ".join(pieces)
    if not np.array_equal(fingerprinter._tokens(skeleton)[0], symbols):
        return None
    return skeleton


def build(roots: list[Path]) -> tuple[list[str], dict[str, int]]:
    """Skeletons of the idiom runs found under `roots`, and counts for the header."""
    fingerprinter = Fingerprinter(_SECRET)
    identifier = int(fingerprinter._tokens("x")[0][0])
    files: list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]] = []
    for root in roots:
        for project, paths in _sources(root).items():
            for path in paths:
                try:
                    source = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                prints = fingerprinter.code(source, every_gram=True)
                if len(prints):
                    files.append((project, source, prints.values, prints.starts, prints.ends))
    per_file = [np.unique(f[2]) for f in files]
    grams, in_files = np.unique(np.concatenate(per_file), return_counts=True)
    names = {project: i for i, project in enumerate(sorted({f[0] for f in files}))}
    pairs = np.unique(np.stack([np.concatenate(per_file),
                                np.concatenate([np.full(v.shape[0], names[f[0]], np.uint64)
                                                for v, f in zip(per_file, files, strict=True)])]), axis=1)
    _, in_projects = np.unique(pairs[0], return_counts=True)
    wanted = grams[(in_files >= MIN_FILES) & (in_projects >= MIN_PROJECTS)]
    written = np.zeros(wanted.shape[0], bool)

    def position(vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = np.minimum(np.searchsorted(wanted, vals), max(wanted.shape[0] - 1, 0))
        return at, wanted[at] == vals if wanted.shape[0] else np.zeros(vals.shape[0], bool)

    skeletons: list[str] = []
    for _, source, vals, starts, ends in files:
        at, known = position(vals)
        mine = known & ~written[at]
        if not mine.any():
            continue
        spans: list[list[int]] = []
        for start, end in zip(starts[mine].tolist(), ends[mine].tolist(), strict=True):
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        for start, end in spans:
            skeleton = _skeleton(fingerprinter, source[start:end], identifier)
            if skeleton is None:
                continue
            skeletons.append(skeleton)
            at, known = position(fingerprinter.code(skeleton, every_gram=True).values)
            written[at[known]] = True
    return skeletons, {"files": len(files), "grams": int(grams.shape[0]), "idioms": int(wanted.shape[0]),
                       "written": int(np.count_nonzero(written))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("roots", nargs="+", type=Path, help="site-packages directories to learn idioms from")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    skeletons, counts = build(args.roots)
    versions = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                      if d.metadata["Name"])
    header = [f"# Code idioms shared by unrelated Python projects (gateway/detection/idioms_build.py), k = "
              f"{CODE_PARAMS.gram_weight} tokens, in >= {MIN_FILES} files of >= {MIN_PROJECTS} projects.",
              f"# {counts['files']} files, {counts['grams']} distinct grams, {counts['idioms']} idioms, "
              f"{counts['written']} written as {len(skeletons)} skeletons.",
              "# Learnt from: " + " ".join(versions)]
    body = "\n".join(header) + "\n" + f"\n{SEPARATOR}\n".join(skeletons) + "\n"
    with gzip.open(args.output, "wt", encoding="utf-8", compresslevel=9) as out:
        out.write(body)
    print(f"{args.output}: {len(skeletons)} skeletons, {counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
