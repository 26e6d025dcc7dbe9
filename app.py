"""Mask R-CNN Studio: upload a photo, see every object segmented, take the pieces away.

Streamlit only: widgets, layout, caching and session state. The network, the
image maths and the file formats live in ``mrcnn/``.

How the page stays fast and exact:

- The model is built once per server process (``st.cache_resource``) and
  shared by every visitor; ``mrcnn.backend`` serialises the calls with a lock,
  so visitors queue instead of failing.
- The network runs once per (image, advanced settings) at confidence
  ``DETECT_THRESHOLD``, and that run is cached (keyed by the image's SHA-256,
  computed once per upload, the settings and the model). The confidence slider
  and the class filter only filter that run with ``kept_indices`` (what ``filter_detections`` keeps): the
  same result the network gives at the slider's value (``tests/test_app.py``
  proves it), without running it again. ``benchmarks/app_render.py`` times
  the re-render.
- Each object keeps its colour (``palette`` indexed by its place in the run)
  in the overlay, the table and the gallery, whatever the filters.
- What a visitor chose lives in their own ``st.session_state``:
  ``"selected_image"`` (RGB ``uint8`` array, the size the detections refer to)
  and ``"selected_image_name"`` are read by the teaching pages in ``pages/``.

Run it with ``streamlit run app.py``; set ``MRCNN_WEIGHTS`` to use a weights
file other than ``weights/mask_rcnn_coco.h5`` and ``MRCNN_SERVE_URL`` to use
the Ray Serve deployment instead of a model in this process.
"""
from __future__ import annotations

import functools
import gc
import hashlib
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from mrcnn.backend import DetectionRun, make_backend, serve_url
from mrcnn.classes import COCO_CLASS_NAMES
from mrcnn.config import CocoConfig
from mrcnn.export import coco_results, cutouts_zip, write_detections
from mrcnn.imaging import SUPPORTED_EXTENSIONS, ImageDecodeError, decode_image, fit_within
from mrcnn.render import cutout, draw_detections, label_text, palette, to_png_bytes
from mrcnn.results import (PER_DETECTION_KEYS, kept_indices, mask_areas, num_detections,
                           take_masks)
from mrcnn.samples import SAMPLES
from mrcnn.weights import (WEIGHTS_FILENAME, WEIGHTS_SIZE, WEIGHTS_URL, WeightsError,
                           WeightsFileError, check_weights_file, default_weights_path,
                           download_weights)

#: The network runs at this confidence; the slider filters above it.
DETECT_THRESHOLD = 0.1
DEFAULT_THRESHOLD = 0.7
#: Longest side of the image the page works on (shown, segmented, cut out).
#: The network itself never sees more than IMAGE_MAX_DIM (at most 1024).
WORK_MAX_SIDE = 1024
IMAGE_SIZES = {
    512: "512 px: fastest, misses small objects",
    640: "640 px: fast",
    768: "768 px: balanced",
    1024: "1024 px: most accurate, slowest (default)",
}
GALLERY_LIMIT = 40
GALLERY_COLUMNS = 6
THUMBNAIL_SIDE = 240
CLASS_NAMES = list(COCO_CLASS_NAMES)

PAGE_STYLE = """<style>
.st-key-samples [data-testid='stImage'] img {aspect-ratio: 1 / 1; object-fit: cover;
  border-radius: 8px;}
.st-key-samples button {padding-left: 0.25rem; padding-right: 0.25rem;}
.st-key-samples button p {font-size: 0.85rem;}
.st-key-run_details [data-testid='stMetricValue'] {font-size: 1.6rem;}
.st-key-gallery [data-testid='stImage'] img {border-radius: 6px; width: 100% !important;
  height: 150px; object-fit: scale-down;
  background: repeating-conic-gradient(#e8ebf0 0 25%, #ffffff 0 50%) 0 0 / 16px 16px;}
</style>"""

KEY_IMAGE = "selected_image"
KEY_IMAGE_NAME = "selected_image_name"

st.set_page_config(page_title="Mask R-CNN Studio", page_icon="🎭", layout="wide")


# --------------------------------------------------------------- settings

@dataclass(frozen=True)
class RunSettings:
    """The settings that change what the network computes (each change reruns it)."""
    image_max_dim: int
    nms_threshold: float
    max_instances: int

    def overrides(self) -> dict:
        return {"DETECTION_MIN_CONFIDENCE": DETECT_THRESHOLD,
                "IMAGE_MAX_DIM": self.image_max_dim,
                "DETECTION_NMS_THRESHOLD": self.nms_threshold,
                "DETECTION_MAX_INSTANCES": self.max_instances}


