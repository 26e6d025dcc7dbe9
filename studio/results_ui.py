"""The main page's results: run settings, the stored run, overlay, table, gallery, downloads.

The network runs once per (image, run settings) at ``DETECT_THRESHOLD``; the
confidence slider and the class filter only filter that run with
``kept_indices`` (``tests/test_app.py`` proves this equals running the network
at the slider's value). Masks stay compact (``CompactMasks``): the overlay,
table and gallery read each object's box-sized crop, and a cut-out PNG is made
the first time it is shown.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from mrcnn.classes import category_ids_for, class_name
from mrcnn.config import CocoConfig
from mrcnn.draw.overlay import cutout_from_crop, draw_detections, label_text, palette, to_png_bytes
from mrcnn.export.bundle import cutout_filename, cutouts_zip
from mrcnn.export.coco import coco_results
from mrcnn.results import PER_DETECTION_KEYS, PROVENANCE_KEYS, kept_indices
from mrcnn.serve.backends import DetectionReport
from studio import alt_text
from studio.exports_ui import annotation_exports
from studio.inspector_ui import (
    choose,
    clickable_overlay,
    figure_height,
    highlighted,
    inspected,
    object_card,
)
from studio.jobs import DETECT_THRESHOLD, RunSettings, detect_job
from studio.public import public_mode
from studio.queue_ui import run_through_queue
from studio.services import Services
from studio.session_keys import KEY_OBJECTS_TABLE, KEY_TABLE_ROWS
from studio.settings import precision_setting

DEFAULT_THRESHOLD = 0.7
IMAGE_SIZES = {
    512: "512 px: fastest, misses small objects",
    640: "640 px: fast",
    768: "768 px: balanced",
    1024: "1024 px: most accurate, slowest (default)",
}
GALLERY_LIMIT = 40
GALLERY_COLUMNS = 6
INSPECTED_ROW = "background-color: #FFE9A8; color: #0B0D12; font-weight: 600"
#: How to inspect an object from the table, with a mouse or the keyboard alone.
TABLE_HINT = ("Select a row to inspect its object: click its box at the left, or Tab into "
              "the table, move to the row with the arrow keys and press Shift+Space. Each "
              "object's number (#) is the one on its label in the picture and under its "
              "cut-out; the colour only repeats what the number says.")


# --------------------------------------------------------------- settings

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


def sidebar_settings(services: Services) -> tuple[RunSettings, ViewSettings]:
    names = services.class_names
    largest = int(services.config.IMAGE_MAX_DIM)
    sizes = {size: text for size, text in IMAGE_SIZES.items() if size <= largest}
    if largest not in sizes:
        sizes[largest] = f"{largest} px: this model's own size (default)"
    with st.sidebar:
        st.header("Display")
        min_score = st.slider(
            "Confidence threshold", min_value=DETECT_THRESHOLD, max_value=1.0,
            value=DEFAULT_THRESHOLD, step=0.01, key="min_score",
            help=f"Hide objects the model is less sure of. Instant: the network ran once "
                 f"at {DETECT_THRESHOLD:.2f} and this only filters its answer.")
        classes = st.multiselect(
            "Classes", names[1:], key="classes", placeholder="All classes",
            help="Show only these classes (leave empty for all).")
        mask_alpha = st.slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key="mask_alpha")
        left, right = st.columns(2)
        show_masks = left.toggle("Masks", True, key="show_masks")
        show_boxes = right.toggle("Boxes", True, key="show_boxes")
        show_labels = left.toggle("Labels", True, key="show_labels")
        show_outlines = right.toggle("Outlines", True, key="show_outlines")

        with st.expander("Advanced: each change runs the network again"):
            image_max_dim = st.selectbox(
                "Network input size (IMAGE_MAX_DIM)", list(sizes), index=list(sizes).index(
                    largest), format_func=sizes.get, key="image_max_dim",
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
            full_precision = st.toggle(
                "Exact float32 for my runs", False, key="full_precision",
                help="On processors with bfloat16 the server computes large photos in "
                     "bfloat16, about twice as fast, with the same objects found on trained "
                     "models. This runs your photos in float32 instead: matterport's exact "
                     "numbers, slower. The device line under the results says which ran.")

    class_ids = tuple(sorted(names.index(name) for name in classes)) or None
    return (RunSettings(int(image_max_dim), float(nms_threshold), int(max_instances),
                        "fp32" if full_precision else precision_setting()),
            ViewSettings(float(min_score), class_ids, float(mask_alpha), show_masks,
                         show_boxes, show_labels, show_outlines))


# --------------------------------------------------------------- the run

@dataclass
class StoredRun:
    """One network answer, kept for the many re-renders that follow it.

    ``report.result["masks"]`` is a ``CompactMasks``: a few kB per object.
    ``cutouts`` memoises each object's PNG cut-out the first time it is shown;
    ``nbytes`` is what the run store counts against its budget.
    """
    report: DetectionReport
    cutouts: dict = field(default_factory=dict)

    @property
    def result(self) -> dict:
        return self.report.result

    @property
    def areas(self) -> np.ndarray:
        return self.result["masks"].areas

    @property
    def nbytes(self) -> int:
        arrays = sum(np.asarray(self.result[k]).nbytes
                     for k in PER_DETECTION_KEYS + PROVENANCE_KEYS if k in self.result)
        return int(self.result["masks"].nbytes + arrays
                   + sum(len(png) for png in self.cutouts.values()) + 4096)

    def cutout_png(self, image, index: int) -> bytes:
        if index not in self.cutouts:
            masks = self.result["masks"]
            y0, x0 = masks.windows[index][:2]
            self.cutouts[index] = to_png_bytes(cutout_from_crop(image, masks.crop(index),
                                                                (y0, x0)))
        return self.cutouts[index]


def stored_run(services: Services, digest: str, image, settings: RunSettings, *,
               slot: str = "main", what: str = "your photo") -> StoredRun:
    """The run for one picture: from the store, or through the fair queue."""
    return run_through_queue(services, detect_job(services, digest, image, settings),
                             slot=slot, what=what, wrap=lambda report: StoredRun(report))


def shown_detections(run: StoredRun, view: ViewSettings) -> tuple[dict, np.ndarray]:
    """(filtered result, indices of its objects in the run) for the view's filters."""
    result = run.result
    kept = kept_indices(result, view.min_score, view.class_ids)
    shown = {key: result[key][kept] for key in PER_DETECTION_KEYS + PROVENANCE_KEYS
             if key in result}
    shown["masks"] = result["masks"].take(kept)
    return shown, kept


