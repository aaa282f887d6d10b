"""Registered files → text, so that what an employee later pastes from them can be recognised.

Office documents, PDF, HTML and CSV go through markitdown (no hand-written
parsers); source code and plain text are decoded as they are, source code
flagged so the registry tokenizes it (renamed identifiers and removed comments
do not hide it). Japanese files in Shift_JIS or EUC-JP are decoded too. The text
lives only in memory while fingerprints are taken; it is never stored.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import PurePath

from gateway.errors import UnprocessableEntity

MARKITDOWN_EXTENSIONS = frozenset({".pdf", ".docx", ".xlsx", ".xls", ".pptx", ".html", ".htm", ".csv", ".epub"})
TEXT_EXTENSIONS = frozenset({".txt", ".md", ".markdown", ".rst", ".json", ".jsonl", ".yaml", ".yml", ".toml",
                             ".ini", ".cfg", ".log", ".tex", ".xml", ".tsv", ""})
SOURCE_EXTENSIONS = frozenset({
    ".py", ".pyi", ".js", ".mjs", ".ts", ".tsx", ".jsx", ".java", ".kt", ".scala", ".go", ".rs", ".c", ".h", ".cc",
    ".cpp", ".hpp", ".cs", ".rb", ".php", ".swift", ".m", ".sql", ".sh", ".bash", ".ps1", ".r", ".jl", ".lua",
    ".pl", ".hs", ".ex", ".exs", ".erl", ".clj", ".dart", ".vue", ".svelte", ".proto", ".tf", ".ipynb",
})
_MAGIC = {".pdf": b"%PDF", ".docx": b"PK\x03\x04", ".xlsx": b"PK\x03\x04", ".pptx": b"PK\x03\x04",
          ".epub": b"PK\x03\x04"}
_ENCODINGS = ("utf-8-sig", "cp932", "euc_jp", "utf-16")


@dataclass(frozen=True, slots=True)
class Converted:
    """A file's text and whether it should be treated as source code."""

    text: str
    source_code: bool


def _decode(data: bytes, filename: str) -> str:
    if b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _unsupported(filename)
    for encoding in _ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise _unsupported(filename)


def _unsupported(filename: str) -> UnprocessableEntity:
    return UnprocessableEntity(
        f"ファイル '{filename}' の形式は登録できません（PDF, DOCX, XLSX, PPTX, CSV, HTML, Markdown, ソースコード, "
        f"テキスト）。 / The file '{filename}' cannot be registered: use PDF, DOCX, XLSX, PPTX, CSV, HTML, Markdown, "
        "source code or plain text.", code="unsupported_file")


def to_text(data: bytes, filename: str) -> Converted:
    """The text of a file, by its extension; refuses binary files it cannot read (422)."""
    suffix = PurePath(filename).suffix.lower()
    if suffix in SOURCE_EXTENSIONS:
        return Converted(_decode(data, filename), source_code=True)
    if suffix in TEXT_EXTENSIONS:
        return Converted(_decode(data, filename), source_code=False)
    if suffix in MARKITDOWN_EXTENSIONS:
        magic = _MAGIC.get(suffix)
        if magic is not None and not data.startswith(magic):
            raise UnprocessableEntity(
                f"ファイル '{filename}' は {suffix} 形式ではありません。 / The file '{filename}' is not a valid {suffix} "
                "file.", code="unreadable_file")
        from markitdown import MarkItDown, StreamInfo

        try:
            result = MarkItDown(enable_plugins=False).convert_stream(
                io.BytesIO(data), stream_info=StreamInfo(extension=suffix, filename=filename))
        except Exception as exc:  # a broken or encrypted document: say so without its content
            raise UnprocessableEntity(
                f"ファイル '{filename}' を読み取れませんでした。 / The file '{filename}' could not be read "
                f"({type(exc).__name__}).", code="unreadable_file") from None
        return Converted(result.text_content or "", source_code=False)
    raise _unsupported(filename)