@dataclass(frozen=True)
class ViewSettings:
    """What is shown of a run; changing these never reruns the network."""
    min_score: float
    class_ids: tuple[int, ...] | None      # None: every class
    mask_alpha: float
    show_masks: bool
    show_boxes: bool
    show_labels: bool
    show_outlines: bool


@dataclass(frozen=True)
class Picture:
    """One image the visitor can inspect: an upload, the camera photo or a sample."""
    name: str
    key: str                   # stable per source: upload file id, "camera:<id>", "sample:<name>"
    digest: str                # SHA-256 of the bytes, or "sample:<name>"
    file: object = None        # the UploadedFile; None for samples


def sidebar_settings() -> tuple[RunSettings, ViewSettings]:
    with st.sidebar:
        st.header("Display")
        min_score = st.slider(
            "Confidence threshold", min_value=DETECT_THRESHOLD, max_value=1.0,
            value=DEFAULT_THRESHOLD, step=0.01, key="min_score",
            help=f"Hide objects the model is less sure of. Instant: the network ran once "
                 f"at {DETECT_THRESHOLD:.2f} and this only filters its answer.")
        classes = st.multiselect(
            "Classes", CLASS_NAMES[1:], key="classes", placeholder="All classes",
            help="Show only these COCO classes (leave empty for all).")
        mask_alpha = st.slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key="mask_alpha")
        left, right = st.columns(2)
        show_masks = left.toggle("Masks", True, key="show_masks")
        show_boxes = right.toggle("Boxes", True, key="show_boxes")
        show_labels = left.toggle("Labels", True, key="show_labels")
        show_outlines = right.toggle("Outlines", True, key="show_outlines")

        with st.expander("Advanced: each change runs the network again"):
            image_max_dim = st.selectbox(
                "Network input size (IMAGE_MAX_DIM)", list(IMAGE_SIZES), index=3,
                format_func=IMAGE_SIZES.get, key="image_max_dim",
                help="The photo is scaled to fit this square before the network sees it. "
                     "Smaller is faster but less accurate. Changing it runs the network again.")
            nms_threshold = st.slider(
                "Overlap allowed between objects (detection NMS threshold)", 0.05, 0.95,
                float(CocoConfig.DETECTION_NMS_THRESHOLD), 0.05, key="nms_threshold",
                help="Two boxes of the same class overlapping more than this count as one "
                     "object. Higher keeps more overlapping objects. Changing it runs the "
                     "network again.")
            max_instances = st.slider(
                "Most objects per image (max instances)", 1,
                int(CocoConfig.DETECTION_MAX_INSTANCES),
                int(CocoConfig.DETECTION_MAX_INSTANCES), key="max_instances",
                help="The network keeps at most this many objects, best first. Changing "
                     "it runs the network again.")

    class_ids = tuple(sorted(CLASS_NAMES.index(name) for name in classes)) or None
    return (RunSettings(int(image_max_dim), float(nms_threshold), int(max_instances)),
            ViewSettings(float(min_score), class_ids, float(mask_alpha), show_masks,
                         show_boxes, show_labels, show_outlines))


# ------------------------------------------------------------------ model

@st.cache_resource(show_spinner="Loading Mask R-CNN (ResNet-101 FPN, COCO). This happens "
                                "once per server and takes about half a minute…")
def shared_backend(weights_path: str, url: str | None, token: str | None = None):
    """One model (or one service client) for every visitor of this server process."""
    def load():
        from mrcnn.model import shared_model   # the same object the other pages use
        return shared_model(weights_path, CocoConfig())
    backend = make_backend(model_loader=load, url=url, token=token)
    # After every run Streamlit calls keras.backend.clear_session(), which ends in
    # a full gc.collect(): walking TensorFlow's and the model's millions of
    # long-lived objects took ~0.3 s per slider move. Freezing them once moves
    # them out of the collector's sight (they live as long as the process).
    gc.freeze()
    return backend


