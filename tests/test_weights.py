"""Tests for mrcnn.weights against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import http.server
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mrcnn import weights as W
from mrcnn.retry import RetryPolicy

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = random.Random(1234).randbytes(3 * 1024 * 1024 + 12345)
DATA_MD5 = hashlib.md5(DATA).hexdigest()
CHUNK = 64 * 1024


# --------------------------------------------------------------------------
# Local HTTP server with Range support and switchable misbehaviour
# --------------------------------------------------------------------------

class _State:
    def __init__(self):
        # normal | cut_first | 404 | ignore_range | 416_first | slow | too_long
        self.mode = "normal"
        self.requests = []    # (path, Range header or None) per request
        self.lock = threading.Lock()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        state = self.server.state
        rng = self.headers.get("Range")
        with state.lock:
            state.requests.append((self.path, rng))
            n = len(state.requests)
            mode = state.mode
        if mode == "404":
            self.send_error(404, "Not Found")
            return
        if mode == "416_first" and n == 1 and rng:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(DATA)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and mode != "ignore_range":
            start = int(m.group(1))
            if start >= len(DATA):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(DATA)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
        else:
            self.send_response(200)
        body = DATA[start:]
        self.send_header("Content-Type", "application/octet-stream")
        if mode == "too_long":    # no length announced, then more bytes than the file has
            body += b"\0" * 4096
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "cut_first" and n == 1:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            if mode == "slow":               # ~1 s in all, so a second caller has to wait
                for at in range(0, len(body), CHUNK):
                    self.wfile.write(body[at:at + CHUNK])
                    self.wfile.flush()
                    time.sleep(0.02)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up early (e.g. size mismatch): expected


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = _State()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/mask_rcnn_coco.h5"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(W.download, "DOWNLOAD_RETRY",
                        RetryPolicy(attempts=4, backoff_s=0.01, deadline_s=None))


def _md5(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _dl(server, dest, **kw):
    kw.setdefault("expected_size", len(DATA))
    kw.setdefault("expected_md5", DATA_MD5)
    kw.setdefault("chunk_size", CHUNK)
    kw.setdefault("timeout", 5)
    return W.download_weights(dest, url=server.url, **kw)


# --------------------------------------------------------------------------
# Constants and default path
# --------------------------------------------------------------------------

def test_constants():
    assert W.WEIGHTS_URL == ("https://github.com/matterport/Mask_RCNN/releases/"
                             "download/v2.0/mask_rcnn_coco.h5")
    assert W.WEIGHTS_SIZE == 257_557_808
    assert W.WEIGHTS_MD5 == "e98aaff6f99e307b5e2a8a3ff741a518"
    assert W.WEIGHTS_FILENAME == "mask_rcnn_coco.h5"
    assert issubclass(W.WeightsDownloadError, W.WeightsError)
    assert issubclass(W.WeightsFileError, W.WeightsError)


def test_default_weights_path(monkeypatch, tmp_path):
    monkeypatch.delenv("MRCNN_WEIGHTS", raising=False)
    assert W.default_weights_path() == REPO_ROOT / "weights" / "mask_rcnn_coco.h5"
    target = tmp_path / "elsewhere" / "w.h5"
    monkeypatch.setenv("MRCNN_WEIGHTS", str(target))
    assert W.default_weights_path() == target


def test_module_does_not_import_tensorflow():
    code = ("import sys, mrcnn.weights; "
            "sys.exit(1 if 'tensorflow' in sys.modules else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, timeout=60)
    assert r.returncode == 0


# --------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------

def test_full_download_with_progress(server, tmp_path):
    calls = []
    dest = tmp_path / "sub" / "w.h5"  # parent folder does not exist yet
    out = _dl(server, dest, progress=lambda done, total: calls.append((done, total)))
    assert out == dest
    assert _md5(dest) == DATA_MD5
    assert not (tmp_path / "sub" / "w.h5.part").exists()
    assert len(calls) >= len(DATA) // CHUNK
    dones = [d for d, _ in calls]
    assert all(b > a for a, b in zip(dones, dones[1:]))
    assert calls[-1] == (len(DATA), len(DATA))
    assert all(t == len(DATA) for _, t in calls)
    assert server.state.requests == [("/mask_rcnn_coco.h5", None)]


def test_resume_after_connection_cut(server, tmp_path):
    server.state.mode = "cut_first"
    dest = tmp_path / "w.h5"
    _dl(server, dest)
    reqs = server.state.requests
    assert len(reqs) == 2
    assert reqs[0][1] is None
    assert reqs[1][1] == f"bytes={len(DATA) // 2}-"
    assert _md5(dest) == DATA_MD5


def test_existing_part_is_resumed(server, tmp_path):
    dest = tmp_path / "w.h5"
    (tmp_path / "w.h5.part").write_bytes(DATA[:1_000_000])
    calls = []
    _dl(server, dest, progress=lambda d, t: calls.append(d))
    assert server.state.requests == [("/mask_rcnn_coco.h5", "bytes=1000000-")]
    assert calls[0] > 1_000_000 and calls[-1] == len(DATA)
    assert _md5(dest) == DATA_MD5
    assert not (tmp_path / "w.h5.part").exists()


def test_range_ignored_restarts_from_zero(server, tmp_path):
    server.state.mode = "ignore_range"
    dest = tmp_path / "w.h5"
    (tmp_path / "w.h5.part").write_bytes(b"x" * 500_000)  # junk that must not survive
    calls = []
    _dl(server, dest, progress=lambda d, t: calls.append((d, t)))
    assert server.state.requests == [("/mask_rcnn_coco.h5", "bytes=500000-")]
    assert calls[0][0] == CHUNK and calls[-1] == (len(DATA), len(DATA))
    assert _md5(dest) == DATA_MD5


def test_416_restarts_from_zero(server, tmp_path):
    server.state.mode = "416_first"
    dest = tmp_path / "w.h5"
    (tmp_path / "w.h5.part").write_bytes(b"y" * 1234)
    _dl(server, dest)
    reqs = server.state.requests
    assert [r[1] for r in reqs] == ["bytes=1234-", None]
    assert _md5(dest) == DATA_MD5


def test_md5_mismatch_leaves_nothing(server, tmp_path):
    dest = tmp_path / "w.h5"
    with pytest.raises(W.WeightsDownloadError, match="MD5"):
        _dl(server, dest, expected_md5="0" * 32)
    assert not dest.exists()
    assert not (tmp_path / "w.h5.part").exists()


def test_size_mismatch_leaves_nothing(server, tmp_path):
    dest = tmp_path / "w.h5"
    (tmp_path / "w.h5.part").write_bytes(DATA[:1000])
    with pytest.raises(W.WeightsDownloadError, match=r"bytes"):
        _dl(server, dest, expected_size=len(DATA) + 1, expected_md5=None)
    assert not dest.exists()
    assert not (tmp_path / "w.h5.part").exists()


def test_404_is_a_clear_error(server, tmp_path):
    server.state.mode = "404"
    dest = tmp_path / "w.h5"
    with pytest.raises(W.WeightsDownloadError) as info:
        _dl(server, dest)
    msg = str(info.value)
    assert "404" in msg and server.url in msg
    assert len(server.state.requests) == 1  # a 404 is not retried
    assert not dest.exists() and not (tmp_path / "w.h5.part").exists()


def test_no_server_gives_offline_message(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    url = f"http://127.0.0.1:{port}/mask_rcnn_coco.h5"
    dest = tmp_path / "w.h5"
    with pytest.raises(W.WeightsDownloadError) as info:
        W.download_weights(dest, url=url, timeout=2,
                           retry=RetryPolicy(attempts=2, backoff_s=0.01, deadline_s=None))
    msg = str(info.value)
    assert msg.startswith("Could not reach 127.0.0.1 to download the COCO weights (")
    assert f"Download {url} by hand and put it at {dest}" in msg
    assert "MRCNN_WEIGHTS" in msg
    assert "Traceback" not in msg and "\n" not in msg
    assert not dest.exists()


def test_two_downloads_at_once_make_one_file_and_share_the_progress(server, tmp_path):
    """Two visitors press "Download" together: one transfer (a file lock per destination),
    the second caller sees the first one's progress and gets the same verified file."""
    server.state.mode = "slow"
    dest = tmp_path / "w.h5"
    seen = {"first": [], "second": []}
    results, errors = {}, []

    def fetch(name):
        try:
            results[name] = _dl(server, dest, progress=lambda d, t: seen[name].append((d, t)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    first = threading.Thread(target=fetch, args=("first",))
    first.start()
    while not seen["first"]:
        time.sleep(0.01)             # the first transfer is under way
    second = threading.Thread(target=fetch, args=("second",))
    second.start()
    first.join(timeout=60)
    second.join(timeout=60)
    assert not errors, errors
    assert results == {"first": dest, "second": dest}
    assert _md5(dest) == DATA_MD5 and dest.stat().st_size == len(DATA)
    assert len(server.state.requests) == 1, server.state.requests   # one transfer only
    assert not (tmp_path / "w.h5.part").exists()
    waited = [done for done, total in seen["second"]]
    assert waited and max(waited) > 0 and all(t == len(DATA) for _, t in seen["second"])


def test_never_more_bytes_than_the_published_size(server, tmp_path):
    server.state.mode = "too_long"
    dest = tmp_path / "w.h5"
    with pytest.raises(W.WeightsDownloadError, match="sent more than"):
        _dl(server, dest)
    assert not dest.exists() and not (tmp_path / "w.h5.part").exists()


def test_existing_valid_dest_is_not_downloaded(server, tmp_path):
    dest = tmp_path / "w.h5"
    dest.write_bytes(DATA)
    assert _dl(server, dest) == dest
    assert server.state.requests == []


def test_existing_bad_dest_is_replaced(server, tmp_path):
    dest = tmp_path / "w.h5"
    dest.write_bytes(b"not the weights")
    _dl(server, dest)
    assert _md5(dest) == DATA_MD5
    assert len(server.state.requests) == 1


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop("MRCNN_WEIGHTS", None)
    return subprocess.run([sys.executable, "-m", "mrcnn.weights", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def test_cli_downloads_and_checks(server, tmp_path):
    dest = tmp_path / "cli" / "w.h5"
    common = ["--dest", str(dest), "--size", str(len(DATA)), "--md5", DATA_MD5]
    r = _cli("--url", server.url, *common)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(dest)
    assert "100.0%" in r.stderr and "MB/s" in r.stderr
    assert _md5(dest) == DATA_MD5

    r = _cli("--check", *common)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(dest)
    assert len(server.state.requests) == 1  # --check never downloads


def test_cli_failures_exit_1_without_traceback(server, tmp_path):
    server.state.mode = "404"
    dest = tmp_path / "w.h5"
    r = _cli("--url", server.url, "--dest", str(dest))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "404" in r.stderr and len(r.stderr.strip().splitlines()) == 1

    dest.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    r = _cli("--check", "--dest", str(dest), "--size", "none")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "MD5" in r.stderr


# --------------------------------------------------------------------------
# check_weights_file
# --------------------------------------------------------------------------

def _make_h5(path, libver="earliest"):
    import h5py
    import numpy as np
    rng = np.random.default_rng(0)
    with h5py.File(path, "w", libver=libver) as f:
        g = f.create_group("conv1")
        g.create_dataset("kernel", data=rng.standard_normal((64, 64, 8), dtype="float32"))
        g.create_dataset("bias", data=np.arange(64, dtype="float32"))
        f.attrs["layer_names"] = [b"conv1"]
    return path


def test_check_missing_file(tmp_path):
    with pytest.raises(W.WeightsFileError) as info:
        W.check_weights_file(tmp_path / "nope.h5")
    msg = str(info.value)
    assert "python -m mrcnn.weights" in msg and "MRCNN_WEIGHTS" in msg


def test_check_empty_file(tmp_path):
    p = tmp_path / "w.h5"
    p.touch()
    with pytest.raises(W.WeightsFileError, match="empty"):
        W.check_weights_file(p)


def test_check_text_file(tmp_path):
    p = tmp_path / "w.h5"
    p.write_text("<html>404 Not Found</html>\n")
    with pytest.raises(W.WeightsFileError, match="not an HDF5 weights file"):
        W.check_weights_file(p)


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_check_valid_then_truncated_h5(tmp_path, libver):
    p = _make_h5(tmp_path / "w.h5", libver)
    W.check_weights_file(p)  # passes
    W.check_weights_file(p, expected_size=p.stat().st_size)
    assert W.check._hdf5_stored_eof(p) == p.stat().st_size
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(W.WeightsFileError, match="truncated|corrupt"):
        W.check_weights_file(p)


def test_check_truncated_detected_without_h5py(tmp_path, monkeypatch):
    p = _make_h5(tmp_path / "w.h5")
    data = p.read_bytes()
    p.write_bytes(data[:-100])
    monkeypatch.setitem(sys.modules, "h5py", None)  # superblock check alone
    with pytest.raises(W.WeightsFileError, match="truncated") as info:
        W.check_weights_file(p)
    assert f"{len(data):,}" in str(info.value)


def test_check_corrupt_but_full_size(tmp_path):
    p = _make_h5(tmp_path / "w.h5")
    data = bytearray(p.read_bytes())
    data[96:] = b"\xff" * (len(data) - 96)  # keep signature + superblock only
    p.write_bytes(bytes(data))
    with pytest.raises(W.WeightsFileError, match="corrupt"):
        W.check_weights_file(p)


def test_check_expected_size(tmp_path):
    p = _make_h5(tmp_path / "w.h5")
    with pytest.raises(W.WeightsFileError, match="truncated"):
        W.check_weights_file(p, expected_size=p.stat().st_size + 10)


def test_check_coco_name_wrong_size(tmp_path):
    p = _make_h5(tmp_path / "mask_rcnn_coco.h5")
    size = p.stat().st_size
    with pytest.raises(W.WeightsFileError) as info:
        W.check_weights_file(p)
    msg = str(info.value)
    assert "truncated" in msg
    assert f"{size:,} of 257,557,808 bytes" in msg
    assert "python -m mrcnn.weights" in msg


def test_ensure_weights(server, tmp_path, monkeypatch):
    p = _make_h5(tmp_path / "w.h5")
    assert W.ensure_weights(p) == p
    with pytest.raises(W.WeightsFileError):
        W.ensure_weights(tmp_path / "missing.h5")
    # download=True fetches a missing file, then checks it
    seen = []

    def fake_download(dest, progress=None):
        seen.append(dest)
        _make_h5(dest)
        return dest

    monkeypatch.setattr(W.download, "download_weights", fake_download)
    target = tmp_path / "new.h5"
    assert W.ensure_weights(target, download=True) == target
    assert seen == [target]
    monkeypatch.setenv("MRCNN_WEIGHTS", str(p))
    assert W.ensure_weights() == p
