"""The one retry policy (mrcnn.retry) and the service client's use of it, against a real
HTTP server on 127.0.0.1 that answers what each test tells it to."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from mrcnn.retry import Retrying, RetryPolicy, parse_retry_after
from mrcnn.serve.client import ServeClient, ServeError
from mrcnn.serve.protocol import REPLICA_HEADER

EMPTY_ANSWER = {"image_size": [2, 3], "device": "CPU", "replica": "r1",
                "timings_ms": {"total": 1.0}, "detections": []}


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_backoff_doubles_to_its_cap_and_retry_after_wins():
    policy = RetryPolicy(attempts=6, backoff_s=0.5, max_backoff_s=3.0, deadline_s=None)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(1, retry_after=7) == 7.0
    assert parse_retry_after("12") == 12.0 and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0    # in the past
    assert parse_retry_after("soon") is None


def test_attempts_and_deadline_bound_the_retries():
    clock = FakeClock()
    retrying = Retrying(RetryPolicy(attempts=3, backoff_s=1.0, deadline_s=None), clock,
                        clock.sleep)
    assert retrying.wait() and retrying.wait() and not retrying.wait()
    assert clock.slept == [1.0, 2.0] and retrying.attempt == 3

    clock = FakeClock()
    retrying = Retrying(RetryPolicy(attempts=10, backoff_s=1.0, max_backoff_s=4.0,
                                    deadline_s=6.0), clock, clock.sleep)
    assert retrying.timeout(30.0) == 6.0          # the attempt in flight is bounded too
    assert retrying.wait() and retrying.wait()    # 1 + 2 s
    assert retrying.timeout(30.0) == 3.0
    assert not retrying.wait()                    # 4 s more would pass the deadline
    assert clock.slept == [1.0, 2.0]


class Scripted(BaseHTTPRequestHandler):
    """Answers POST /detect from ``script`` (status, headers, body, delay) in turn."""
    script: list = []
    seen: list = []

    def do_POST(self):
        type(self).seen.append(time.monotonic())
        self.rfile.read(int(self.headers["Content-Length"]))
        status, headers, body, delay = type(self).script.pop(0) if type(self).script else (
            200, {}, EMPTY_ANSWER, 0)
        time.sleep(delay)
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Scripted.script, Scripted.seen = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def client(url, **policy) -> ServeClient:
    return ServeClient(url, token="", timeout_s=10.0,
                       retry=RetryPolicy(**{"attempts": 5, "backoff_s": 0.01, **policy}))


def ask(url, **policy):
    from mrcnn.serve.protocol import encode_png
    return client(url, **policy).detect(encode_png(np.zeros((2, 3, 3), np.uint8)), {})


def test_gateway_errors_and_a_proxy_500_are_retried(server):
    Scripted.script = [(502, {}, {"error": "bad gateway"}, 0),
                       (503, {}, {"error": "busy"}, 0),
                       (504, {}, {"error": "timeout"}, 0),
                       (500, {}, {"error": "the replica died"}, 0)]    # Ray's proxy: no header
    payload, attempts = ask(server)
    assert payload == EMPTY_ANSWER and attempts == 5 and len(Scripted.seen) == 5


@pytest.mark.parametrize("status", [400, 401, 404, 413, 500])
def test_a_replicas_500_and_every_4xx_are_answered_at_once(server, status):
    Scripted.script = [(status, {REPLICA_HEADER: "r1"}, {"error": f"no ({status})."}, 0)]
    with pytest.raises(ServeError, match=f"no \\({status}\\)") as refused:
        ask(server)
    assert refused.value.status == status and len(Scripted.seen) == 1


def test_429_waits_as_long_as_retry_after_says(server):
    Scripted.script = [(429, {"Retry-After": "1"}, {"error": "slow down"}, 0)]
    payload, attempts = ask(server)
    assert attempts == 2 and payload == EMPTY_ANSWER
    assert Scripted.seen[1] - Scripted.seen[0] >= 0.95     # not the 0.01 s backoff


def test_one_deadline_bounds_all_attempts_and_the_one_in_flight(server):
    Scripted.script = [(503, {}, {"error": "busy"}, 0)] * 50
    started = time.monotonic()
    with pytest.raises(ServeError, match="did not answer"):
        ask(server, attempts=50, backoff_s=0.2, max_backoff_s=0.2, deadline_s=1.0)
    assert time.monotonic() - started < 1.6 and len(Scripted.seen) < 10

    Scripted.script = [(200, {}, EMPTY_ANSWER, 3.0)]       # a slow answer
    started = time.monotonic()
    with pytest.raises(ServeError, match="took longer"):
        ask(server, deadline_s=1.0)
    assert time.monotonic() - started < 2.0


def test_a_connection_refused_is_retried_then_reported(server):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(ServeError, match="did not answer after 3 attempt") as failed:
        ask(closed, attempts=3)
    assert failed.value.status is None
