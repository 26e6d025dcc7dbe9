"""Checking a Mask R-CNN weights *file* on disk, before anything reads it.

The published file is ``mask_rcnn_coco.h5`` from the matterport Mask_RCNN v2.0
release. :func:`check_weights_file` runs the cheap checks on a file of any
name (it exists, is not empty, starts with the HDF5 signature, is as long as
its HDF5 superblock says, and h5py opens it; a file named
``mask_rcnn_coco.h5`` must also have the published size);
:func:`check_size_and_md5` adds the full MD5 (``python -m mrcnn.weights
--check PATH``). Downloading is :mod:`mrcnn.weights.download`, reading the
layers into a model :mod:`mrcnn.weights.keras_h5`.
"""
from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Union

__all__ = [
    "ENV_VAR", "WEIGHTS_URL", "WEIGHTS_SIZE", "WEIGHTS_MD5", "WEIGHTS_FILENAME",
    "WeightsError", "WeightsDownloadError", "WeightsFileError",
    "check_size_and_md5", "check_weights_file", "default_weights_path", "file_md5",
]

WEIGHTS_URL = ("https://github.com/matterport/Mask_RCNN/releases/download/"
               "v2.0/mask_rcnn_coco.h5")
WEIGHTS_SIZE = 257_557_808
WEIGHTS_MD5 = "e98aaff6f99e307b5e2a8a3ff741a518"
WEIGHTS_FILENAME = "mask_rcnn_coco.h5"

ENV_VAR = "MRCNN_WEIGHTS"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

DOWNLOAD_COMMAND = "python -m mrcnn.weights"

PathLike = Union[str, "os.PathLike[str]"]


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
    """The folder that holds the ``mrcnn`` package (the repository root)."""
    return Path(__file__).resolve().parents[2]


def default_weights_path() -> Path:
    """``$MRCNN_WEIGHTS`` if set (a file path), else ``<repo>/weights/mask_rcnn_coco.h5``."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    return _repo_root() / "weights" / WEIGHTS_FILENAME


def fmt_bytes(n: int) -> str:
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


def _hdf5_stored_eof(path: Path) -> int | None:
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


def _h5py_open_error(path: Path) -> str | None:
    """Reason h5py cannot open the file, or None if it opens (or h5py is absent)."""
    try:
        import h5py  # lazy on purpose: h5py is optional here
    except ImportError:
        return None
    try:
        with h5py.File(path, "r") as f:
            f.id.get_filesize()
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, sometimes others
        text = " ".join(str(exc).split())
        return text or type(exc).__name__
    return None


def redownload_hint(path: Path) -> str:
    return (f"delete it and run `{DOWNLOAD_COMMAND} --dest {path}` to download it "
            f"again, or set {ENV_VAR} to a good copy")


def check_weights_file(path: PathLike, expected_size: int | None = None) -> None:
    """Raise :class:`WeightsFileError` unless ``path`` looks like a usable HDF5 weights file.

    Cheap checks only (no MD5): existence, non-empty, HDF5 signature, size
    (``expected_size`` if given; otherwise, for a file named
    ``mask_rcnn_coco.h5``, the published size), the end-of-file address in
    the HDF5 superblock, and that h5py can open it.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsFileError(
            f"No weights file at {path}; run `{DOWNLOAD_COMMAND}` to download the "
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
            f"{path} is empty (0 bytes); {redownload_hint(path)}.")
    if head != HDF5_SIGNATURE:
        raise WeightsFileError(
            f"{path} is not an HDF5 weights file (it does not start with the "
            f"HDF5 signature, so it may be an error page or a different "
            f"format); {redownload_hint(path)}.")
    if expected_size is not None:
        if size != expected_size:
            what = "truncated" if size < expected_size else "the wrong size"
            raise WeightsFileError(
                f"{path} is {what}: it has {fmt_bytes(size)} of "
                f"{fmt_bytes(expected_size)} bytes; {redownload_hint(path)}.")
    elif path.name == WEIGHTS_FILENAME and size != WEIGHTS_SIZE:
        what = "truncated" if size < WEIGHTS_SIZE else "the wrong size (not the published file)"
        raise WeightsFileError(
            f"{path} is {what}: it has {fmt_bytes(size)} of "
            f"{fmt_bytes(WEIGHTS_SIZE)} bytes; {redownload_hint(path)}.")
    stored_eof = _hdf5_stored_eof(path)
    if stored_eof is not None and stored_eof > size:
        raise WeightsFileError(
            f"{path} is truncated: its HDF5 header says the file is "
            f"{fmt_bytes(stored_eof)} bytes but only {fmt_bytes(size)} are "
            f"there; {redownload_hint(path)}.")
    reason = _h5py_open_error(path)
    if reason is not None:
        raise WeightsFileError(
            f"{path} is corrupt: h5py cannot open it ({reason}); "
            f"{redownload_hint(path)}.")


def verify_complete(path: Path, expected_size: int | None,
                     expected_md5: str | None) -> str | None:
    """Return a description of the mismatch, or None if the file verifies."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        return f"it has {fmt_bytes(size)} bytes instead of {fmt_bytes(expected_size)}"
    if expected_md5 is not None:
        digest = file_md5(path)
        if digest.lower() != expected_md5.lower():
            return f"its MD5 is {digest} instead of {expected_md5.lower()}"
    return None


def check_size_and_md5(path: PathLike, expected_size: int | None = WEIGHTS_SIZE,
                       expected_md5: str | None = WEIGHTS_MD5) -> None:
    """The full check (``--check``): the file exists, and its size and MD5 match (~1 s)."""
    path = Path(path).expanduser()
    if not path.is_file():
        check_weights_file(path)  # raises the "missing / not a file" message
    try:
        mismatch = verify_complete(path, expected_size, expected_md5)
    except OSError as exc:
        raise WeightsFileError(
            f"Could not read {path} ({exc}); fix its permissions or set "
            f"{ENV_VAR} to a readable copy.") from exc
    if mismatch is not None:
        raise WeightsFileError(
            f"{path} is not the expected weights file ({mismatch}); "
            f"{redownload_hint(path)}.")