def object_colours(run: StoredRun, kept: np.ndarray) -> np.ndarray:
    """Each object's colour: its place in the run, so no filter ever recolours it."""
    return palette(len(run.result["class_ids"]))[kept]


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


def run_details(report: DetectionReport, image, original_size) -> None:
    t = report.timings
    masks = (t.get("masks") or 0.0) + (t.get("unmold") or 0.0) if "masks" in t else None
    cells = st.container(key="run_details").columns(5)
    cells[0].metric("Preparation", seconds(t.get("mold")),
                    help="Resizing and normalising the photo.")
    cells[1].metric("Network", seconds(t.get("network")),
                    help="Backbone, region proposals, box and class heads.")
    cells[2].metric("Masks", seconds(masks), help="Mask head, and fitting the masks to the boxes.")
    cells[3].metric("Total", seconds(t.get("total")))
    if report.input_shape:
        cells[4].metric("Network input (px)", "{} × {}".format(*report.input_shape[::-1]),
                        help="The square the photo was scaled and padded to (IMAGE_MAX_DIM).")
    height, width = image.shape[:2]
    size = f"{width} × {height} px"
    if tuple(original_size) != (height, width):
        size += f" (scaled from {original_size[1]} × {original_size[0]})"
    batch = t.get("batch_size")
    backend = report.backend or "unknown"
    if public_mode() and "://" in backend:      # a service's address is the server's business
        backend = "Ray Serve deployment"
    st.caption(f"Device: **{report.device or 'unknown'}** · Backend: "
               f"**{backend}** · Image: {size}"
               + (f" · ran in a batch of {int(batch)}" if batch and batch > 1 else "")
               + " · Times are from the run that made these results: the display settings "
                 "reuse it.")


