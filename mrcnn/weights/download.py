"""Downloading the published Mask R-CNN COCO weights file.

Resumable (HTTP Range), verified (size and MD5), atomic (``<dest>.part``
renamed when complete), never more bytes than the published size, and one
download per destination at a time (a file lock that other callers wait on,
seeing its progress). Only the standard library is used for HTTP.
"""
from __future__ import annotations

import contextlib
import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from mrcnn.retry import RetryPolicy
from mrcnn.weights.check import (
    ENV_VAR,
    WEIGHTS_MD5,
    WEIGHTS_SIZE,
    WEIGHTS_URL,
    PathLike,
    WeightsDownloadError,
    WeightsFileError,
    check_weights_file,
    default_weights_path,
    fmt_bytes,
    verify_complete,
)

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; downloads are not serialised there
    fcntl = None

__all__ = ["DOWNLOAD_RETRY", "download_weights", "ensure_weights", "part_path"]

#: Four tries, waits of 0.5, 1, 2 s; no overall deadline (the file is 258 MB).
DOWNLOAD_RETRY = RetryPolicy(attempts=4, backoff_s=0.5, max_backoff_s=8.0, deadline_s=None)
#: How often a caller waiting for another download's lock reports its progress.
LOCK_POLL_S = 0.5

_USER_AGENT = "mrcnn-weights-downloader/1.0 (+python-urllib)"

ProgressFn = Callable[[int, int | None], None]


def part_path(dest: Path) -> Path:
    """Where the download of ``dest`` grows until it verifies."""
    return dest.with_name(dest.name + ".part")


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


class _Dropped(Exception):
    """Internal: the transfer stopped early; retry (resuming if possible)."""

    def __init__(self, reason: str, connected: bool):
        super().__init__(reason)
        self.reason = reason
        self.connected = connected


