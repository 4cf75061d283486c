"""Text out of an uploaded file: .txt, .md, .html and .pdf."""

from __future__ import annotations

import io
from pathlib import PurePath

SUPPORTED = {".txt": "text", ".md": "text", ".markdown": "text", ".html": "html",
             ".htm": "html", ".pdf": "pdf"}


class ExtractionError(ValueError):
    """The file could not be read as its type claims."""


def file_kind(filename: str) -> str | None:
    return SUPPORTED.get(PurePath(filename).suffix.lower())


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ExtractionError(f"the file is not UTF-8 text (byte {exc.start})") from exc


def _html(data: bytes) -> str:
    from bs4 import BeautifulSoup  # noqa: PLC0415

    soup = BeautifulSoup(_text(data), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    # Block elements end a paragraph, so chunking keeps the document's structure.
    for tag in soup.find_all(["p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "tr", "table",
                              "div", "section", "br"]):
        tag.insert_after("\n\n")
    return soup.get_text(" ")


def _pdf(data: bytes) -> str:
    from pypdf import PdfReader  # noqa: PLC0415

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ExtractionError("the PDF is encrypted")
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except ExtractionError:
        raise
    except Exception as exc:  # untrusted bytes: pypdf fails in many ways, all mean unreadable
        raise ExtractionError(f"the PDF could not be read: {type(exc).__name__}: {exc}") from exc


def extract_text(filename: str, data: bytes) -> str:
    """The file's text; raises ExtractionError when unreadable or empty."""
    kind = file_kind(filename)
    if kind is None:
        raise ExtractionError(f"unsupported file type {PurePath(filename).suffix!r}")
    text = {"text": _text, "html": _html, "pdf": _pdf}[kind](data).replace("\x00", "")
    if not text.strip():
        raise ExtractionError("the file contains no text")
    return text