def objects_table(shown: dict, areas: np.ndarray, colours: np.ndarray, image_shape,
                  class_names, kept: np.ndarray, selected: int | None) -> None:
    """One row per shown object; selecting a row inspects that object (its row is shaded)."""
    st.session_state[KEY_TABLE_ROWS] = kept.tolist()
    frame = pd.DataFrame({
        "#": np.arange(1, len(areas) + 1),
        "Colour": [""] * len(areas),
        "Class": [class_name(class_names, c) for c in shown["class_ids"]],
        "Score": shown["scores"].astype(float),
        "Box (x1, y1, x2, y2)": [f"{x1}, {y1}, {x2}, {y2}" for y1, x1, y2, x2 in shown["rois"]],
        "Mask area (px)": areas,
        "Mask area (%)": 100.0 * areas / float(image_shape[0] * image_shape[1]),
    })
    styles = pd.DataFrame("", index=frame.index, columns=frame.columns)
    styles["Colour"] = [f"background-color: {hex_colour(c)}" for c in colours]
    marked = np.asarray(kept) == selected
    if marked.any():
        styles.loc[marked, styles.columns != "Colour"] = INSPECTED_ROW
    styled = frame.style.apply(lambda _: styles, axis=None)     # one call, not one per row
    st.dataframe(styled, hide_index=True, width="stretch", key=KEY_OBJECTS_TABLE, on_select="rerun",
                 selection_mode="single-row",
                 column_config={
                     "#": st.column_config.NumberColumn(width="small"),
                     "Colour": st.column_config.TextColumn(width="small"),
                     "Score": st.column_config.NumberColumn(format="%.3f"),
                     "Mask area (px)": st.column_config.NumberColumn(format="%d"),
                     "Mask area (%)": st.column_config.ProgressColumn(
                         format="%.1f%%", min_value=0.0, max_value=100.0),
                 })


def gallery(image, run: StoredRun, shown: dict, kept: np.ndarray, colours: np.ndarray,
            class_names, selected: int | None, digest: str) -> None:
    """Cut-outs, best score first, each with its colour, caption, PNG download and an
    "Inspect" button; the inspected one is framed."""
    scores = shown["scores"]
    count = len(scores)
    order = np.argsort(-scores.astype(np.float64), kind="stable")[:GALLERY_LIMIT]
    with st.container(key="gallery"):
        for start in range(0, len(order), GALLERY_COLUMNS):
            for col, i in zip(st.columns(GALLERY_COLUMNS), order[start:start + GALLERY_COLUMNS]):
                name = class_name(class_names, shown["class_ids"][i])
                index = int(kept[i])
                png = run.cutout_png(image, index)
                mark = "border:3px solid #1F2430;" if index == selected else ""
                with col:
                    st.html(f"<div aria-hidden='true' style='height:6px;border-radius:3px;"
                            f"{mark}background:{hex_colour(colours[i])}'></div>")
                    st.image(png, caption=label_text(name, scores[i], i + 1)
                             + (" ◀ inspected" if index == selected else ""),
                             alt=alt_text.cutout(name, i + 1, scores[i]))
                    # One flex row, not two columns: a slider move redraws every element.
                    with st.container(horizontal=True, gap="small"):
                        st.download_button(
                            "PNG", data=functools.partial(bytes, png), mime="image/png",
                            on_click="ignore", key=f"cutout-{i}", icon=":material/download:",
                            file_name=cutout_filename(int(i), count, name, scores[i]),
                            width="stretch")
                        st.button("Inspect", key=f"inspect-{index}", on_click=choose,
                                  args=(digest, index), width="stretch",
                                  type="primary" if index == selected else "secondary")
    if count > GALLERY_LIMIT:
        st.caption(f"Showing the {GALLERY_LIMIT} best of {count} objects; the ZIP has "
                   "all of them.")


