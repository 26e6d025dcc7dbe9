"""Annotation exports on the page: format boxes, a tolerance slider, one ZIP download.

The same function serves one picture (the results page) and Run all (many): the ZIP
is built by :func:`mrcnn.export.annotations.annotations_zip` only when the button is
clicked, and clicking does not rerun the page.
"""
from __future__ import annotations

import functools

import streamlit as st

from mrcnn.export.annotations import DEFAULT_TOLERANCE, FORMATS, annotations_zip
from mrcnn.export.polygons import POLYGON_RULE

__all__ = ["DEFAULT_FORMATS", "annotation_choices", "annotation_exports"]

#: Ticked when the page first shows the boxes.
DEFAULT_FORMATS = ("coco",)


def annotation_choices(key_prefix: str) -> tuple[list[str], float]:
    """The format boxes and the tolerance slider; returns (ticked formats, tolerance).

    Widget keys: ``f"{key_prefix}fmt_<format>"`` for each key of ``FORMATS`` and
    ``f"{key_prefix}tolerance"``.
    """
    st.markdown("**Annotations for labelling tools**")
    with st.container(horizontal=True):
        ticked = [key for key, spec in FORMATS.items()
                  if st.checkbox(spec.label, value=key in DEFAULT_FORMATS,
                                 key=f"{key_prefix}fmt_{key}",
                                 help=f"{spec.description} Read by: {spec.readers}.")]
    tolerance = st.slider(
        "Polygon tolerance (px)", 0.0, 5.0, DEFAULT_TOLERANCE, 0.25,
        key=f"{key_prefix}tolerance",
        help="How far a simplified outline may stray from the mask: 0 keeps every "
             f"pixel step, larger values give fewer points. {POLYGON_RULE}")
    st.caption("Objects with holes stay exact RLE masks in COCO; YOLO and LabelMe cut "
               "holes in with a zero-width slit; an object in several parts becomes "
               "several polygons. VOC masks are exact. The pictures are in the ZIP too.")
    return ticked, float(tolerance)


def annotation_exports(items, class_names, key_prefix: str, stem: str) -> None:
    """:func:`annotation_choices` and the ``<stem>_annotations.zip`` button.

    ``items`` are ``(image_id, file_name, image, result)`` as
    :func:`~mrcnn.export.annotations.write_annotations` takes them; the button's
    key is ``f"{key_prefix}download_annotations"``.
    """
    items = list(items)
    with st.container(key=f"{key_prefix}annotation_exports"):
        ticked, tolerance = annotation_choices(key_prefix)
        st.download_button(
            "Annotations (ZIP)",
            data=functools.partial(annotations_zip, items, list(class_names), ticked,
                                   tolerance),
            file_name=f"{stem}_annotations.zip", mime="application/zip", on_click="ignore",
            key=f"{key_prefix}download_annotations", disabled=not ticked or not items,
            icon=":material/folder_zip:",
            help="Tick at least one format." if not ticked else
                 "One ZIP with the ticked formats and the pictures they annotate.")