def weights_panel(path: Path, problem: str) -> None:
    """Say plainly that the weights are missing or unusable, and how to fix it."""
    st.warning(
        "**Mask R-CNN needs its pre-trained weights, and they are not usable on this "
        f"server yet.**\n\n{problem}", icon=":material/warning:")
    st.markdown(f"The file is **{WEIGHTS_FILENAME}** ({WEIGHTS_SIZE / 1e6:.0f} MB), the "
                "published COCO weights of Mask R-CNN. This app will look for it at:")
    st.code(str(path), language=None)
    if st.button(f"Download the weights ({WEIGHTS_SIZE / 1e6:.0f} MB)", type="primary",
                 icon=":material/download:", key="download_weights"):
        bar = st.progress(0.0, text="Connecting…")
        shown = {"percent": -1}

        def progress(done: int, total: int | None) -> None:
            percent = int(100 * done / total) if total else 0
            if percent != shown["percent"] or not total:
                shown["percent"] = percent
                size = f"{done / 1e6:.0f} MB" + (f" of {total / 1e6:.0f} MB" if total else "")
                bar.progress(min(percent, 100) / 100, text=f"Downloading… {size}")

        try:
            download_weights(path, progress=progress)
        except WeightsError as exc:
            bar.empty()
            st.error(str(exc), icon=":material/cloud_off:")
        else:
            bar.progress(1.0, text="Downloaded and verified.")
            st.rerun()
    with st.expander("Or place the file by hand", expanded=True):
        st.markdown(
            f"1. Download [{WEIGHTS_FILENAME}]({WEIGHTS_URL}) ({WEIGHTS_SIZE:,} bytes) on a "
            "machine that can reach GitHub.\n"
            f"2. Copy it to `{path}` on this server.\n"
            "3. Or keep it anywhere and set the environment variable `MRCNN_WEIGHTS` to the "
            "file's full path, then restart the app.\n"
            "4. Check it with `python -m mrcnn.weights --check`, then reload this page.")


def service_settings() -> tuple[str | None, str | None]:
    """(URL, token) of the Ray Serve deployment: environment first, then Streamlit secrets."""
    try:
        secrets = {key: st.secrets[key] for key in ("MRCNN_SERVE_URL", "MRCNN_SERVE_TOKEN")
                   if key in st.secrets}
    except FileNotFoundError:      # no secrets.toml: the usual case outside the Cloud
        secrets = {}
    url = serve_url() or secrets.get("MRCNN_SERVE_URL") or None
    token = os.environ.get("MRCNN_SERVE_TOKEN") or secrets.get("MRCNN_SERVE_TOKEN") or None
    return url, token


@st.cache_data(ttl=30, show_spinner=False)
def service_status(url: str, _backend) -> dict:
    """The service's replicas and device (asked at most every 30 s, not per rerun)."""
    return _backend.describe()


def ready_backend():
    """The shared backend, or None after explaining why there is none."""
    url, token = service_settings()
    path = default_weights_path()
    if not url:
        try:
            check_weights_file(path)
        except WeightsFileError as exc:
            weights_panel(path, str(exc))
            return None
    try:
        return shared_backend(str(path), url, token)
    except Exception as exc:  # noqa: BLE001 - a page must not die on a bad file or service
        st.error(f"The model could not be started: {exc}. Replace the weights file "
                 "(or check the service) and reload the page.", icon=":material/error:")
        return None


# ----------------------------------------------------------------- inputs

def upload_limit_mb() -> int:
    return int(st.get_option("server.maxUploadSize"))


