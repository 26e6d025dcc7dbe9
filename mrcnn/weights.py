"""Getting and checking the published Mask R-CNN COCO weights file.

The weights are the ``mask_rcnn_coco.h5`` file from the matterport
Mask_RCNN v2.0 release.  This module downloads it (resumable, verified,
atomic) and checks a local copy *before* TensorFlow/Keras ever opens it, so
a missing, truncated or wrong file gives one clear sentence instead of a
deep HDF5 traceback.

Only the standard library is used for HTTP; ``h5py`` is imported lazily and
only as an extra check.  TensorFlow is never imported here.

Command line::

    python -m mrcnn.weights [--dest PATH] [--url URL] [--force] [--check]
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Optional, Union

__all__ = [
    "WEIGHTS_URL", "WEIGHTS_SIZE", "WEIGHTS_MD5", "WEIGHTS_FILENAME",
    "WeightsError", "WeightsDownloadError", "WeightsFileError",
    "default_weights_path", "download_weights", "check_weights_file",
    "ensure_weights", "file_md5", "main",
]

WEIGHTS_URL = ("https://github.com/matterport/Mask_RCNN/releases/download/"
               "v2.0/mask_rcnn_coco.h5")
WEIGHTS_SIZE = 257_557_808
WEIGHTS_MD5 = "e98aaff6f99e307b5e2a8a3ff741a518"
WEIGHTS_FILENAME = "mask_rcnn_coco.h5"

ENV_VAR = "MRCNN_WEIGHTS"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# Seconds to wait before retry number n (1-based) is min(BASE * 2**(n-1), MAX).
# Module-level so tests can shorten it.
RETRY_BACKOFF_BASE = 0.5
RETRY_BACKOFF_MAX = 8.0

_USER_AGENT = "mrcnn-weights-downloader/1.0 (+python-urllib)"
_DOWNLOAD_CMD = "python -m mrcnn.weights"

PathLike = Union[str, "os.PathLike[str]"]
ProgressFn = Callable[[int, Optional[int]], None]


class WeightsError(Exception):
    """Base class: the weights file could not be obtained or is unusable."""


class WeightsDownloadError(WeightsError):
    """Downloading the weights failed (network, HTTP status, bad content)."""


class WeightsFileError(WeightsError):
    """A local weights file is missing, truncated, corrupt or unwritable."""


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------

def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def default_weights_path() -> Path:
    """``$MRCNN_WEIGHTS`` if set (a file path), else ``<repo>/weights/mask_rcnn_coco.h5``."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    return _repo_root() / "weights" / WEIGHTS_FILENAME


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _fmt_bytes(n: int) -> str:
    return f"{n:,}"


# --------------------------------------------------------------------------
# Checking a local file
# --------------------------------------------------------------------------

