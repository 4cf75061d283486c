"""Bad and hostile input against the real app: NUL bytes, odd Unicode, huge numbers, deep
nesting, oversized and invalid bodies, hostile multipart and raw bytes in headers and paths.
Each gets a clear 4xx, or succeeds when it is legitimate text; never a 500."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import FormData

from services.api.app import create_app
from tests.conftest import KEY_A

pytestmark = pytest.mark.integration

A = {"Authorization": f"Bearer {KEY_A}"}
JSON = {**A, "Content-Type": "application/json"}
MB = 1024 * 1024


@pytest.fixture
async def api(aiohttp_client, make_settings):  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(make_settings()))


async def _error(resp, status: int, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert error["message"]
    if code:
        assert error["code"] == code, error
    return error


def _doc(**extra: object) -> dict:
    return {"text": "A plain document.", "source": "plain.txt", **extra}


# --- NUL bytes ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "body"), [
    ("/v1/queries", {"question": "a\x00b"}),
    ("/v1/queries", {"question": "ok", "collection": "kb\x00"}),
    ("/v1/documents", _doc(text="a\x00b")),
    ("/v1/documents", _doc(source="a\x00.txt")),
    ("/v1/documents", _doc(document_id="doc\x00")),
    ("/v1/documents", _doc(collection="\x00")),
    ("/v1/documents", _doc(metadata={"k\x00": "v"})),
    ("/v1/documents", _doc(metadata={"k": "v\x00"})),
])
async def test_nul_in_any_text_field_is_422(api, path, body):
    await _error(await api.post(path, json=body, headers=A), 422, "invalid_request")


@pytest.mark.parametrize("field", ["source", "document_id", "collection"])
async def test_nul_in_an_upload_field_is_422(api, field):
    form = FormData()
    form.add_field("file", b"Some text.", filename="a.txt")
    form.add_field(field, "x\x00y")
    await _error(await api.post("/v1/documents", data=form, headers=A), 422, "invalid_request")


async def test_nul_bytes_inside_an_uploaded_file_are_dropped(api):
    form = FormData()
    form.add_field("file", b"Leave\x00 is 27 days.", filename="leave.txt")
    resp = await api.post("/v1/documents", data=form, headers=A)
    assert resp.status == 202
    doc = await (await api.get(resp.headers["Location"], headers=A)).json()
    assert doc["chars"] == len("Leave is 27 days.")


# --- Unicode ------------------------------------------------------------------------------------

ODD_BUT_FINE = [
    "\u200fכמה ימי חופשה?\u200e",           # right-to-left marks and Hebrew
    "How many 🏖️ days? 👩‍💻🎉",                # emoji, ZWJ sequences, variation selectors
    "𝔥𝔬𝔴 𝔩𝔬𝔫𝔤 𠜎𠜱",                        # 4-byte characters (astral planes)
    "cafe\u0301 e\u0301\u0301\u0301\u0301",  # combining marks, stacked
    "\ufeffBOM first, zero\u200bwidth",      # byte order mark, zero-width space
    "\u202eevil override\u202c",             # bidi override
]


@pytest.mark.parametrize("text", ODD_BUT_FINE)
async def test_odd_but_valid_unicode_is_accepted_and_kept_exactly(api, text):
    resp = await api.post("/v1/queries", json={"question": text}, headers=A)
    assert resp.status == 202, await resp.text()
    view = await (await api.get(resp.headers["Location"], headers=A)).json()
    assert view["question"] == text
    resp = await api.post("/v1/documents", json=_doc(text=text, source=text[:50],
                                                     metadata={text[:20]: text}), headers=A)
    assert resp.status == 202, await resp.text()
    doc = await (await api.get(resp.headers["Location"], headers=A)).json()
    assert doc["source"] == text[:50] and doc["metadata"] == {text[:20]: text}


@pytest.mark.parametrize("raw", [
    b'{"question": "\\ud800"}',
    b'{"question": "ok \\udfff"}',
    b'{"question": "ok", "collection": "\\udc00"}',
    b'{"text": "t", "source": "\\ud800.txt"}',
    b'{"text": "t", "source": "s", "metadata": {"\\ud800": 1}}',
    b'{"text": "t", "source": "s", "metadata": {"k": "\\ud800"}}',
])
async def test_unpaired_surrogates_are_422(api, raw):
    path = "/v1/queries" if b"question" in raw else "/v1/documents"
    await _error(await api.post(path, data=raw, headers=JSON), 422, "invalid_request")


async def test_an_escaped_surrogate_pair_is_one_character(api):
    resp = await api.post("/v1/queries", data=b'{"question": "\\ud83d\\ude00?"}', headers=JSON)
    assert resp.status == 202
    view = await (await api.get(resp.headers["Location"], headers=A)).json()
    assert view["question"] == "😀?"


@pytest.mark.parametrize("raw", [b'{"question": "\xff\xfe"}', b"\xc3\x28", b"\xed\xa0\x80",
                                 b'{"question": "ok"}\xff'])
async def test_invalid_utf8_is_400(api, raw):
    await _error(await api.post("/v1/queries", data=raw, headers=JSON), 400, "malformed_json")


# --- numbers and nesting ------------------------------------------------------------------------

@pytest.mark.parametrize("top_k", [10**30, 2**63, -(2**63), 21, 0, 1e308, 5.5, "5", True,
                                   "NaN", [5]])
async def test_huge_or_mistyped_top_k_is_422(api, top_k):
    await _error(await api.post("/v1/queries", json={"question": "q", "top_k": top_k},
                                headers=A), 422, "invalid_request")


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
async def test_non_json_constants_are_400(api, constant):
    raw = b'{"question": "q", "temperature": ' + constant + b"}"
    await _error(await api.post("/v1/queries", data=raw, headers=JSON), 400, "malformed_json")


async def test_a_huge_integer_literal_is_422(api):
    raw = b'{"question": "q", "max_tokens": ' + b"9" * 5000 + b"}"
    resp = await api.post("/v1/queries", data=raw, headers=JSON)
    assert resp.status in (400, 422), await resp.text()


@pytest.mark.parametrize("depth", [100, 5_000, 30_000])
async def test_deeply_nested_json_is_refused(api, depth):
    raw = b'{"question": "q", "top_k": ' + b"[" * depth + b"]" * depth + b"}"
    resp = await api.post("/v1/queries", data=raw, headers=JSON)
    assert resp.status in (400, 422), await resp.text()
    raw = b'{"text": "t", "source": "s", "metadata": ' + b'{"a":' * depth + b"1" + \
        b"}" * depth + b"}"
    resp = await api.post("/v1/documents", data=raw, headers=JSON)
    assert resp.status in (400, 422), await resp.text()


# --- size ---------------------------------------------------------------------------------------

async def test_a_10_mb_question_body_is_413_before_it_is_read(api):
    body = json.dumps({"question": "x" * (10 * MB)}).encode()
    await _error(await api.post("/v1/queries", data=body, headers=JSON), 413,
                 "payload_too_large")


async def test_a_10_mb_chunked_question_body_is_413(api):
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"question": "'
        for _ in range(10):
            yield b"x" * MB
        yield b'"}'

    await _error(await api.post("/v1/queries", data=chunks(), headers=JSON), 413,
                 "payload_too_large")


async def test_a_10_mb_document_over_the_text_limit_is_422(api):
    body = {"text": "word " * (2 * MB), "source": "big.txt"}
    error = await _error(await api.post("/v1/documents", json=body, headers=A), 422,
                         "invalid_request")
    assert "longer than" in error["message"]


async def test_a_10_mb_body_of_unknown_fields_answers_a_small_422(api):
    body = json.dumps({f"field{i}": i for i in range(600_000)}).encode()
    assert len(body) > 10 * MB
    resp = await api.post("/v1/documents", data=body, headers=JSON)
    error = await _error(resp, 422, "invalid_request")
    assert len(error["details"]) <= 20
    assert len(await resp.read()) < 10_000


# --- multipart ----------------------------------------------------------------------------------

async def test_a_multipart_with_many_parts_is_422(api):
    form = FormData()
    form.add_field("file", b"Some text.", filename="a.txt")
    for _ in range(10_000):
        form.add_field("source", "s")
    error = await _error(await api.post("/v1/documents", data=form, headers=A), 422)
    assert "parts" in error["message"]


async def test_two_file_parts_are_422(api):
    form = FormData()
    form.add_field("file", b"One.", filename="a.txt")
    form.add_field("file", b"Two.", filename="b.txt")
    await _error(await api.post("/v1/documents", data=form, headers=A), 422)


async def test_an_oversized_form_field_is_413(api):
    form = FormData()
    form.add_field("file", b"Some text.", filename="a.txt")
    form.add_field("source", "s" * 100_000)
    await _error(await api.post("/v1/documents", data=form, headers=A), 413)


@pytest.mark.parametrize(("content_type", "body"), [
    ("multipart/form-data", b"--x\r\n\r\n"),                              # no boundary
    ("multipart/form-data; boundary=x", b"garbage without any boundary"),
    ("multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
     b"Content-Transfer-Encoding: rot13\r\n\r\nhello\r\n--x--\r\n"),       # unknown encoding
    ("multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="source"\r\n'
     b"Content-Type: text/plain; charset=utf-8\r\n\r\n\xff\xfe\r\n--x--\r\n"),  # not UTF-8
    ("multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="source"\r\n'
     b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nhi\r\n--x--\r\n"),
    ("multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="\x02so\x7furce"\r\n\r\nhi\r\n--x--\r\n'),
])
async def test_malformed_multipart_is_a_4xx(api, content_type, body):
    resp = await api.post("/v1/documents", data=body, headers={**A, "Content-Type":
                                                                content_type})
    assert 400 <= resp.status < 500, await resp.text()
    await _error(resp, resp.status)


async def test_an_upload_whose_file_name_is_hostile_is_handled(api):
    body = (b'--x\r\nContent-Disposition: form-data; name="file"; '
            b'filename="../../etc/\xe2\x80\xaepasswd.txt"\r\n\r\nSome text.\r\n--x--\r\n')
    resp = await api.post("/v1/documents", data=body, headers={
        **A, "Content-Type": "multipart/form-data; boundary=x"})
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["source"] == "../../etc/\u202epasswd.txt"


# --- raw bytes in the request line and headers --------------------------------------------------

async def _raw(api, request: bytes) -> int:  # type: ignore[no-untyped-def]
    """Send bytes as they are (clients refuse to send invalid headers); the status back."""
    reader, writer = await asyncio.open_connection(api.host, api.port)
    writer.write(request)
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 30)
    writer.close()
    return int(status_line.split()[1])


@pytest.mark.parametrize("header", [
    b"Authorization: Bearer \xff\xfe",
    b"Authorization: Bearer t\xc3\xa9st-key-alice",
    b"Authorization: \xe2\x80\xaeBearer test-key-alice",
])
async def test_a_key_that_is_not_utf8_is_401(api, header):
    request = b"GET /v1/documents HTTP/1.1\r\nHost: x\r\n" + header + \
        b"\r\nConnection: close\r\n\r\n"
    assert await _raw(api, request) == 401


@pytest.mark.parametrize("line", [
    b"GET /v1/queries/%ff%fe HTTP/1.1",
    b"GET /v1/queries/%00 HTTP/1.1",
    b"GET /v1/queries/" + b"a" * 4000 + b" HTTP/1.1",
    b"GET /v1/documents/%F0%9F%98%80 HTTP/1.1",
    b"DELETE /v1/documents/%ed%a0%80 HTTP/1.1",
    b"GET /v1/documents?limit=%ff HTTP/1.1",
    b"GET /v1/documents?limit=%D9%A3 HTTP/1.1",
    b"GET /v1/documents?offset=1_0 HTTP/1.1",
])
async def test_odd_paths_and_parameters_are_a_4xx(api, line):
    request = line + b"\r\nHost: x\r\nAuthorization: Bearer " + KEY_A.encode() + \
        b"\r\nConnection: close\r\n\r\n"
    assert 400 <= await _raw(api, request) < 500


async def test_an_idempotency_key_that_is_not_utf8_is_422(api):
    request = b"POST /v1/queries HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + \
        KEY_A.encode() + b"\r\nIdempotency-Key: \xff\xfe\r\nContent-Type: application/json" \
        b"\r\nContent-Length: 16\r\nConnection: close\r\n\r\n" + b'{"question":"q"}'
    assert await _raw(api, request) == 422


async def test_a_last_event_id_that_is_not_utf8_is_422(api):
    resp = await api.post("/v1/queries", json={"question": "q"}, headers=A)
    request = b"GET " + resp.headers["Location"].encode() + b"/events HTTP/1.1\r\nHost: x" \
        b"\r\nAuthorization: Bearer " + KEY_A.encode() + b"\r\nLast-Event-ID: \xff-1\r\n" \
        b"Connection: close\r\n\r\n"
    assert await _raw(api, request) == 422