@st.cache_data(max_entries=24, ttl=3600, show_spinner=False)
def decoded_upload(digest: str, _data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
    """(working image, original (h, w)) of uploaded bytes; raises ImageDecodeError."""
    image = decode_image(_data)
    return fit_within(image, WORK_MAX_SIDE)[0], image.shape[:2]


@st.cache_data(show_spinner=False)
def sample_image(name: str) -> tuple[np.ndarray, tuple[int, int]]:
    image = SAMPLES[name]()
    return fit_within(image, WORK_MAX_SIDE)[0], image.shape[:2]


@st.cache_data(show_spinner=False)
def sample_thumbnail(name: str) -> np.ndarray:
    return fit_within(sample_image(name)[0], THUMBNAIL_SIDE)[0]


def load_picture(picture: Picture) -> tuple[np.ndarray, tuple[int, int]]:
    if picture.file is None:
        return sample_image(picture.digest.removeprefix("sample:"))
    return decoded_upload(picture.digest, picture.file.getvalue())


def file_digest(file) -> str:
    """SHA-256 of an upload, computed once per upload and kept in the session."""
    digests = st.session_state.setdefault("digests", {})
    if file.file_id not in digests:
        digests[file.file_id] = hashlib.sha256(file.getvalue()).hexdigest()
    return digests[file.file_id]


def pick_sample(name: str) -> None:
    st.session_state["sample"] = name
    st.session_state["picked"] = sample_label(name)


def sample_label(name: str) -> str:
    return f"Sample: {SAMPLES[name].title}"


def sync_pick() -> None:
    st.session_state["picked"] = st.session_state["picker"]


def input_area() -> list[Picture]:
    """Uploader, camera and sample row; returns every readable picture, newest last."""
    upload_col, sample_col = st.columns([1, 2], gap="large")
    with upload_col:
        files = st.file_uploader(
            "Upload photos", type=SUPPORTED_EXTENSIONS, accept_multiple_files=True,
            key="uploads",
            help=f"JPEG, PNG, WebP, BMP, TIFF or GIF (first frame), up to "
                 f"{upload_limit_mb()} MB each. Your photos stay in your session only.")
        shot = None
        if st.toggle("Take a photo with my camera", key="use_camera"):
            shot = st.camera_input("Camera", key="camera", label_visibility="collapsed")
    with sample_col, st.container(key="samples"):
        st.markdown("**Or try a sample photo**")
        for col, (name, sample) in zip(st.columns(len(SAMPLES)), SAMPLES.items()):
            with col:
                st.image(sample_thumbnail(name), width="stretch")
                st.button(sample.title, key=f"sample-{name}", on_click=pick_sample,
                          args=(name,), width="stretch",
                          help=f"Shows: {sample.shows}. {sample.credit}")
        st.caption("Sample photos from scikit-image's bundled data (public domain / CC0).")

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
        picture = Picture(unique_name(name, names), key, file_digest(file), file)
        try:
            load_picture(picture)
        except ImageDecodeError as exc:
            problems.append(f"**{name}**: {exc}")
            continue
        names.add(picture.name)
        pictures.append(picture)
    sample = st.session_state.get("sample")
    if sample in SAMPLES:
        pictures.append(Picture(sample_label(sample), f"sample:{sample}", f"sample:{sample}"))
    for problem in problems:
        st.error(problem, icon=":material/broken_image:")
    return pictures


def unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate


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
        st.selectbox("Image to inspect", names, key="picker", on_change=sync_pick)
    return pictures[names.index(picked)]


# -------------------------------------------------------------- detection

@dataclass
class PreparedRun:
    """One network run, kept for the many re-renders that follow it.

    The masks are stored one contiguous plane per object (``planes``, N x H x W)
    and ``run.result["masks"]`` is an (H, W, N) view of them: taking a subset
    of objects or one object's mask is then a block copy or a view, instead of
    a gather along the last axis of an (H, W, N) stack (40x slower at 1024 px).
    ``cutouts`` memoises each object's PNG cut-out the first time it is shown.
    Shared by every session showing the same image: never modified but for
    ``cutouts``.
    """
    run: DetectionRun
    planes: np.ndarray
    areas: np.ndarray
    cutouts: dict = field(default_factory=dict)

    def cutout_png(self, image, index: int) -> bytes:
        if index not in self.cutouts:
            self.cutouts[index] = to_png_bytes(cutout(image, self.planes[index]))
        return self.cutouts[index]


@st.cache_resource(max_entries=4, ttl=1800, show_spinner=False)
def prepared_run(digest: str, settings: tuple, model_key: str, _image, _backend) -> PreparedRun:
    """The network's answer for one image at DETECT_THRESHOLD.

    Keyed by the image's digest, the run settings and the model (the image and
    the backend are not hashed). ``cache_resource``, not ``cache_data``: the
    masks of one 1024-px run are up to ~100 MB, which ``cache_data`` would
    unpickle on every slider move.
    """
    run = _backend.detect(_image, **RunSettings(*settings).overrides())
    planes = np.ascontiguousarray(np.moveaxis(run.result["masks"], -1, 0))
    run.result["masks"] = np.moveaxis(planes, 0, -1)
    return PreparedRun(run, planes, mask_areas(run.result))


def detect(picture: Picture, image, backend, settings: RunSettings, model_key: str) -> PreparedRun:
    """Cached detections for one picture, with a spinner while the network runs."""
    with st.spinner(f"Segmenting {picture.name}… Visitors share one model, so your photo "
                    "may wait for another one first.", show_time=True):
        return prepared_run(picture.digest, (settings.image_max_dim, settings.nms_threshold,
                                             settings.max_instances), model_key, image, backend)


def shown_detections(prepared: PreparedRun, view: ViewSettings) -> tuple[dict, np.ndarray]:
    """(filtered result, indices of its objects in the run) for the view's filters."""
    result = prepared.run.result
    kept = kept_indices(result, view.min_score, view.class_ids)
    shown = {key: result[key][kept] for key in PER_DETECTION_KEYS}
    shown["masks"] = take_masks(result["masks"], kept)
    return shown, kept


def object_colours(prepared: PreparedRun, kept: np.ndarray) -> np.ndarray:
    """Each object's colour: its place in the run, so no filter ever recolours it."""
    return palette(num_detections(prepared.run.result))[kept]


# ---------------------------------------------------------------- results

def hex_colour(colour) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in colour))