def file_md5(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def _hdf5_stored_eof(path: Path) -> Optional[int]:
    """End-of-file address the HDF5 superblock promises, as an absolute offset.

    Returns None when the superblock cannot be parsed (unknown version, short
    header or an undefined address); the caller then relies on h5py alone.
    Assumes the superblock is at offset 0 (no user block), which is what the
    signature check before it requires.
    """
    with open(path, "rb") as f:
        head = f.read(128)
    if len(head) < 9 or not head.startswith(HDF5_SIGNATURE):
        return None
    version = head[8]
    if version in (0, 1):
        if len(head) < 16:
            return None
        size_of_offsets = head[13]
        # 8 signature + 8 one-byte fields + 2+2 group K + 4 flags = 24;
        # version 1 adds 2 bytes indexed-storage K + 2 reserved.
        base_at = 24 if version == 0 else 28
        # base address, free-space address, end-of-file address.
        eof_at = base_at + 2 * size_of_offsets
    elif version in (2, 3):
        if len(head) < 12:
            return None
        size_of_offsets = head[9]
        # 8 signature + version + offsets + lengths + flags = 12;
        # base address, superblock extension address, end-of-file address.
        base_at = 12
        eof_at = base_at + 2 * size_of_offsets
    else:
        return None
    if size_of_offsets not in (2, 4, 8) or len(head) < eof_at + size_of_offsets:
        return None
    fmt = {2: "<H", 4: "<I", 8: "<Q"}[size_of_offsets]
    undefined = (1 << (8 * size_of_offsets)) - 1
    (base,) = struct.unpack_from(fmt, head, base_at)
    (eof,) = struct.unpack_from(fmt, head, eof_at)
    if base == undefined or eof == undefined:
        return None
    return base + eof


def _h5py_open_error(path: Path) -> Optional[str]:
    """Reason h5py cannot open the file, or None if it opens (or h5py is absent)."""
    try:
        import h5py  # noqa: WPS433 (lazy on purpose)
    except ImportError:
        return None
    try:
        with h5py.File(path, "r") as f:
            f.id.get_filesize()
    except Exception as exc:  # h5py raises OSError, sometimes others
        text = " ".join(str(exc).split())
        return text or type(exc).__name__
    return None


def _redownload_hint(path: Path) -> str:
    return (f"delete it and run `{_DOWNLOAD_CMD} --dest {path}` to download it "
            f"again, or set {ENV_VAR} to a good copy")


def check_weights_file(path: PathLike, expected_size: Optional[int] = None) -> None:
    """Raise :class:`WeightsFileError` unless ``path`` looks like a usable HDF5 weights file.

    Cheap checks only (no MD5): existence, non-empty, HDF5 signature, size
    (``expected_size`` if given; otherwise, for a file named
    ``mask_rcnn_coco.h5``, the published size), the end-of-file address in
    the HDF5 superblock, and that h5py can open it.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsFileError(
            f"No weights file at {path}; run `{_DOWNLOAD_CMD}` to download the "
            f"COCO weights (or download {WEIGHTS_URL} by hand), or set "
            f"{ENV_VAR} to the location of an existing {WEIGHTS_FILENAME}.")
    if not path.is_file():
        raise WeightsFileError(
            f"{path} is not a regular file; point {ENV_VAR} (or the weights "
            f"path) at the {WEIGHTS_FILENAME} file itself.")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(len(HDF5_SIGNATURE))
    except OSError as exc:
        raise WeightsFileError(
            f"Could not read {path} ({exc}); fix its permissions or set "
            f"{ENV_VAR} to a readable copy.") from exc
    if size == 0:
        raise WeightsFileError(
            f"{path} is empty (0 bytes); {_redownload_hint(path)}.")
    if head != HDF5_SIGNATURE:
        raise WeightsFileError(
            f"{path} is not an HDF5 weights file (it does not start with the "
            f"HDF5 signature, so it may be an error page or a different "
            f"format); {_redownload_hint(path)}.")
    if expected_size is not None:
        if size != expected_size:
            what = "truncated" if size < expected_size else "the wrong size"
            raise WeightsFileError(
                f"{path} is {what}: it has {_fmt_bytes(size)} of "
                f"{_fmt_bytes(expected_size)} bytes; {_redownload_hint(path)}.")
    elif path.name == WEIGHTS_FILENAME and size != WEIGHTS_SIZE:
        what = "truncated" if size < WEIGHTS_SIZE else "the wrong size (not the published file)"
        raise WeightsFileError(
            f"{path} is {what}: it has {_fmt_bytes(size)} of "
            f"{_fmt_bytes(WEIGHTS_SIZE)} bytes; {_redownload_hint(path)}.")
    stored_eof = _hdf5_stored_eof(path)
    if stored_eof is not None and stored_eof > size:
        raise WeightsFileError(
            f"{path} is truncated: its HDF5 header says the file is "
            f"{_fmt_bytes(stored_eof)} bytes but only {_fmt_bytes(size)} are "
            f"there; {_redownload_hint(path)}.")
    reason = _h5py_open_error(path)
    if reason is not None:
        raise WeightsFileError(
            f"{path} is corrupt: h5py cannot open it ({reason}); "
            f"{_redownload_hint(path)}.")


def _verify_complete(path: Path, expected_size: Optional[int],
                     expected_md5: Optional[str]) -> Optional[str]:
    """Return a description of the mismatch, or None if the file verifies."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        return f"it has {_fmt_bytes(size)} bytes instead of {_fmt_bytes(expected_size)}"
    if expected_md5 is not None:
        digest = file_md5(path)
        if digest.lower() != expected_md5.lower():
            return f"its MD5 is {digest} instead of {expected_md5.lower()}"
    return None


# --------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------

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


def _one_attempt(url: str, part: Path, dest: Path, expected_size: Optional[int],
                 progress: Optional[ProgressFn], timeout: float,
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
            raise _Restart(f"the server refused to resume at byte {offset} (HTTP 416)")
        if exc.code in (408, 429) or 500 <= exc.code < 600:
            raise _Dropped(f"HTTP {exc.code} {exc.reason}", connected=True)
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
                f"The server offers {_fmt_bytes(total)} bytes at {url} but the "
                f"COCO weights are {_fmt_bytes(expected_size)} bytes; check the "
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
                f"connection closed after {_fmt_bytes(received)} of "
                f"{_fmt_bytes(body_len)} bytes", connected=True)
        if total is not None and done < total:
            raise _Dropped(
                f"connection closed at byte {_fmt_bytes(done)} of {_fmt_bytes(total)}",
                connected=True)


def _write_error(part: Path, exc: OSError) -> WeightsFileError:
    return WeightsFileError(
        f"Could not write {part} ({exc}); make sure the folder is writable "
        f"and has about 260 MB free, or choose another place with --dest or "
        f"{ENV_VAR}.")


def download_weights(dest: Optional[PathLike] = None, url: str = WEIGHTS_URL,
                     expected_size: Optional[int] = WEIGHTS_SIZE,
                     expected_md5: Optional[str] = WEIGHTS_MD5,
                     progress: Optional[ProgressFn] = None, timeout: float = 30,
                     retries: int = 3, chunk_size: int = 1 << 20) -> Path:
    """Download the weights to ``dest`` (default: :func:`default_weights_path`).

    Streams into ``<dest>.part``, resuming it with an HTTP Range request if it
    exists or the connection drops, retrying up to ``retries`` times.  When the
    body is complete it checks the size and MD5 (either may be None to skip)
    and only then renames the ``.part`` onto ``dest``.  A ``dest`` that already
    verifies is returned without downloading.  ``progress(done, total)`` is
    called after each chunk (``total`` is None if unknown).
    """
    return _download(dest, url, expected_size, expected_md5, progress, timeout,
                     retries, chunk_size, force=False)


def _download(dest, url, expected_size, expected_md5, progress, timeout,
              retries, chunk_size, force) -> Path:
    dest = Path(dest).expanduser() if dest is not None else default_weights_path()
    part = _part_path(dest)

    if dest.is_file() and not force:
        if _verify_complete(dest, expected_size, expected_md5) is None:
            return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsFileError(
            f"Could not create the folder {dest.parent} ({exc}); choose another "
            f"place with --dest or {ENV_VAR}.") from exc
    if force:
        _remove(part)

    failures = 0
    restarts = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if expected_size is not None and have > expected_size:
            _remove(part)
            have = 0
        elif expected_size is not None and have == expected_size:
            break  # already complete; verify below
        try:
            _one_attempt(url, part, dest, expected_size, progress, timeout, chunk_size)
            break
        except _Restart as exc:
            _remove(part)
            restarts += 1
            if restarts > retries + 1:
                raise WeightsDownloadError(
                    f"The server at {url} kept refusing to resume ({exc}); "
                    f"download the file by hand and put it at {dest}.") from None
        except _Dropped as exc:
            now_have = part.stat().st_size if part.exists() else 0
            if now_have > have:
                failures = 0  # the partial file grew: resume at once
                continue
            failures += 1
            if failures > retries:
                if not exc.connected:
                    raise _offline_error(url, dest, exc.reason) from None
                have = part.stat().st_size if part.exists() else 0
                raise WeightsDownloadError(
                    f"The download from {url} kept failing ({exc.reason}); run the "
                    f"same command again to resume from byte {_fmt_bytes(have)}, or "
                    f"download the file by hand and put it at {dest}.") from None
            time.sleep(min(RETRY_BACKOFF_BASE * 2 ** (failures - 1), RETRY_BACKOFF_MAX))

    mismatch = _verify_complete(part, expected_size, expected_md5)
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


# --------------------------------------------------------------------------
# High level
# --------------------------------------------------------------------------

def ensure_weights(path: Optional[PathLike] = None, download: bool = False,
                   progress: Optional[ProgressFn] = None) -> Path:
    """Return a checked weights path (``path`` or the default).

    If the file is missing and ``download`` is true it is downloaded first;
    otherwise a missing or bad file raises :class:`WeightsFileError`.
    """
    path = Path(path).expanduser() if path is not None else default_weights_path()
    if download and not path.exists():
        download_weights(path, progress=progress)
    check_weights_file(path)
    return path


def _check_size_md5(path: Path, expected_size: Optional[int],
                    expected_md5: Optional[str]) -> None:
    """What ``--check`` does: the file exists, and its size and MD5 match."""
    if not path.is_file():
        check_weights_file(path)  # raises the "missing / not a file" message
    try:
        mismatch = _verify_complete(path, expected_size, expected_md5)
    except OSError as exc:
        raise WeightsFileError(
            f"Could not read {path} ({exc}); fix its permissions or set "
            f"{ENV_VAR} to a readable copy.") from exc
    if mismatch is not None:
        raise WeightsFileError(
            f"{path} is not the expected weights file ({mismatch}); "
            f"{_redownload_hint(path)}.")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

class _ProgressBar:
    """Text progress bar on a stream: percentage, MB done/total, MB/s."""

    def __init__(self, stream=None, width: int = 30, interval: Optional[float] = None):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        if interval is None:  # redraw often on a terminal, rarely in a log file
            isatty = getattr(self.stream, "isatty", None)
            interval = 0.1 if isatty is not None and isatty() else 5.0
        self.interval = interval
        self.start = None
        self.first_done = 0
        self.last_draw = 0.0
        self.drawn = False

    def __call__(self, done: int, total: Optional[int]) -> None:
        now = time.monotonic()
        if self.start is None or done < self.first_done:
            self.start, self.first_done = now, done
        finished = total is not None and done >= total
        if not finished and now - self.last_draw < self.interval:
            return
        self.last_draw = now
        elapsed = now - self.start
        speed = (f"{(done - self.first_done) / elapsed / 1e6:6.1f} MB/s"
                 if elapsed > 0 else "   --- MB/s")
        if total:
            frac = min(done / total, 1.0)
            filled = int(frac * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            line = (f"\r[{bar}] {frac * 100:5.1f}%  {done / 1e6:7.1f}/"
                    f"{total / 1e6:.1f} MB  {speed}")
        else:
            line = f"\r{done / 1e6:7.1f} MB  {speed}"
        self.stream.write(line)
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _optional_int(text: str) -> Optional[int]:
    return None if text.lower() == "none" else int(text)


def _optional_md5(text: str) -> Optional[str]:
    if text.lower() == "none":
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{32}", text):
        raise argparse.ArgumentTypeError("expected 32 hex digits or 'none'")
    return text.lower()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mrcnn.weights",
        description="Download (or check) the Mask R-CNN COCO weights file.")
    parser.add_argument("--dest", type=Path, default=None,
                        help=f"where to put the file (default: ${ENV_VAR} or "
                             f"<repo>/weights/{WEIGHTS_FILENAME})")
    parser.add_argument("--url", default=WEIGHTS_URL,
                        help="download from this URL (e.g. a mirror)")
    parser.add_argument("--force", action="store_true",
                        help="download again even if the file is already there")
    parser.add_argument("--check", action="store_true",
                        help="only verify an existing file (size and MD5)")
    parser.add_argument("--size", type=_optional_int, default=WEIGHTS_SIZE,
                        help="expected size in bytes, or 'none' (default: the "
                             "published size)")
    parser.add_argument("--md5", type=_optional_md5, default=WEIGHTS_MD5,
                        help="expected MD5, or 'none' (default: the published MD5)")
    args = parser.parse_args(argv)
    dest = args.dest.expanduser() if args.dest is not None else default_weights_path()

    try:
        if args.check:
            _check_size_md5(dest, args.size, args.md5)
            print(dest)
            return 0
        bar = _ProgressBar(sys.stderr)
        try:
            path = _download(dest, args.url, args.size, args.md5, bar, 30, 3,
                             1 << 20, force=args.force)
        finally:
            bar.close()
        print(path)
        return 0
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nInterrupted; run the same command again to resume "
              f"(the partial file is {_part_path(dest)}).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