def _keep_open() -> None:
    """The export panel's state is tracked (so a rerun keeps it open); nothing to do."""


def coco_json(shown: dict, class_names, image_id: int = 0) -> str:
    return json.dumps(coco_results(shown, image_id, category_ids_for(class_names)))


def show_results(picture_name: str, image, original_size, run: StoredRun, view: ViewSettings,
                 class_names, digest: str) -> None:
    shown, kept = shown_detections(run, view)
    count = len(kept)
    colours = object_colours(run, kept)
    selected = inspected(len(run.result["class_ids"]), digest)
    position = int(np.flatnonzero(kept == selected)[0]) if selected in kept else None
    annotated = draw_detections(
        image, shown, class_names, colors=colours, mask_alpha=view.mask_alpha,
        show_masks=view.show_masks, show_boxes=view.show_boxes,
        show_labels=view.show_labels, show_outlines=view.show_outlines,
        numbers=np.arange(1, count + 1))
    stem = file_stem(picture_name)

    st.header("Results", anchor="results")
    run_details(run.report, image, original_size)
    left, right = st.columns(2, gap="medium")
    with left:
        # Drawn as Plotly draws the annotated picture beside it: centred, at its own
        # aspect, in a box as high as that figure, so the two line up in any column.
        box = figure_height(image.shape)
        st.html(f"<style>.st-key-original img {{width: 100% !important; height: {box}px "
                "!important; object-fit: contain}</style>")
        with st.container(key="original"):
            st.image(image, width="stretch",
                     alt=alt_text.photo(f"Original photo, {picture_name}", image.shape))
        st.caption(f"Original: {picture_name}")
    with right:
        clickable_overlay(highlighted(annotated, shown["masks"], position), shown, kept,
                          class_names,
                          f"{count} object{'s' * (count != 1)} at confidence "
                          f"≥ {view.min_score:.2f}",
                          alt_text.annotated_photo(
                              f"Annotated photo, {picture_name}",
                              [class_name(class_names, c) for c in shown["class_ids"]],
                              shown["scores"], threshold=view.min_score))

    # Downloads build their files only when clicked (and never rerun the page).
    with st.container(horizontal=True, key="downloads"):
        st.download_button("Annotated image (PNG)", data=functools.partial(to_png_bytes, annotated),
                           file_name=f"{stem}_annotated.png", mime="image/png",
                           on_click="ignore", key="download_annotated", icon=":material/image:")
        st.download_button("Cut-outs and masks (ZIP)",
                           data=functools.partial(cutouts_zip, image, shown, class_names),
                           file_name=f"{stem}_objects.zip", mime="application/zip",
                           on_click="ignore", key="download_zip", disabled=count == 0,
                           icon=":material/folder_zip:")
        st.download_button("COCO results (JSON)",
                           data=functools.partial(coco_json, shown, class_names),
                           file_name=f"{stem}_coco_results.json", mime="application/json",
                           on_click="ignore", key="download_json", icon=":material/data_object:")
    # A key (and a tracked state) keeps the panel open while its boxes are ticked.
    with st.expander("Export for labelling tools (COCO, YOLO, LabelMe, Pascal VOC, CVAT)",
                     key="export_panel", on_change=_keep_open):
        annotation_exports([(1, picture_name, image, shown)], class_names, "one_", stem)

    if count == 0:
        st.info(f"No objects at confidence ≥ {view.min_score:.2f}"
                + (" in the chosen classes" if view.class_ids else "")
                + ". Lower the threshold in the sidebar to see less certain objects.",
                icon=":material/search_off:")
        return
    if position is not None:
        object_card(image, run, selected, shown, kept, class_names, stem, digest)
    elif selected is not None:
        st.caption("The object you inspected is hidden by the current filters.")
    st.subheader(f"Objects ({count})")
    st.caption(TABLE_HINT)
    objects_table(shown, run.areas[kept], colours, image.shape, class_names, kept, selected)
    st.subheader(f"Cut-outs ({count})")
    gallery(image, run, shown, kept, colours, class_names, selected, digest)