def file_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "_", Path(name).stem).strip("_").lower()
    return stem or "image"


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def run_details(run: DetectionRun, image, original_size) -> None:
    t = run.timings
    masks = (t.get("masks") or 0.0) + (t.get("unmold") or 0.0) if "masks" in t else None
    cells = st.container(key="run_details").columns(5)
    cells[0].metric("Preparation", seconds(t.get("mold")),
                    help="Resizing and normalising the photo.")
    cells[1].metric("Network", seconds(t.get("network")),
                    help="Backbone, region proposals, box and class heads.")
    cells[2].metric("Masks", seconds(masks), help="Mask head, and pasting the masks at full size.")
    cells[3].metric("Total", seconds(t.get("total")))
    if run.input_shape:
        cells[4].metric("Network input (px)", "{} × {}".format(*run.input_shape[::-1]),
                        help="The square the photo was scaled and padded to (IMAGE_MAX_DIM).")
    height, width = image.shape[:2]
    size = f"{width} × {height} px"
    if tuple(original_size) != (height, width):
        size += f" (scaled from {original_size[1]} × {original_size[0]})"
    st.caption(f"Device: **{run.device or 'unknown'}** · Backend: **{run.backend or 'unknown'}** · "
               f"Image: {size} · Times are from the run that made these results: the "
               "display settings reuse it.")


def objects_table(shown: dict, areas: np.ndarray, colours: np.ndarray, image_shape) -> None:
    frame = pd.DataFrame({
        "#": np.arange(1, len(areas) + 1),
        "Colour": [""] * len(areas),
        "Class": [CLASS_NAMES[int(c)] for c in shown["class_ids"]],
        "Score": shown["scores"].astype(float),
        "Box (x1, y1, x2, y2)": [f"{x1}, {y1}, {x2}, {y2}" for y1, x1, y2, x2 in shown["rois"]],
        "Mask area (px)": areas,
        "Mask area (%)": 100.0 * areas / float(image_shape[0] * image_shape[1]),
    })
    swatches = [f"background-color: {hex_colour(c)}" for c in colours]
    styled = frame.style.apply(lambda _: swatches, subset=["Colour"])
    st.dataframe(styled, hide_index=True, width="stretch", key="objects_table",
                 column_config={
                     "#": st.column_config.NumberColumn(width="small"),
                     "Colour": st.column_config.TextColumn(width="small"),
                     "Score": st.column_config.NumberColumn(format="%.3f"),
                     "Mask area (px)": st.column_config.NumberColumn(format="%d"),
                     "Mask area (%)": st.column_config.ProgressColumn(
                         format="%.1f%%", min_value=0.0, max_value=100.0),
                 })


