"""``send_http`` over TLS: the pinned address, SNI and the certificate checked against the webhook's host name,
and the attempt's one time budget, against a real HTTPS receiver on loopback (a throwaway CA from ``trustme``)."""

from __future__ import annotations

import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import trustme

from config.settings import WebhookSettings
from engram.webhooks import deliver
from engram.webhooks.deliver import send_http
from engram.webhooks.targets import Target

SETTINGS = WebhookSettings(allowed_networks=["127.0.0.1/32"], timeout_seconds=1.0, max_response_chars=50)


class _Handler(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        _Handler.received.append((self.headers.get("host") or "", body))
        if self.path == "/trickle":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(30):  # a header line every 0.1 s: each read is quick, the whole answer is not
                self.wfile.write(b"x-slow: 1\r\n")
                self.wfile.flush()
                time.sleep(0.1)
            return
        self.send_response(202)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a refused handshake (the wrong-name test) is the client's outcome to check, not noise here


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def https_port(ca: trustme.CA) -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.example.test").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def trusting(monkeypatch: pytest.MonkeyPatch, ca: trustme.CA) -> None:
    """The delivery's TLS context trusts the test CA (and nothing else changes)."""
    real = httpx.create_ssl_context

    def create(*args: object, **kwargs: object) -> ssl.SSLContext:
        context = real(*args, **kwargs)  # type: ignore[arg-type]
        ca.configure_trust(context)
        return context

    monkeypatch.setattr(deliver.httpx, "create_ssl_context", create)


def target(port: int, path: str, host: str = "hooks.example.test") -> Target:
    # The name stands for a checked public host; the delivery connects to the pinned address.
    return Target(httpx.URL(f"https://{host}:{port}{path}"), ipaddress.ip_address("127.0.0.1"))


def test_a_delivery_over_tls_reaches_the_pinned_address_with_the_right_name(https_port: int, trusting: None) -> None:
    result = send_http(target(https_port, "/hook"), {"webhook-id": "msg_tls"}, b'{"a":1}', SETTINGS)
    assert result.status_code == 202 and result.response_body == "ok", result
    assert (f"hooks.example.test:{https_port}", b'{"a":1}') in _Handler.received


def test_a_certificate_for_another_name_is_refused(https_port: int, trusting: None) -> None:
    result = send_http(target(https_port, "/hook", host="other.example.test"), {}, b"{}", SETTINGS)
    assert result.status_code is None and result.retryable
    assert "certificate" in (result.error or "").lower() or "ssl" in (result.error or "").lower(), result.error


def test_an_answer_trickling_over_tls_past_the_budget_is_a_timeout(https_port: int, trusting: None) -> None:
    result = send_http(target(https_port, "/trickle"), {}, b"{}", SETTINGS)
    assert result.status_code is None and "timeout" in (result.error or ""), result
