"""Run all: every picture of the session through the fair queue, one ZIP of everything.

All images join the queue at once (each in its own slot), so the queue can
interleave them with other visitors' photos and batch them when it batches;
the page then collects them in order. Image ids are the same in each folder's
``detections.json``, in ``coco_results.json`` and in ``images.json``.
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import streamlit as st

from mrcnn.classes import category_ids_for
from mrcnn.draw.overlay import draw_detections, to_png_bytes
from mrcnn.export.annotations import write_annotations
from mrcnn.export.bundle import write_detections
from mrcnn.export.coco import coco_results
from studio.inputs_ui import Picture, load_picture
from studio.results_ui import (RunSettings, StoredRun, ViewSettings, file_stem, object_colours,
                               shown_detections)
from studio.exports_ui import annotation_choices
from studio.shared import Services, run_key, session_id, wait_in_line


def _add_image_folder(bundle: zipfile.ZipFile, folder: str, image, shown: dict,
                      colours: np.ndarray, class_names, image_id: int) -> None:
    """One image's annotated PNG, cut-outs, masks and COCO results under ``folder/``."""
    annotated = draw_detections(image, shown, class_names, colors=colours)
    bundle.writestr(f"{folder}/annotated.png", to_png_bytes(annotated),
                    compress_type=zipfile.ZIP_STORED)
    write_detections(bundle, image, shown, class_names, folder=folder, image_id=image_id)


def run_all(services: Services, pictures: list[Picture], settings: RunSettings,
            view: ViewSettings, formats=(), tolerance: float = 1.0) -> dict:
    """Segment every picture and pack one ZIP as it goes; with ``formats``, the
    annotations for labelling tools (``mrcnn.export.annotations``) go in it too."""
    session = session_id()
    overrides = settings.overrides()
    group = tuple(sorted(overrides.items()))
    settings_key = (settings.image_max_dim, settings.nms_threshold, settings.max_instances)

    def submit(key, image, image_id):
        return services.queue.submit(session, key, "detect",
                                     {"image": image, "overrides": overrides},
                                     slot=f"run-all-{image_id}", batch_group=group)

    entries = []
    for image_id, picture in enumerate(pictures, start=1):
        image, _ = load_picture(picture, services)
        key = run_key("detect", picture.digest, settings_key, services)
        entries.append((image_id, picture, image, key, submit(key, image, image_id)
                        if services.store.get(session, key, pin=False) is None else None))

    bar = st.progress(0.0)
    buffer = io.BytesIO()
    all_results, listing, summary, annotated_items = [], [], [], []
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for image_id, picture, image, key, job in entries:
            bar.progress((image_id - 1) / len(entries),
                         text=f"Segmenting {picture.name} ({image_id} of {len(entries)})…")
            try:
                run = services.store.get(session, key, pin=False)
                if run is None:
                    job = job or submit(key, image, image_id)
                    run = StoredRun(wait_in_line(services, job, picture.name))
                    services.store.put(session, key, run, pin=False)
            except Exception as exc:  # noqa: BLE001 - one bad image must not stop the batch
                summary.append({"Image": picture.name, "Objects": None, "Network (s)": None,
                                "Note": f"failed: {exc}"})
                continue
            shown, kept = shown_detections(run, view)
            _add_image_folder(bundle, f"{image_id:02d}_{file_stem(picture.name)}", image,
                              shown, object_colours(run, kept), services.class_names, image_id)
            all_results += coco_results(shown, image_id, category_ids_for(services.class_names))
            annotated_items.append((image_id, picture.name, image, shown))
            listing.append({"id": image_id, "file_name": picture.name,
                            "height": int(image.shape[0]), "width": int(image.shape[1])})
            summary.append({"Image": picture.name, "Objects": len(kept),
                            "Network (s)": round(run.report.timings.get("network", 0.0), 2),
                            "Note": ""})
        if formats and annotated_items:
            write_annotations(bundle, annotated_items, services.class_names, formats, tolerance)
        bundle.writestr("coco_results.json", json.dumps(all_results))
        bundle.writestr("images.json", json.dumps(listing, indent=1))
    bar.empty()
    return {"zip": buffer.getvalue(), "summary": summary}


def run_all_section(services: Services, pictures: list[Picture], settings: RunSettings,
                    view: ViewSettings) -> None:
    """A button that segments every picture, then the ZIP of everything."""
    limit = services.limits.run_all_images
    with st.expander("Add annotations for labelling tools to the ZIP"):
        formats, tolerance = annotation_choices("all_")
    signature = (tuple(p.digest for p in pictures), settings, view, tuple(formats), tolerance)
    if st.button(f"Run all {min(len(pictures), limit)} images", key="run_all",
                 icon=":material/play_arrow:",
                 help="Segment every image with the current settings and pack one ZIP."):
        if len(pictures) > limit:
            st.warning(f"This server runs at most {limit} images per Run all; the first "
                       f"{limit} of your {len(pictures)} are in the ZIP.",
                       icon=":material/production_quantity_limits:")
        st.session_state["bundle"] = {"signature": signature,
                                      **run_all(services, pictures[:limit], settings, view,
                                                formats, tolerance)}
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
                       "and `coco_results.json` for all of them; image ids are the same in "
                       "every `detections.json`, in `coco_results.json` and in `images.json`.")
    elif bundle:
        st.caption("The images or settings changed since the last run: run all again for a "
                   "fresh ZIP.")
