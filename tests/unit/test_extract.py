"""services/api/extract.py: text out of .txt, .md, .html and .pdf uploads."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.api.extract import ExtractionError, extract_text, file_kind
from services.embedder.chunking import normalize

pytestmark = pytest.mark.unit

PDF = Path(__file__).resolve().parents[2] / "examples" / "handbook" / "security-policy.pdf"


@pytest.mark.parametrize(("name", "kind"), [("a.txt", "text"), ("A.MD", "text"),
                                            ("x.markdown", "text"), ("p.html", "html"),
                                            ("p.HTM", "html"), ("d.pdf", "pdf"),
                                            ("d.docx", None), ("noext", None),
                                            ("archive.pdf.zip", None)])
def test_file_kind_by_suffix(name: str, kind: str | None) -> None:
    assert file_kind(name) == kind


@pytest.mark.parametrize("name", ["notes.txt", "README.md"])
def test_text_and_markdown_are_decoded_as_utf8(name: str) -> None:
    assert extract_text(name, "Café – 14 characters\n".encode()) == "Café – 14 characters\n"


def test_utf8_bom_is_dropped() -> None:
    assert extract_text("notes.txt", b"\xef\xbb\xbfHello") == "Hello"


def test_nul_characters_are_removed() -> None:
    assert extract_text("notes.txt", b"a\x00b") == "ab"


def test_non_utf8_text_is_refused() -> None:
    with pytest.raises(ExtractionError, match="not UTF-8"):
        extract_text("latin1.txt", "café".encode("latin-1"))


@pytest.mark.parametrize(("name", "data"), [("empty.txt", b""), ("blank.md", b" \n\t\n"),
                                            ("bom.txt", b"\xef\xbb\xbf  "),
                                            ("nul.txt", b"\x00\x00"),
                                            ("empty.html", b"<html><body> </body></html>"),
                                            ("script.html", b"<script>var a=1;</script>")])
def test_empty_files_are_refused(name: str, data: bytes) -> None:
    with pytest.raises(ExtractionError, match="no text"):
        extract_text(name, data)


@pytest.mark.parametrize("name", ["report.docx", "image.png", "noext", "data.csv"])
def test_unsupported_suffix_is_refused(name: str) -> None:
    with pytest.raises(ExtractionError, match="unsupported file type"):
        extract_text(name, b"whatever")


HTML = b"""<!doctype html><html><head><title>Expenses</title>
<style>p { color: red; }</style><script>alert("hidden");</script></head>
<body><h1>Expenses</h1><p>Submit receipts within 30 days.</p>
<p>Meals are capped at <b>25 EUR</b> per day.</p><noscript>enable js</noscript>
<ul><li>Taxi</li><li>Train</li></ul></body></html>"""


def test_html_drops_script_style_and_noscript() -> None:
    text = extract_text("expenses.html", HTML)
    assert "alert" not in text
    assert "color: red" not in text
    assert "enable js" not in text


def test_html_block_elements_become_paragraphs() -> None:
    paragraphs = normalize(extract_text("expenses.html", HTML)).split("\n\n")
    assert "Submit receipts within 30 days." in paragraphs
    assert "Meals are capped at 25 EUR per day." in paragraphs
    assert "Taxi" in paragraphs and "Train" in paragraphs


def test_html_non_utf8_is_refused() -> None:
    with pytest.raises(ExtractionError, match="not UTF-8"):
        extract_text("page.html", "<p>café</p>".encode("latin-1"))


def test_pdf_text_is_extracted() -> None:
    text = extract_text("security-policy.pdf", PDF.read_bytes())
    assert "Information Security Policy" in text
    assert "Passwords must be at least 14 characters long." in text


@pytest.mark.parametrize("data", [b"not a pdf at all", b"%PDF-1.4\n", b""])
def test_corrupt_pdf_is_refused(data: bytes) -> None:
    with pytest.raises(ExtractionError, match="PDF could not be read"):
        extract_text("broken.pdf", data)


def test_truncated_pdf_is_refused() -> None:
    data = PDF.read_bytes()
    with pytest.raises(ExtractionError):
        extract_text("broken.pdf", data[: len(data) // 2])


def test_pdf_with_unknown_stream_filter_is_refused() -> None:
    data = PDF.read_bytes().replace(b"/FlateDecode", b"/FlateDecodX")
    with pytest.raises(ExtractionError):
        extract_text("broken.pdf", data)