def gallery(image, prepared: PreparedRun, shown: dict, kept: np.ndarray,
            colours: np.ndarray, stem: str) -> None:
    """Cut-outs, best score first, each with its colour, caption and PNG download."""
    scores = shown["scores"]
    order = np.argsort(-scores.astype(np.float64), kind="stable")[:GALLERY_LIMIT]
    with st.container(key="gallery"):
        for start in range(0, len(order), GALLERY_COLUMNS):
            for col, i in zip(st.columns(GALLERY_COLUMNS), order[start:start + GALLERY_COLUMNS]):
                name = CLASS_NAMES[int(shown["class_ids"][i])]
                png = prepared.cutout_png(image, int(kept[i]))
                with col:
                    st.html(f"<div style='height:6px;border-radius:3px;"
                            f"background:{hex_colour(colours[i])}'></div>")
                    st.image(png, caption=label_text(name, scores[i]))
                    st.download_button(
                        "PNG", data=png, mime="image/png", on_click="ignore",
                        file_name=f"{stem}_{i + 1:02d}_{file_stem(name)}_{scores[i]:.2f}.png",
                        key=f"cutout-{i}", icon=":material/download:", width="stretch")
    if len(scores) > GALLERY_LIMIT:
        st.caption(f"Showing the {GALLERY_LIMIT} best of {len(scores)} objects; the ZIP has "
                   "all of them.")


def objects_zip(image, prepared: PreparedRun, view: ViewSettings) -> bytes:
    return cutouts_zip(image, shown_detections(prepared, view)[0], CLASS_NAMES)


def coco_json(prepared: PreparedRun, view: ViewSettings) -> str:
    return json.dumps(coco_results(shown_detections(prepared, view)[0], image_id=0))


def show_results(picture: Picture, image, original_size, prepared: PreparedRun,
                 view: ViewSettings) -> None:
    shown, kept = shown_detections(prepared, view)
    count = len(kept)
    colours = object_colours(prepared, kept)
    annotated = draw_detections(
        image, shown, CLASS_NAMES, colors=colours, mask_alpha=view.mask_alpha,
        show_masks=view.show_masks, show_boxes=view.show_boxes,
        show_labels=view.show_labels, show_outlines=view.show_outlines)
    stem = file_stem(picture.name)

    run_details(prepared.run, image, original_size)
    left, right = st.columns(2, gap="medium")
    left.image(image, caption=f"Original: {picture.name}", width="stretch")
    right.image(annotated, width="stretch",
                caption=f"{count} object{'s' * (count != 1)} at confidence ≥ {view.min_score:.2f}")

    # Downloads build their files only when clicked (and never rerun the page).
    with st.container(horizontal=True, key="downloads"):
        st.download_button("Annotated image (PNG)", data=functools.partial(to_png_bytes, annotated),
                           file_name=f"{stem}_annotated.png", mime="image/png",
                           on_click="ignore", key="download_annotated", icon=":material/image:")
        st.download_button("Cut-outs and masks (ZIP)",
                           data=functools.partial(objects_zip, image, prepared, view),
                           file_name=f"{stem}_objects.zip", mime="application/zip",
                           on_click="ignore", key="download_zip", disabled=count == 0,
                           icon=":material/folder_zip:")
        st.download_button("COCO results (JSON)", data=functools.partial(coco_json, prepared, view),
                           file_name=f"{stem}_coco_results.json", mime="application/json",
                           on_click="ignore", key="download_json", icon=":material/data_object:")

    if count == 0:
        st.info(f"No objects at confidence ≥ {view.min_score:.2f}"
                + (" in the chosen classes" if view.class_ids else "")
                + ". Lower the threshold in the sidebar to see less certain objects.",
                icon=":material/search_off:")
        return
    st.subheader(f"Objects ({count})")
    objects_table(shown, prepared.areas[kept], colours, image.shape)
    st.subheader(f"Cut-outs ({count})")
    gallery(image, prepared, shown, kept, colours, stem)


# ---------------------------------------------------------------- run all

def add_image_folder(bundle: zipfile.ZipFile, folder: str, image, shown: dict,
                     colours: np.ndarray) -> None:
    """One image's annotated PNG, cut-outs, masks and COCO results under ``folder/``."""
    annotated = draw_detections(image, shown, CLASS_NAMES, colors=colours)
    bundle.writestr(f"{folder}/annotated.png", to_png_bytes(annotated),
                    compress_type=zipfile.ZIP_STORED)
    write_detections(bundle, image, shown, CLASS_NAMES, folder=folder)