class _Restart(Exception):
    """Internal: the partial file is unusable; start again from byte 0."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc_r = exc.reason
        text = str(exc_r) if not isinstance(exc_r, str) else exc_r
    else:
        text = str(exc)
    text = " ".join(text.split())
    return text or type(exc).__name__


def _offline_error(url: str, dest: Path, reason: str) -> WeightsDownloadError:
    host = urllib.parse.urlsplit(url).hostname or url
    return WeightsDownloadError(
        f"Could not reach {host} to download the COCO weights ({reason}). "
        f"Download {url} by hand and put it at {dest}, or set {ENV_VAR} to "
        f"its location.")


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _one_attempt(url: str, part: Path, dest: Path, expected_size: int | None,
                 progress: ProgressFn | None, timeout: float,
                 chunk_size: int) -> None:
    """One HTTP request; appends to ``part``. Returns when the body is complete.

    Raises _Dropped (retryable), _Restart (partial file unusable) or
    WeightsError (fatal).
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            raise _Restart(f"the server refused to resume at byte {offset} (HTTP 416)") from exc
        if exc.code in (408, 429) or 500 <= exc.code < 600:
            raise _Dropped(f"HTTP {exc.code} {exc.reason}", connected=True) from exc
        raise WeightsDownloadError(
            f"The server answered HTTP {exc.code} {exc.reason} for {url}; check "
            f"the URL, or download the file by hand and put it at {dest} "
            f"(or set {ENV_VAR} to its location).") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Dropped(_reason(exc), connected=False) from exc

    with response:
        status = response.status
        content_length = response.headers.get("Content-Length")
        body_len = int(content_length) if content_length and content_length.isdigit() else None
        if offset and status == 206:
            match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise _Restart("the server resumed at an unexpected position")
            total = int(match.group(3)) if match.group(3) != "*" else expected_size
            mode = "ab"
        elif status in (200, 206):
            # 200 to a Range request: the server ignores ranges; start over.
            offset = 0
            total = body_len if body_len is not None else expected_size
            mode = "wb"
        else:
            raise WeightsDownloadError(
                f"The server answered HTTP {status} {response.reason} for {url}; "
                f"check the URL, or download the file by hand and put it at {dest}.")
        if expected_size is not None and total is not None and total != expected_size:
            _remove(part)
            raise WeightsDownloadError(
                f"The server offers {fmt_bytes(total)} bytes at {url} but the "
                f"COCO weights are {fmt_bytes(expected_size)} bytes; check the "
                f"URL, or download the file by hand and put it at {dest}.")

        done = offset
        received = 0
        try:
            out = open(part, mode)
        except OSError as exc:
            raise _write_error(part, exc) from exc
        with out:
            while True:
                try:
                    chunk = response.read(chunk_size)
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    raise _Dropped(_reason(exc), connected=True) from exc
                if not chunk:
                    break
                if expected_size is not None and done + len(chunk) > expected_size:
                    out.close()
                    _remove(part)
                    raise WeightsDownloadError(
                        f"The server at {url} sent more than the {fmt_bytes(expected_size)} "
                        f"bytes of the COCO weights; the partial file was deleted. Check the "
                        f"URL, or download the file by hand and put it at {dest}.")
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise _write_error(part, exc) from exc
                received += len(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise _write_error(part, exc) from exc
        if body_len is not None and received < body_len:
            raise _Dropped(
                f"connection closed after {fmt_bytes(received)} of "
                f"{fmt_bytes(body_len)} bytes", connected=True)
        if total is not None and done < total:
            raise _Dropped(
                f"connection closed at byte {fmt_bytes(done)} of {fmt_bytes(total)}",
                connected=True)


def _write_error(part: Path, exc: OSError) -> WeightsFileError:
    return WeightsFileError(
        f"Could not write {part} ({exc}); make sure the folder is writable "
        f"and has about 260 MB free, or choose another place with --dest or "
        f"{ENV_VAR}.")


def download_weights(dest: PathLike | None = None, url: str = WEIGHTS_URL,
                     expected_size: int | None = WEIGHTS_SIZE,
                     expected_md5: str | None = WEIGHTS_MD5,
                     progress: ProgressFn | None = None, timeout: float = 30,
                     retry: RetryPolicy | None = None, chunk_size: int = 1 << 20,
                     force: bool = False) -> Path:
    """Download the weights to ``dest`` (default: :func:`default_weights_path`).

    Streams into ``<dest>.part``, resuming it with an HTTP Range request if it
    exists or the connection drops, retrying as ``retry`` allows (default
    ``DOWNLOAD_RETRY``; counted afresh whenever the partial file grew). When the body is complete it
    checks the size and MD5 (either may be None to skip) and only then renames
    the ``.part`` onto ``dest``. No byte beyond ``expected_size`` is written.

    One download per destination at a time: a file lock (``<dest>.lock``)
    serialises callers in this and other processes. A caller that waits for
    it has ``progress`` called with the other download's progress, and gets
    the finished file without downloading again. A ``dest`` that already
    verifies is returned without downloading (unless ``force``).
    ``progress(done, total)`` is called after each chunk (``total`` is None
    if unknown).
    """
    dest = Path(dest).expanduser() if dest is not None else default_weights_path()
    if not force and _verified(dest, expected_size, expected_md5):
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsFileError(
            f"Could not create the folder {dest.parent} ({exc}); choose another "
            f"place with --dest or {ENV_VAR}.") from exc
    with _download_lock(dest, expected_size, progress) as waited:
        if (waited or not force) and _verified(dest, expected_size, expected_md5):
            return dest     # another caller finished it while this one waited
        if force:
            _remove(part_path(dest))
        return _download_locked(dest, url, expected_size, expected_md5, progress, timeout,
                                retry or DOWNLOAD_RETRY, chunk_size)


def _verified(dest: Path, expected_size, expected_md5) -> bool:
    return dest.is_file() and verify_complete(dest, expected_size, expected_md5) is None


@contextlib.contextmanager
def _download_lock(dest: Path, expected_size, progress):
    """Hold ``<dest>.lock`` exclusively; yields whether another download held it first.

    While waiting, ``progress`` sees the size of the other download's ``.part``.
    The lock file is left in place: removing it would race with the next caller.
    """
    if fcntl is None:
        yield False
        return
    part = part_path(dest)
    try:
        handle = open(dest.with_name(dest.name + ".lock"), "a+b")
    except OSError as exc:
        raise _write_error(dest.with_name(dest.name + ".lock"), exc) from exc
    waited = False
    with handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = True
                if progress is not None:
                    progress(part.stat().st_size if part.exists() else 0, expected_size)
                time.sleep(LOCK_POLL_S)
        try:
            yield waited
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download_locked(dest, url, expected_size, expected_md5, progress, timeout,
                     retry, chunk_size) -> Path:
    part = part_path(dest)
    attempts = retry.begin()
    restarts = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if expected_size is not None and have > expected_size:
            _remove(part)
            have = 0
        elif expected_size is not None and have == expected_size:
            break  # already complete; verify below
        try:
            _one_attempt(url, part, dest, expected_size, progress,
                         attempts.timeout(timeout), chunk_size)
            break
        except _Restart as exc:
            _remove(part)
            restarts += 1
            if restarts > retry.attempts:
                raise WeightsDownloadError(
                    f"The server at {url} kept refusing to resume ({exc}); "
                    f"download the file by hand and put it at {dest}.") from None
        except _Dropped as exc:
            now_have = part.stat().st_size if part.exists() else 0
            if now_have > have:
                attempts = retry.begin()  # the partial file grew: resume at once
                continue
            if not attempts.wait():
                if not exc.connected:
                    raise _offline_error(url, dest, exc.reason) from None
                raise WeightsDownloadError(
                    f"The download from {url} kept failing ({exc.reason}); run the "
                    f"same command again to resume from byte {fmt_bytes(now_have)}, or "
                    f"download the file by hand and put it at {dest}.") from None

    mismatch = verify_complete(part, expected_size, expected_md5)
    if mismatch is not None:
        _remove(part)
        raise WeightsDownloadError(
            f"The file downloaded from {url} is not the expected one ({mismatch}) "
            f"and was deleted; try again, or download it by hand and put it at "
            f"{dest}.")
    try:
        os.replace(part, dest)
    except OSError as exc:
        raise WeightsFileError(
            f"Could not move {part} to {dest} ({exc}); check permissions, or "
            f"move it by hand.") from exc
    return dest


def ensure_weights(path: PathLike | None = None, download: bool = False,
                   progress: ProgressFn | None = None) -> Path:
    """Return a checked weights path (``path`` or the default).

    If the file is missing and ``download`` is true it is downloaded first;
    otherwise a missing or bad file raises :class:`WeightsFileError`.
    """
    path = Path(path).expanduser() if path is not None else default_weights_path()
    if download and not path.exists():
        download_weights(path, progress=progress)
    check_weights_file(path)
    return path
