"""The main page's inputs: uploads, camera, sample photos, and which picture is shown."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import streamlit as st

from mrcnn.inputs.samples import samples_for
from mrcnn.inputs.uploads import SUPPORTED_EXTENSIONS, ImageDecodeError, decode_image, fit_within
from studio.shared import Services

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


@st.cache_data(max_entries=24, ttl=3600, show_spinner=False)
def decoded_upload(digest: str, max_pixels: int, _data: bytes) -> tuple[np.ndarray, tuple]:
    """(working image, original (h, w)) of uploaded bytes; raises ImageDecodeError."""
    image = decode_image(_data, max_pixels=max_pixels)
    return fit_within(image, WORK_MAX_SIDE)[0], image.shape[:2]


@st.cache_data(show_spinner=False)
def sample_image(config_path: str, name: str, _services: Services) -> tuple[np.ndarray, tuple]:
    image = samples_for(_services.config)[name]()
    return fit_within(image, WORK_MAX_SIDE)[0], image.shape[:2]


@st.cache_data(show_spinner=False)
def sample_thumbnail(config_path: str, name: str, _services: Services) -> np.ndarray:
    return fit_within(sample_image(config_path, name, _services)[0], THUMBNAIL_SIDE)[0]


def load_picture(picture: Picture, services: Services) -> tuple[np.ndarray, tuple]:
    if picture.file is None:
        return sample_image(services.config_path, picture.sample, services)
    return decoded_upload(picture.digest, services.limits.image_pixels, picture.file.getvalue())


def file_digest(file) -> str:
    """SHA-256 of an upload, computed once per upload and kept in the session."""
    digests = st.session_state.setdefault("digests", {})
    if file.file_id not in digests:
        digests[file.file_id] = hashlib.sha256(file.getvalue()).hexdigest()
    return digests[file.file_id]


def _pick_sample(name: str, title: str) -> None:
    st.session_state["sample"] = name
    st.session_state["picked"] = f"Sample: {title}"


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
                st.image(sample_thumbnail(services.config_path, name, services), width="stretch")
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
    if shot is not None:
        uploads.append((shot, "Camera photo", f"camera:{shot.file_id}"))
    for file, name, key in uploads:
        if file.size > limit * megabyte:
            problems.append(f"**{name}** is {file.size / megabyte:.1f} MB, more than the "
                            f"{limit} MB limit; save a smaller copy and upload that.")
            continue
        picture = Picture(_unique_name(name, names), key, file_digest(file), file)
        try:
            load_picture(picture, services)
        except ImageDecodeError as exc:
            problems.append(f"**{name}**: {exc}")
            continue
        names.add(picture.name)
        pictures.append(picture)
    sample = st.session_state.get("sample")
    if sample in samples:
        pictures.append(Picture(f"Sample: {samples[sample].title}", f"sample:{sample}",
                                f"sample:{services.config_path}:{sample}", sample=sample))
    for problem in problems:
        st.error(problem, icon=":material/broken_image:")
    return pictures


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate


def _sync_pick() -> None:
    st.session_state["picked"] = st.session_state["picker"]


def choose(pictures: list[Picture]) -> Picture:
    """The picture to inspect: the visitor's pick, else the newest arrival."""
    seen = st.session_state.setdefault("seen", set())
    new = [p for p in pictures if p.key not in seen and not p.key.startswith("sample:")]
    seen.update(p.key for p in pictures)
    if new:
        st.session_state["picked"] = new[-1].name
    names = [p.name for p in pictures]
    picked = st.session_state.get("picked")
    if picked not in names:
        picked = names[-1]
    st.session_state["picked"] = picked
    if len(pictures) > 1:
        st.session_state["picker"] = picked
        st.selectbox("Image to inspect", names, key="picker", on_change=_sync_pick)
    return pictures[names.index(picked)]
