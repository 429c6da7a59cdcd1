"""An idempotent event receiver for tests: a small HTTP server on 127.0.0.1 that stores events
by id (the way the VMS does), answers 409 to a duplicate and counts it, and can be told to fail."""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """`status(event_dict) -> int | None` may answer for an event instead (e.g. 503: not stored).
    `delay_s`: time between storing an event and answering, so a sender can be killed mid-send."""

    def __init__(self, port: int | None = None, delay_s: float = 0.0,
                 status: Callable[[dict], int | None] | None = None):
        self.port = port or free_port()
        self.delay_s = delay_s
        self.status = status
        self.events: dict[str, dict] = {}
        self.order: list[str] = []  # ids in order of first arrival
        self.requests = 0
        self.duplicates = 0
        self.refused = 0
        self.auth: set[str] = set()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/events"

    def start(self) -> "Receiver":
        rcv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                event = json.loads(body)
                code = rcv.status(event) if rcv.status else None
                with rcv.lock:
                    rcv.requests += 1
                    rcv.auth.add(self.headers.get("Authorization", ""))
                    if code is not None:
                        rcv.refused += 1
                    elif event["id"] in rcv.events:
                        rcv.duplicates += 1
                        code = 409
                    else:
                        rcv.events[event["id"]] = event
                        rcv.order.append(event["id"])
                        code = 200
                if rcv.delay_s:
                    time.sleep(rcv.delay_s)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, pred: Callable[["Receiver"], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if pred(self):
                    return True
            time.sleep(0.005)
        return False
