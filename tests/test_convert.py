"""Files of every supported kind become text that contains what the file says."""

from __future__ import annotations

import io
import zipfile

import pytest

from gateway.convert import to_text
from gateway.errors import UnprocessableEntity

SENTENCE = "The Aurora model distils the teacher network into four compact students"


def docx_bytes(text: str) -> bytes:
    """A minimal WordprocessingML package, as Word writes it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        package.writestr("[Content_Types].xml", (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/'
            'document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.'
            'main+xml"/></Types>'))
        package.writestr("_rels/.rels", (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
            '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
            'relationships/officeDocument" Target="word/document.xml"/></Relationships>'))
        package.writestr("word/document.xml", (
            '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
            f'wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>'))
    return buffer.getvalue()


def pdf_bytes(text: str) -> bytes:
    """A one-page PDF with one line of text in a standard font."""
    stream = f"BT /F1 12 Tf 20 700 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def xlsx_bytes() -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["顧客名", "住所"])
    sheet.append(["山田商事", "大阪府大阪市北区梅田1-2-3"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def pptx_bytes(text: str) -> bytes:
    from pptx import Presentation

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Roadmap"
    slide.placeholders[1].text = text
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("name, data, expected", [
    ("design.docx", docx_bytes(SENTENCE), SENTENCE),
    ("design.pdf", pdf_bytes(SENTENCE), SENTENCE),
    ("customers.xlsx", xlsx_bytes(), "大阪府大阪市北区梅田1-2-3"),
    ("deck.pptx", pptx_bytes(SENTENCE), SENTENCE),
    ("page.html", f"<html><body><h1>Plan</h1><p>{SENTENCE}</p></body></html>".encode(), SENTENCE),
    ("rows.csv", "name,city\n山田,札幌\n".encode(), "札幌"),
    ("notes.md", f"# Notes\n\n{SENTENCE}\n".encode(), SENTENCE),
    ("memo.txt", "機密：次世代モデルの学習計画".encode("cp932"), "機密：次世代モデルの学習計画"),
])
def test_documents_become_text(name: str, data: bytes, expected: str) -> None:
    converted = to_text(data, name)
    assert expected in " ".join(converted.text.split()) and not converted.source_code


def test_source_code_is_flagged() -> None:
    converted = to_text(b"def distil(teacher):\n    return teacher\n", "train.py")
    assert converted.source_code and "def distil" in converted.text


@pytest.mark.parametrize("name, data", [("image.png", b"\x89PNG\r\n\x1a\n\x00\x00"), ("blob.txt", b"\x00\x01\x02" * 10),
                                        ("broken.docx", b"not a zip at all")])
def test_unreadable_files_are_refused_with_422(name: str, data: bytes) -> None:
    with pytest.raises(UnprocessableEntity) as caught:
        to_text(data, name)
    assert name in caught.value.message
