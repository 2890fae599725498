"""Hostile bodies against a live uvicorn: bounded before any key check or parsing (finding 1).

A stranger with no key sends a large body to the node protocol, the task API and the webhook;
the server must answer 413/401 without reading it, and its memory must not grow with the body.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlparse

import psutil
import pytest

from api.request_guard import DEFAULT_BODY_LIMIT, WEBHOOK_BODY_LIMIT

MB = 1024 * 1024


class PeakRss:
    """Samples a process's resident memory on a thread until stopped; keeps the peak."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.01)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / MB


def _raw_request(url: str, head: str, chunks, total_timeout: float = 120) -> tuple[int, str, int]:
    """Send `head` then body `chunks` until the server answers; (status, response text, bytes sent)."""
    parsed = urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=total_timeout)
    sent = 0
    try:
        sock.sendall(head.encode("latin-1"))
        sock.setblocking(False)
        response = b""
        for chunk in chunks:
            try:
                response += sock.recv(65536)
            except BlockingIOError:
                pass
            if b"\r\n\r\n" in response:
                break
            try:
                view = memoryview(chunk)
                while view:
                    try:
                        n = sock.send(view)
                        view = view[n:]
                        sent += n
                    except BlockingIOError:
                        try:
                            response += sock.recv(65536)
                        except BlockingIOError:
                            time.sleep(0.001)
                        if b"\r\n\r\n" in response:
                            break
            except (BrokenPipeError, ConnectionResetError):
                break
            if b"\r\n\r\n" in response:
                break
        sock.setblocking(True)
        sock.settimeout(30)
        while b"\r\n\r\n" not in response:
            part = sock.recv(65536)
            if not part:
                break
            response += part
        try:
            while True:  # the rest of a short JSON answer
                sock.settimeout(0.5)
                part = sock.recv(65536)
                if not part:
                    break
                response += part
        except (TimeoutError, ConnectionResetError):
            pass
    finally:
        sock.close()
    text = response.decode("latin-1")
    status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/") else 0
    return status, text, sent


def _json_chunks(total: int, chunk_size: int = MB):
    """A syntactically valid JSON object body with one huge string, produced lazily."""
    yield b'{"uptime_seconds": 1, "agent_version": "'
    remaining = total
    while remaining > 0:
        n = min(chunk_size, remaining)
        yield b"a" * n
        remaining -= n
    yield b'"}'


def _chunked(chunks):
    for chunk in chunks:
        yield b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    yield b"0\r\n\r\n"


@pytest.fixture
def live_api(sqlite_url, api_server_factory):
    return api_server_factory(sqlite_url)


@pytest.mark.parametrize("path", ["/v1/nodes/heartbeat", "/v1/tasks/lease", "/v1/tasks"])
def test_keyless_large_body_is_refused_before_it_is_read(live_api, path):
    size = 64 * MB
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size + 43}\r\n\r\n")
    with PeakRss(live_api.proc.pid) as rss:
        status, text, sent = _raw_request(live_api.url, head, _json_chunks(size))
    assert status == 401, text
    assert "API key" in text
    assert sent < 16 * MB, f"the server read {sent} bytes of a key-less body"
    assert rss.growth_mb < 24, f"server grew {rss.growth_mb:.0f} MB for a refused body"


def test_chunked_body_is_capped_while_streaming_even_with_a_well_formed_key(live_api):
    """No Content-Length: a route that reads the body caps it as the bytes arrive; a node route with
    a fake but well-formed key is refused from its header before a byte of the body is read."""
    size = 64 * MB
    head = ("POST /webhooks/typeform HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    with PeakRss(live_api.proc.pid) as rss:
        status, text, sent = _raw_request(live_api.url, head, _chunked(_json_chunks(size)))
    assert status == 413, text
    assert f"({WEBHOOK_BODY_LIMIT} bytes)" in text
    assert sent < 32 * MB
    assert rss.growth_mb < 24, f"server grew {rss.growth_mb:.0f} MB for a capped body"

    head = ("POST /v1/nodes/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Authorization: Bearer nk_0123456789abcdef_notARealSecret\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    with PeakRss(live_api.proc.pid) as rss:
        status, text, sent = _raw_request(live_api.url, head, _chunked(_json_chunks(size)))
    assert status in (401, 413), text  # the key is checked first; an unread body is never buffered
    assert sent < 32 * MB
    assert rss.growth_mb < 24, f"server grew {rss.growth_mb:.0f} MB for a refused body"


def test_declared_oversize_is_refused_on_content_length_alone(live_api):
    head = ("POST /webhooks/typeform HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {300 * MB}\r\n\r\n")
    status, text, sent = _raw_request(live_api.url, head, [b""])
    assert status == 413, text
    assert f"({WEBHOOK_BODY_LIMIT} bytes)" in text and "send less data" in text


def test_each_route_gets_its_own_size(live_api):
    """The webhook takes more than the default; forms and heartbeats take the default."""
    with live_api.client() as http:
        just_over_default = b"x" * (DEFAULT_BODY_LIMIT + 1)
        # The webhook accepts it (then refuses the signature: 401, not 413)...
        r = http.post("/webhooks/typeform", content=just_over_default,
                      headers={"content-type": "application/json"})
        assert r.status_code == 401, r.text
        # ...the admin sign-in form does not.
        r = http.post("/admin/login", content=just_over_default,
                      headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 413, r.text
        assert r.json()["detail"].startswith("request body is larger than this endpoint accepts")


def test_malformed_keys_are_refused_before_the_body(live_api):
    with live_api.client() as http:
        for header, expected in [
            ({}, "missing node API key"),
            ({"authorization": "Basic abc"}, "missing node API key"),
            ({"authorization": "Bearer ck_0123456789abcdef_x"}, "malformed node API key"),
        ]:
            r = http.post("/v1/tasks/results", content=b"{", headers=header)
            assert r.status_code == 401 and expected in r.json()["detail"], r.text
            assert r.headers["www-authenticate"] == "Bearer"
        r = http.post("/v1/tasks", content=b"{", headers={"authorization": "Bearer nk_0123456789abcdef_x"})
        assert r.status_code == 401 and "client API key" in r.json()["detail"]