def run_all(pictures, backend, settings: RunSettings, view: ViewSettings, model_key: str) -> dict:
    """Segment every picture and pack one ZIP as it goes (one run in memory at a time)."""
    bar = st.progress(0.0)
    buffer = io.BytesIO()
    all_results, listing, summary = [], [], []
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for image_id, picture in enumerate(pictures, start=1):
            bar.progress((image_id - 1) / len(pictures),
                         text=f"Segmenting {picture.name} ({image_id} of {len(pictures)})…")
            image, _ = load_picture(picture)
            try:
                prepared = detect(picture, image, backend, settings, model_key)
            except Exception as exc:  # noqa: BLE001 - one bad image must not stop the batch
                summary.append({"Image": picture.name, "Objects": None, "Network (s)": None,
                                "Note": f"failed: {exc}"})
                continue
            shown, kept = shown_detections(prepared, view)
            add_image_folder(bundle, f"{image_id:02d}_{file_stem(picture.name)}", image,
                             shown, object_colours(prepared, kept))
            all_results += coco_results(shown, image_id=image_id)
            listing.append({"id": image_id, "file_name": picture.name,
                            "height": int(image.shape[0]), "width": int(image.shape[1])})
            summary.append({"Image": picture.name, "Objects": len(kept),
                            "Network (s)": round(prepared.run.timings.get("network", 0.0), 2),
                            "Note": ""})
        bundle.writestr("coco_results.json", json.dumps(all_results))
        bundle.writestr("images.json", json.dumps(listing, indent=1))
    bar.empty()
    return {"zip": buffer.getvalue(), "summary": summary}


def run_all_section(pictures, backend, settings: RunSettings, view: ViewSettings,
                    model_key: str) -> None:
    """A button that segments every picture, then the ZIP of everything."""
    signature = (tuple(p.digest for p in pictures), settings, view)
    if st.button(f"Run all {len(pictures)} images", key="run_all", icon=":material/play_arrow:",
                 help="Segment every image with the current settings and pack one ZIP."):
        st.session_state["bundle"] = {"signature": signature,
                                      **run_all(pictures, backend, settings, view, model_key)}
    bundle = st.session_state.get("bundle")
    if bundle and bundle["signature"] == signature:
        st.download_button("Everything (ZIP)", data=bundle["zip"],
                           file_name="mask_rcnn_results.zip", mime="application/zip",
                           on_click="ignore", key="download_all", type="primary",
                           icon=":material/folder_zip:")
        with st.expander(f"What the ZIP holds (confidence ≥ {view.min_score:.2f})"):
            st.dataframe(pd.DataFrame(bundle["summary"]), hide_index=True, width="stretch",
                         column_config={
                             "Network (s)": st.column_config.NumberColumn(format="%.2f")})
            st.caption("One folder per image (annotated image, cut-outs, masks, COCO results), "
                       "and `coco_results.json` for all of them (image ids as in `images.json`).")
    elif bundle:
        st.caption("The images or settings changed since the last run: run all again for a "
                   "fresh ZIP.")


# ------------------------------------------------------------------- page

def main() -> None:
    st.html(PAGE_STYLE)
    st.title("Mask R-CNN Studio")
    st.caption("Upload a photo: Mask R-CNN (ResNet-101 FPN, trained on COCO's 80 classes) "
               "outlines every object it recognises. Tune what you see in the sidebar and "
               "take the pieces away as PNG, ZIP or COCO JSON.")
    settings, view = sidebar_settings()
    backend = ready_backend()
    if backend is None:
        return
    model_key = backend.name if backend.name != "in-process" else str(default_weights_path())
    if backend.name != "in-process":
        service = service_status(backend.name, backend)
        st.caption(f"Served by the Ray Serve deployment at **{backend.name}** · replicas: "
                   f"**{service.get('replicas') or '?'}** · device: **{service.get('device')}**"
                   + (f" · {service['status']}" if service.get("status") else ""))

    pictures = input_area()
    if not pictures:
        st.info("Upload a photo, take one with your camera, or pick a sample to start.",
                icon=":material/add_photo_alternate:")
        return
    st.divider()
    if len(pictures) > 1:
        pick_col, all_col = st.columns([3, 2], gap="large")
        with pick_col:
            picture = choose(pictures)
        with all_col:
            run_all_section(pictures, backend, settings, view, model_key)
    else:
        picture = choose(pictures)
    image, original_size = load_picture(picture)
    st.session_state[KEY_IMAGE] = image
    st.session_state[KEY_IMAGE_NAME] = picture.name
    try:
        prepared = detect(picture, image, backend, settings, model_key)
    except Exception as exc:  # noqa: BLE001 - the page must survive a failed run
        st.error(f"The model could not process {picture.name}: {exc}. Try again, or try "
                 "another image.", icon=":material/error:")
    else:
        show_results(picture, image, original_size, prepared, view)


main()
