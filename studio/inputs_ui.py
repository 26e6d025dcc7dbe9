"""The main page's inputs: uploads, camera, sample photos, and which picture is shown.

Each upload is decoded once for its session, in a small pool shared by the whole
server (at most one decode per core at a time, and one per session), and kept in
the session; the
run store counts it against the memory budget. A visitor's uploads past
``MRCNN_MAX_UPLOADS`` are not opened at all.
"""
from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import streamlit as st

from mrcnn.inputs.uploads import SUPPORTED_EXTENSIONS, ImageDecodeError, decode_fitted, fit_within
from studio import alt_text
from studio.jobs import sample_digest
from studio.sample_sets import samples_for
from studio.services import Services
from studio.session_keys import (
    KEY_DECODED_UPLOADS,
    KEY_PICKED,
    KEY_PICKER,
    KEY_SAMPLE,
    KEY_SEEN_PICTURES,
    KEY_UPLOAD_DIGESTS,
)
from studio.sessions import session_id

logger = logging.getLogger("mrcnn.studio")

#: Longest side of the image the page works on (shown, segmented, cut out).
#: The network itself never sees more than IMAGE_MAX_DIM (at most 1024).
WORK_MAX_SIDE = 1024
THUMBNAIL_SIDE = 240


@dataclass(frozen=True)
class Picture:
    """One image the visitor can inspect: an upload, the camera photo or a sample."""
    name: str
    key: str                   # stable per source: upload file id, "camera:<id>", "sample:<name>"
    digest: str                # SHA-256 of the bytes, or "sample:<config>:<name>"
    file: object = None        # the UploadedFile; None for samples
    sample: str | None = None  # the sample's name


def upload_limit_mb() -> int:
    return int(st.get_option("server.maxUploadSize"))


@st.cache_resource
def decode_pool() -> ThreadPoolExecutor:
    """Decodes for every visitor, at most one per core at a time: a pile of huge
    photos waits its turn instead of taking every core from everyone."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return ThreadPoolExecutor(max_workers=max(1, cores or 1), thread_name_prefix="decode")


def decode_upload(data: bytes, max_pixels: int) -> tuple[np.ndarray, tuple]:
    """(working image, original (h, w)) of uploaded bytes; raises ImageDecodeError."""
    image, original = decode_fitted(data, max_pixels=max_pixels, max_side=WORK_MAX_SIDE)
    return fit_within(image, WORK_MAX_SIDE)[0], original


def decode_new_uploads(uploads: list, services: Services) -> dict:
    """Decode the uploads this session has not decoded yet (in the shared pool);
    returns the session's cache, upload key -> (image, size) or an error sentence."""
    decoded: dict = st.session_state.setdefault(KEY_DECODED_UPLOADS, {})
    wanted = {key for _, _, key in uploads}
    for stale in [key for key in decoded if key not in wanted]:
        del decoded[stale]
    new = [(file, name, key) for file, name, key in uploads if key not in decoded]
    if new:
        # One decode of this session at a time: other visitors' decodes take turns
        # with a visitor who dropped a pile of huge files.
        with st.spinner(f"Opening {len(new)} photo{'s' * (len(new) != 1)}…"):
            for file, _, key in new:
                future = decode_pool().submit(decode_upload, file.getvalue(),
                                              services.limits.image_pixels)
                try:
                    decoded[key] = future.result()
                except ImageDecodeError as exc:
                    decoded[key] = str(exc)
                except Exception:  # e.g. MemoryError: one sentence, logged
                    logger.exception("Decoding an upload failed")
                    decoded[key] = ("this file could not be opened on the server. Try a "
                                    "smaller or more common image file.")
    services.store.set_session_bytes(session_id(), sum(
        value[0].nbytes for value in decoded.values() if isinstance(value, tuple)))
    return decoded


@st.cache_data(show_spinner=False)
def sample_image(config_path: str, name: str, _services: Services) -> tuple[np.ndarray, tuple]:
    image = samples_for(_services.config)[name]()
    return fit_within(image, WORK_MAX_SIDE)[0], image.shape[:2]


@st.cache_data(show_spinner=False)
def sample_thumbnail(config_path: str, name: str, _services: Services) -> np.ndarray:
    return fit_within(sample_image(config_path, name, _services)[0], THUMBNAIL_SIDE)[0]


def load_picture(picture: Picture, services: Services) -> tuple[np.ndarray, tuple]:
    """(working image, original (h, w)): a sample's, or an upload this session decoded."""
    if picture.file is None:
        return sample_image(services.config_path, picture.sample, services)
    value = st.session_state.get(KEY_DECODED_UPLOADS, {}).get(picture.key)
    if not isinstance(value, tuple):        # not decoded in this session (or unreadable)
        value = decode_upload(picture.file.getvalue(), services.limits.image_pixels)
    return value


