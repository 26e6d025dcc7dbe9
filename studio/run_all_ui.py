"""Run all: every picture of the session through the fair queue, one ZIP of everything.

All images join the queue at once (each in its own slot), so the queue can
interleave them with other visitors' photos and batch them when it batches;
the page then collects them in order, and releases every claim it stops
waiting for (a rerun). The ZIP is built from the stored runs only when the
visitor clicks, with the confidence and filters shown at that moment. Image ids
are the same in each folder's ``detections.json``, in ``coco_results.json`` and
in ``images.json``.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import zipfile

import numpy as np
import pandas as pd
import streamlit as st

from mrcnn.classes import category_ids_for
from mrcnn.draw.overlay import draw_detections, to_png_bytes
from mrcnn.export.annotations import write_annotations
from mrcnn.export.bundle import write_detections
from mrcnn.export.coco import coco_results
from studio.exports_ui import annotation_choices
from studio.fair_queue import QueueFull
from studio.inputs_ui import Picture, load_picture
from studio.jobs import detect_job
from studio.public import client_address
from studio.queue_ui import wait_in_line
from studio.results_ui import (
    RunSettings,
    StoredRun,
    ViewSettings,
    file_stem,
    object_colours,
    shown_detections,
)
from studio.services import Services
from studio.session_keys import KEY_RUN_ALL_BUNDLE
from studio.sessions import session_id

logger = logging.getLogger("mrcnn.studio")


def _add_image_folder(bundle: zipfile.ZipFile, folder: str, image, shown: dict,
                      colours: np.ndarray, class_names, image_id: int) -> None:
    """One image's annotated PNG, cut-outs, masks and COCO results under ``folder/``."""
    annotated = draw_detections(image, shown, class_names, colors=colours)
    bundle.writestr(f"{folder}/annotated.png", to_png_bytes(annotated),
                    compress_type=zipfile.ZIP_STORED)
    write_detections(bundle, image, shown, class_names, folder=folder, image_id=image_id)


def bundle_zip(store, session: str, entries: list, view: ViewSettings, class_names,
               formats=(), tolerance: float = 1.0) -> bytes:
    """The ZIP of everything, built when the visitor clicks: ``entries`` are
    ``(image_id, name, image, run key)``; runs the store no longer holds are listed
    in ``not_included.txt``."""
    buffer = io.BytesIO()
    all_results, listing, annotated_items, missing = [], [], [], []
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for image_id, name, image, key in entries:
            run = store.get(session, key, pin=False)
            if run is None:
                missing.append(name)
                continue
            shown, kept = shown_detections(run, view)
            _add_image_folder(bundle, f"{image_id:02d}_{file_stem(name)}", image, shown,
                              object_colours(run, kept), class_names, image_id)
            all_results += coco_results(shown, image_id, category_ids_for(class_names))
            annotated_items.append((image_id, name, image, shown))
            listing.append({"id": image_id, "file_name": name,
                            "height": int(image.shape[0]), "width": int(image.shape[1])})
        if formats and annotated_items:
            write_annotations(bundle, annotated_items, class_names, formats, tolerance)
        bundle.writestr("coco_results.json", json.dumps(all_results))
        bundle.writestr("images.json", json.dumps(listing, indent=1))
        if missing:
            bundle.writestr("not_included.txt", "The server dropped these results from its "
                            "memory before the ZIP was made; press Run all again:\n"
                            + "\n".join(missing) + "\n")
    return buffer.getvalue()


