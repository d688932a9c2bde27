"""A real HTTP webhook receiver on loopback for tests, scriptable per request.

Each path has a queue of scripted answers (status, headers, body, delay, trickle); when it is empty
the path answers 200. ``down()`` closes the listening socket (senders get connection refused) and
``up()`` listens again on the same port. Every request is recorded with the status it was answered
with, so a test can tell the requests the receiver accepted (2xx) from those it turned away.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay_seconds: float = 0.0
    # Send the answer one byte at a time, this long before each byte (the whole answer, or only its body).
    trickle_seconds: float = 0.0
    trickle_body_only: bool = False


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived
    answered: int  # the status code it was answered with
    wall: float = 0.0  # time.time() when it arrived: comparable with the timestamps engram stores

    @property
    def accepted(self) -> bool:
        return 200 <= self.answered < 300


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.requests: list[Received] = []
        self.script: dict[str, deque[Answer]] = defaultdict(deque)
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, *answers: Answer) -> None:
        with self.lock:
            self.script[path].extend(answers)

    def received(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def up(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    queue = receiver.script[self.path]
                    answer = queue.popleft() if queue else Answer()
                    receiver.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                 time.monotonic(), answer.status, time.time())
                    )
                if answer.delay_seconds:
                    time.sleep(answer.delay_seconds)
                head = [f"HTTP/1.1 {answer.status} {self.responses.get(answer.status, ('',))[0]}",
                        *(f"{name}: {value}" for name, value in answer.headers.items()),
                        f"content-length: {len(answer.body)}", "connection: close"]
                raw_head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
                self.close_connection = True
                try:
                    if not answer.trickle_seconds:
                        self.wfile.write(raw_head + answer.body)
                        return
                    if answer.trickle_body_only:
                        self.wfile.write(raw_head)
                    for byte in (answer.body if answer.trickle_body_only else raw_head + answer.body):
                        time.sleep(answer.trickle_seconds)
                        self.wfile.write(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up (a timeout): what a trickling receiver expects

            def log_message(self, *_: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.thread is not None:
            self.thread.join(5)
            self.thread = None