def file_digest(file) -> str:
    """SHA-256 of an upload, computed once per upload and kept in the session."""
    digests = st.session_state.setdefault(KEY_UPLOAD_DIGESTS, {})
    if file.file_id not in digests:
        digests[file.file_id] = hashlib.sha256(file.getvalue()).hexdigest()
    return digests[file.file_id]


def _pick_sample(name: str, title: str) -> None:
    st.session_state[KEY_SAMPLE] = name
    st.session_state[KEY_PICKED] = f"Sample: {title}"


def input_area(services: Services) -> list[Picture]:
    """Uploader, camera and sample row; returns every readable picture, newest last."""
    samples = samples_for(services.config)
    upload_col, sample_col = st.columns([1, 2], gap="large")
    with upload_col:
        files = st.file_uploader(
            "Upload photos", type=SUPPORTED_EXTENSIONS, accept_multiple_files=True,
            key="uploads",
            help=f"JPEG, PNG, WebP, BMP, TIFF or GIF (first frame), up to "
                 f"{upload_limit_mb()} MB and {services.limits.image_pixels / 1e6:.0f} "
                 "megapixels each. Your photos stay in your session only.")
        shot = None
        if st.toggle("Take a photo with my camera", key="use_camera"):
            shot = st.camera_input("Camera", key="camera", label_visibility="collapsed")
    with sample_col, st.container(key="samples"):
        st.markdown("**Or try a sample photo**")
        for col, (name, sample) in zip(st.columns(max(len(samples), 1)), samples.items()):
            with col:
                # Decorative: the button below names the photo, its tooltip says what it shows.
                st.image(sample_thumbnail(services.config_path, name, services), width="stretch",
                         alt=alt_text.DECORATIVE)
                st.button(sample.title, key=f"sample-{name}", on_click=_pick_sample,
                          args=(name, sample.title), width="stretch",
                          help=f"Shows: {sample.shows}. {sample.credit}" if sample.shows
                          else sample.credit)
        credits = {s.credit for s in samples.values()}
        st.caption("Sample photos from scikit-image's bundled data (public domain / CC0)."
                   if len(credits) > 1 else next(iter(credits), ""))

    pictures: list[Picture] = []
    problems: list[str] = []
    names: set[str] = set()
    limit = upload_limit_mb()
    megabyte = 1 << 20           # Streamlit's upload limit counts MiB
    uploads = [(f, f.name, f.file_id) for f in files or []]
    cap = services.limits.uploads
    if len(uploads) > cap:           # said at once, before the first ones are opened
        st.warning(f"This demo opens {cap} photos per visitor: the first {cap} of your "
                   f"{len(uploads)} are ready, the other {len(uploads) - cap} were not "
                   "opened. Remove some to add others.",
                   icon=":material/production_quantity_limits:")
        uploads = uploads[:cap]
    if shot is not None:
        uploads.append((shot, "Camera photo", f"camera:{shot.file_id}"))
    too_big = {key for file, _, key in uploads if file.size > limit * megabyte}
    decoded = decode_new_uploads([u for u in uploads if u[2] not in too_big], services)
    for file, name, key in uploads:
        if key in too_big:
            problems.append(f"**{name}** is {file.size / megabyte:.1f} MB, more than the "
                            f"{limit} MB limit; save a smaller copy and upload that.")
            continue
        if isinstance(decoded.get(key), str):
            problems.append(f"**{name}**: {decoded[key]}")
            continue
        picture = Picture(_unique_name(name, names), key, file_digest(file), file)
        names.add(picture.name)
        pictures.append(picture)
    sample = st.session_state.get(KEY_SAMPLE)
    if sample in samples:
        pictures.append(Picture(f"Sample: {samples[sample].title}", f"sample:{sample}",
                                sample_digest(services.config_path, sample), sample=sample))
    for problem in problems:
        st.error(problem, icon=":material/broken_image:")
    return pictures


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate


def _sync_pick() -> None:
    st.session_state[KEY_PICKED] = st.session_state[KEY_PICKER]


def choose(pictures: list[Picture]) -> Picture:
    """The picture to inspect: the visitor's pick, else the newest arrival."""
    seen = st.session_state.setdefault(KEY_SEEN_PICTURES, set())
    new = [p for p in pictures if p.key not in seen and not p.key.startswith("sample:")]
    seen.update(p.key for p in pictures)
    if new:
        st.session_state[KEY_PICKED] = new[-1].name
    names = [p.name for p in pictures]
    picked = st.session_state.get(KEY_PICKED)
    if picked not in names:
        picked = names[-1]
    st.session_state[KEY_PICKED] = picked
    if len(pictures) > 1:
        st.session_state[KEY_PICKER] = picked
        st.selectbox("Image to inspect", names, key=KEY_PICKER, on_change=_sync_pick)
    return pictures[names.index(picked)]