def run_all(services: Services, pictures: list[Picture], settings: RunSettings) -> dict:
    """Segment every picture through the fair queue; returns ``{image_id: note}`` for
    the pictures that could not be run. Every claim left when the page stops
    waiting (a rerun, an error) is released."""
    session = session_id()
    notes: dict[int, str] = {}
    jobs: dict[int, object] = {}
    entries = []
    try:
        for image_id, picture in enumerate(pictures, start=1):
            image, _ = load_picture(picture, services)
            job = detect_job(services, picture.digest, image, settings)
            key = job.key
            entries.append((image_id, picture, key))
            if services.store.get(session, key, pin=False) is not None:
                continue
            try:
                jobs[image_id] = services.queue.submit(
                    session, key, job.kind, job.payload, slot=f"run-all-{image_id}",
                    batch_group=job.batch_group, address=client_address())
            except QueueFull as full:
                st.warning(f"{full} The rest of your images were not run.",
                           icon=":material/production_quantity_limits:")
                for later_id in range(image_id, len(pictures) + 1):
                    notes[later_id] = "not run: the queue was full"
                break
        bar = st.progress(0.0)
        for image_id, picture, key in entries:
            job = jobs.pop(image_id, None)
            if job is None:
                continue
            bar.progress((image_id - 1) / len(entries),
                         text=f"Segmenting {picture.name} ({image_id} of {len(entries)})…")
            try:
                run = StoredRun(wait_in_line(services, job, picture.name))
                services.store.put(session, key, run, pin=False)
            except Exception:  # one bad image must not stop the batch
                logger.exception("Run all: %s failed", picture.name)
                notes[image_id] = "failed: the server's log says why"
        bar.empty()
    finally:
        for job in jobs.values():               # abandoned (rerun or error): let them go
            services.queue.detach(session, job)
    return notes


def _detect_key(services: Services, picture: Picture, settings: RunSettings) -> str:
    return detect_job(services, picture.digest, None, settings).key


def _summary(services: Services, pictures: list[Picture], settings: RunSettings,
             view: ViewSettings, notes: dict) -> list[dict]:
    session = session_id()
    rows = []
    for image_id, picture in enumerate(pictures, start=1):
        run = services.store.get(session, _detect_key(services, picture, settings), pin=False)
        if run is None:
            rows.append({"Image": picture.name, "Objects": None, "Network (s)": None,
                         "Note": notes.get(image_id) or "dropped from memory: run all again"})
            continue
        _, kept = shown_detections(run, view)
        rows.append({"Image": picture.name, "Objects": len(kept),
                     "Network (s)": round(run.report.timings.get("network", 0.0), 2),
                     "Note": ""})
    return rows


def run_all_section(services: Services, pictures: list[Picture], settings: RunSettings,
                    view: ViewSettings) -> None:
    """A button that segments every picture, then the ZIP of everything (built on click)."""
    limit = services.limits.run_all_images
    with st.expander("Add annotations for labelling tools to the ZIP"):
        formats, tolerance = annotation_choices("all_")
    total = len(pictures)
    pictures = pictures[:limit]
    signature = (tuple(p.digest for p in pictures), settings)
    if st.button(f"Run all {len(pictures)} images", key="run_all",
                 icon=":material/play_arrow:",
                 help="Segment every image with the current settings and pack one ZIP."):
        if total > limit:
            st.warning(f"This server runs at most {limit} images per Run all; the first "
                       f"{limit} of your {total} are in the ZIP.",
                       icon=":material/production_quantity_limits:")
        st.session_state[KEY_RUN_ALL_BUNDLE] = {"signature": signature,
                                                "notes": run_all(services, pictures, settings)}
    bundle = st.session_state.get(KEY_RUN_ALL_BUNDLE)
    if bundle and bundle["signature"] == signature:
        session = session_id()
        entries = [(image_id, p.name, load_picture(p, services)[0],
                    _detect_key(services, p, settings))
                   for image_id, p in enumerate(pictures, start=1)]
        build = functools.partial(bundle_zip, services.store, session, entries, view,
                                  list(services.class_names), tuple(formats), tolerance)
        bundle["build"] = build                  # what the button makes (tests read it)
        st.download_button("Everything (ZIP)", data=build,
                           file_name="mask_rcnn_results.zip", mime="application/zip",
                           on_click="ignore", key="download_all", type="primary",
                           icon=":material/folder_zip:")
        with st.expander(f"What the ZIP holds (confidence ≥ {view.min_score:.2f})"):
            st.dataframe(pd.DataFrame(_summary(services, pictures, settings, view,
                                               bundle["notes"])),
                         hide_index=True, width="stretch", column_config={
                             "Network (s)": st.column_config.NumberColumn(format="%.2f")})
            st.caption("One folder per image (annotated image, cut-outs, masks, COCO results), "
                       "and `coco_results.json` for all of them; image ids are the same in "
                       "every `detections.json`, in `coco_results.json` and in `images.json`.")
    elif bundle:
        st.caption("The images or settings changed since the last run: run all again for a "
                   "fresh ZIP.")
