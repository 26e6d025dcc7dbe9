"""HTTP client of the Ray Serve deployment: ``POST /detect`` and ``GET /healthz``.

It retries only what can succeed on a second try: a connection that failed or
dropped, a 500 from Ray's proxy rather than a replica (the replica holding the
request died; Serve replaces it and another one answers), 502/503/504 (a
gateway without a replica, a full queue), and 429 after the server's
``Retry-After``. A replica's own 500 (the same image would fail again), any
other 4xx (the caller's mistake) and a read that timed out are answered at
once. One deadline (``RetryPolicy.deadline_s``) bounds all the
attempts together, the one in flight included.

No TensorFlow and no Ray here: the app imports this module.
"""
from __future__ import annotations

import threading

import httpx

from mrcnn.retry import RetryPolicy, parse_retry_after
from mrcnn.serve.protocol import read_token, worth_retrying

__all__ = ["ServeClient", "ServeError"]

# Failures of the connection itself: the request may not have reached a replica,
# or the replica went away. A read or write timeout is not among them: the
# attempt had its time.
_RETRYABLE_ERRORS = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout,
                     httpx.PoolTimeout)


class ServeError(RuntimeError):
    """The service refused the request or could not be reached; ``str()`` says why.

    ``status`` is the HTTP status of the last answer (``None`` when there was none).
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ServeClient:
    """The deployment at ``url``; ``token`` defaults to ``$MRCNN_SERVE_TOKEN``.

    Thread-safe: the app's sessions share one instance.
    """

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 120.0,
                 retry: RetryPolicy = RetryPolicy()):  # noqa: B008 - immutable
        self.url = url.rstrip("/")
        token = token if token is not None else read_token()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout_s = float(timeout_s)
        self.retry = retry
        # trust_env=False: the service is addressed directly, never via a proxy.
        self._client = httpx.Client(headers=self._headers, trust_env=False)
        self._lock = threading.Lock()
        self.retries = 0   # requests re-sent so far (for the page and the load test)

    def detect(self, body: bytes, params: dict,
               content_type: str = "image/png") -> tuple[dict, int]:
        """``POST /detect``: (the answer's JSON, attempts it took); raises :class:`ServeError`."""
        attempts = self.retry.begin()
        while True:
            timeout = attempts.timeout(self.timeout_s)
            retry_after = None
            try:
                response = self._client.post(f"{self.url}/detect", params=params, content=body,
                                             headers={"Content-Type": content_type},
                                             timeout=timeout)
            except _RETRYABLE_ERRORS as exc:
                status, problem = None, f"{type(exc).__name__}: {exc}"
            except httpx.TimeoutException as exc:
                raise ServeError(f"The service at {self.url} took longer than {timeout:.0f} s "
                                 f"to answer ({type(exc).__name__}).") from None
            except httpx.HTTPError as exc:
                raise ServeError(f"The service at {self.url} could not be asked "
                                 f"({type(exc).__name__}: {exc}).") from None
            else:
                if response.status_code == 200:
                    return response.json(), attempts.attempt
                status = response.status_code
                problem = f"HTTP {status}: {error_text(response)}"
                if not worth_retrying(status, response.headers):
                    raise ServeError(f"The service refused the image: {error_text(response)}",
                                     status)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            if not attempts.wait(retry_after):
                break
            with self._lock:
                self.retries += 1
        raise ServeError(f"The service at {self.url} did not answer after {attempts.attempt} "
                         f"attempt(s) ({problem}); check that it runs "
                         "(`python -m mrcnn.serve`).", status)

    def health(self) -> dict:
        """``GET /healthz`` as a dict with ``status`` and, when it says, replicas and device.

        Never raises: a service that does not answer gives ``{"status": <why>}``.
        """
        try:
            response = self._client.get(f"{self.url}/healthz", timeout=10.0)
            payload = response.json()
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return {"status": f"The service at {self.url} did not answer "
                              f"({type(exc).__name__}); start it with `python -m mrcnn.serve` "
                              "or fix MRCNN_SERVE_URL."}
        if response.status_code not in (200, 503):
            return {"status": f"HTTP {response.status_code}: {payload.get('error', '')}".strip()}
        return payload

    def close(self):
        self._client.close()


def error_text(response) -> str:
    """The service's one-sentence error of an answer (its JSON ``error``, else the text)."""
    try:
        return str(response.json().get("error") or response.text)
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
