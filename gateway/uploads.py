"""`/v1/files` uploads: the multipart body read, and the file's text laid out for scanning.

Training files (purpose `fine-tune`, JSONL) are scanned line by line
(Article 4(1)); other files are converted like registered material; a file
that cannot be read becomes an unscannable part for the policy to judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP

from gateway.convert import to_text
from gateway.errors import GatewayError, InvalidRequest
from gateway.extract import Extraction, Unscannable, extract_jsonl
from gateway.domain import TextPart


@dataclass(frozen=True, slots=True)
class Upload:
    """One uploaded file and the purpose the client declared."""

    purpose: str
    filename: str
    content: bytes


def parse_upload(body: bytes, content_type: str) -> Upload:
    """The `file` and `purpose` fields of a multipart/form-data body (400 when it is not one)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidRequest("ファイルは multipart/form-data で送ってください。 / Upload files as multipart/form-data.",
                             code="invalid_multipart")
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    if message.is_multipart():
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                payload = part.get_payload(decode=True)
                fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    if "file" not in fields:
        raise InvalidRequest("'file' がありません。 / 'file' is required.", code="missing_field", param="file")
    purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace").strip()
    if not purpose:
        raise InvalidRequest("'purpose' がありません。 / 'purpose' is required.", code="missing_field", param="purpose")
    filename, content = fields["file"]
    return Upload(purpose=purpose, filename=filename or "upload", content=content)


def file_extraction(upload: Upload) -> Extraction:
    """The file's texts: JSONL records line by line, documents as one text, else unscannable."""
    if upload.purpose == "fine-tune" or upload.filename.lower().endswith(".jsonl"):
        return extract_jsonl(upload.content)
    try:
        converted = to_text(upload.content, upload.filename)
    except GatewayError:
        return Extraction(unscannable=[Unscannable("file", "file")])
    return Extraction(parts=[TextPart(location="file", text=converted.text)])
