"""The object inspector: pick one object (click it on the annotated image, its table row
or its cut-out), see it highlighted everywhere and its card.

Clicking uses Streamlit's own selection events: the annotated image is a Plotly
figure (``st.plotly_chart(on_select="rerun", selection_mode="points")``) whose
invisible markers cover each object's mask on a grid, best-scored object on
top, each carrying the object's index in the run. The table uses
``st.dataframe``'s row selection, the gallery an "Inspect" button per cut-out.
The object is remembered as its index in the network's run, so filters never
make it another object; the teaching page reads it as ``selected_object``.
"""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import streamlit as st
from PIL import Image

from mrcnn.classes import class_name
from mrcnn.draw.overlay import inner_boundary, to_png_bytes
from mrcnn.export.bundle import cutout_filename, mask_filename
from mrcnn.export.coco import coco_results
from studio import alt_text
from studio.accessibility_ui import screen_reader_text
from studio.session_keys import (
    KEY_INSPECTED,
    KEY_LAST_OBJECTS_TABLE,
    KEY_LAST_OVERLAY_CLICK,
    KEY_OBJECTS_TABLE,
    KEY_OVERLAY_CLICK,
    KEY_SELECTED_OBJECT,
    KEY_TABLE_ROWS,
)

GRID_CELLS = 96                          # click targets across the longer side
VIEW_SIDE = 1024                         # longest side of the clickable picture
COLUMN_WIDTH = 640                       # about half the wide layout, in CSS pixels


def inspected(run_size: int, digest: str) -> int | None:
    """The run index of the object being inspected in picture ``digest``, after this
    run's clicks. A new overlay click or table selection (compared with the last run's)
    wins; the gallery's buttons set it through their callback."""
    for key, last_key, rows_key in ((KEY_OVERLAY_CLICK, KEY_LAST_OVERLAY_CLICK, None),
                                    (KEY_OBJECTS_TABLE, KEY_LAST_OBJECTS_TABLE, KEY_TABLE_ROWS)):
        state = st.session_state.get(key)
        picked = _picked(state, key)
        last = st.session_state.get(last_key)
        st.session_state[last_key] = picked
        if picked is None or picked == last:
            continue
        if rows_key is None:
            choose(digest, picked)
        else:
            rows = st.session_state.get(rows_key) or []
            if 0 <= picked < len(rows):
                choose(digest, rows[picked])
    chosen = st.session_state.get(KEY_INSPECTED) or {}
    index = chosen.get("index") if chosen.get("digest") == digest else None
    return index if index is not None and 0 <= index < run_size else None


def _picked(state, key) -> int | None:
    """The object index (overlay) or row (table) a selection state holds, if any."""
    if not state:
        return None
    selection = state.get("selection", {}) if isinstance(state, dict) else getattr(
        state, "selection", {})
    if key == KEY_OVERLAY_CLICK:
        points = selection.get("points") or []
        data = points[0].get("customdata") if points else None
        if isinstance(data, list):
            data = data[0] if data else None
        return None if data is None else int(data)
    rows = selection.get("rows") or []
    return int(rows[0]) if rows else None


def choose(digest: str, index: int) -> None:
    """Inspect object ``index`` of picture ``digest`` (also a cut-out button's callback)."""
    st.session_state[KEY_INSPECTED] = {"digest": digest, "index": int(index)}


def highlighted(annotated: np.ndarray, masks, position: int | None) -> np.ndarray:
    """The overlay with every object but ``position`` (of the shown ones) dimmed."""
    if position is None:
        return annotated
    out = (annotated.astype(np.float32) * 0.35).astype(np.uint8)
    y0, x0, y1, x1 = (int(v) for v in masks.windows[position])
    crop = masks.crop(position)
    region = out[y0:y1, x0:x1]
    region[crop] = annotated[y0:y1, x0:x1][crop]
    padded = np.pad(crop, 1)
    edge = inner_boundary(padded) | inner_boundary(np.pad(padded, 1))[1:-1, 1:-1]
    top, left = y0 - 1, x0 - 1
    ys, xs = np.nonzero(edge)
    ys, xs = ys + top, xs + left
    inside = (ys >= 0) & (ys < out.shape[0]) & (xs >= 0) & (xs < out.shape[1])
    out[ys[inside], xs[inside]] = (255, 255, 255)
    return out


def click_targets(masks, kept: np.ndarray, image_shape) -> tuple:
    """(x, y, run index) of grid points inside the shown masks, the best object on top."""
    height, width = image_shape[:2]
    step = max(2, int(round(max(height, width) / GRID_CELLS)))
    owner = np.full((height // step + 1, width // step + 1), -1, np.int64)
    for position in range(len(kept) - 1, -1, -1):          # lowest score first
        y0, x0, y1, x1 = (int(v) for v in masks.windows[position])
        if y1 <= y0 or x1 <= x0:
            continue
        rows = np.arange(-(-y0 // step), (y1 - 1) // step + 1)
        cols = np.arange(-(-x0 // step), (x1 - 1) // step + 1)
        if not len(rows) or not len(cols):
            continue
        crop = masks.crop(position)
        inside = crop[np.ix_(rows * step - y0, cols * step - x0)]
        cells = owner[np.ix_(rows, cols)]
        cells[inside] = kept[position]
        owner[np.ix_(rows, cols)] = cells
    ys, xs = np.nonzero(owner >= 0)
    xs, ys, owners = xs * step, ys * step, owner[ys, xs]
    # An object too small for the grid (or hidden under better ones) still gets one
    # target: the pixel of its mask nearest to the mask's centre.
    missing = np.setdiff1d(np.asarray(kept), owners)
    extra = []
    for position in np.flatnonzero(np.isin(kept, missing)):
        crop = masks.crop(position)
        rows, cols = np.nonzero(crop)
        if rows.size:
            nearest = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)
            y0, x0 = (int(v) for v in masks.windows[position][:2])
            extra.append((x0 + cols[nearest], y0 + rows[nearest], kept[position]))
    if extra:
        ex, ey, eo = (np.array(v) for v in zip(*extra))
        xs, ys = np.concatenate([xs, ex]), np.concatenate([ys, ey])
        owners = np.concatenate([owners, eo])
    return xs, ys, owners


def figure_height(shape) -> int:
    """CSS height of the annotated picture's figure: the picture's at COLUMN_WIDTH
    (within 240 to 900 px); the picture is centred in it at its own aspect."""
    height, width = shape[:2]
    return int(np.clip(COLUMN_WIDTH * height / width, 240, 900))


def clickable_overlay(picture: np.ndarray, shown: dict, kept: np.ndarray, class_names,
                      caption: str, alt: str) -> None:
    """The annotated picture as a Plotly figure whose objects answer a click.

    A Plotly figure has no alt attribute: ``alt`` (what the picture shows) goes into
    a text only screen readers read, just before it."""
    import plotly.graph_objects as go
    height, width = picture.shape[:2]
    scale = min(1.0, VIEW_SIDE / max(height, width))
    view = Image.fromarray(picture)
    if scale < 1.0:
        view = view.resize((round(width * scale), round(height * scale)), Image.BILINEAR)
    buffer = io.BytesIO()
    view.save(buffer, format="JPEG", quality=88)
    source = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    xs, ys, owners = click_targets(shown["masks"], kept, picture.shape)
    position = {int(index): p for p, index in enumerate(kept)}
    labels = [f"{class_name(class_names, shown['class_ids'][position[int(o)]])} "
              f"{float(shown['scores'][position[int(o)]]):.2f}" for o in owners]
    figure = go.Figure(go.Scatter(
        x=xs.tolist(), y=ys.tolist(), mode="markers", customdata=owners.tolist(), text=labels,
        marker={"size": 8, "opacity": 0.01, "color": "white"},
        hovertemplate="%{text}<extra>click to inspect</extra>"))
    figure.add_layout_image({"source": source, "xref": "x", "yref": "y", "x": 0, "y": 0,
                             "sizex": width, "sizey": height, "sizing": "stretch",
                             "layer": "below"})
    figure.update_xaxes(range=[0, width], visible=False, fixedrange=True)
    figure.update_yaxes(range=[height, 0], visible=False, fixedrange=True,
                        scaleanchor="x", scaleratio=1)
    # Plotly needs a height: the picture's at the width of a half-page column
    # (figure_height). Plotly centres the picture in it; results_ui centres the
    # original beside it in a box of the same height, so the two line up.
    figure.update_layout(margin={"l": 0, "r": 0, "t": 0, "b": 0}, dragmode=False,
                         clickmode="event+select", hovermode="closest", showlegend=False,
                         height=figure_height(picture.shape), plot_bgcolor="rgba(0,0,0,0)")
    screen_reader_text(alt)
    st.plotly_chart(figure, key=KEY_OVERLAY_CLICK, on_select="rerun", selection_mode="points",
                    config={"displayModeBar": False, "scrollZoom": False})
    st.caption(caption + " · click an object to inspect it, or select its row in the "
               "table below")


def object_card(image, run, index: int, shown: dict, kept: np.ndarray, class_names,
                stem: str, digest: str) -> None:
    """Everything about one object: class and runners-up, box, area, cut-out, downloads."""
    result = run.result
    masks = result["masks"]
    class_id = int(result["class_ids"][index])
    score = float(result["scores"][index])
    name = class_name(class_names, class_id)
    y1, x1, y2, x2 = (int(v) for v in result["rois"][index])
    area = int(masks.areas[index])
    st.session_state[KEY_SELECTED_OBJECT] = {"digest": digest, "class_id": class_id,
                                             "box": [y1, x1, y2, x2], "score": score}
    position = int(np.flatnonzero(kept == index)[0])
    with st.container(border=True, key="object_card"):
        st.subheader(f"Object #{position + 1}: {name} {score:.3f}")
        left, right = st.columns([1, 2], gap="large")
        with left:
            st.image(run.cutout_png(image, index), caption="Cut-out, full size",
                     alt=alt_text.cutout(name, position + 1, score))
        with right:
            cells = st.columns(3)
            cells[0].metric("Score", f"{score:.3f}")
            cells[1].metric("Mask area", f"{area:,} px")
            share = 100.0 * area / (image.shape[0] * image.shape[1])
            cells[2].metric("Of the image", f"{share:.2f} %")
            st.markdown(f"**Box** (x1, y1, x2, y2): {x1}, {y1}, {x2}, {y2} · "
                        f"{x2 - x1} × {y2 - y1} px")
            probabilities = result.get("class_probs")
            if probabilities is not None:
                order = [int(c) for c in np.argsort(-probabilities[index], kind="stable")
                         if c != class_id][:3]
                st.markdown("**Next most likely classes** (the classifier head's softmax): "
                            + ", ".join(f"{class_name(class_names, c)} "
                                        f"{float(probabilities[index][c]):.3f}"
                                        for c in order))
            else:
                st.caption("This backend does not report the other classes' probabilities.")
            full = masks.full(index)
            one = {"rois": result["rois"][index:index + 1],
                   "class_ids": result["class_ids"][index:index + 1],
                   "scores": result["scores"][index:index + 1], "masks": masks.take([index])}
            with st.container(horizontal=True):
                cutout_name = cutout_filename(position, len(kept), name, score)
                st.download_button("Cut-out (PNG)", data=run.cutout_png(image, index),
                                   file_name=f"{stem}_{cutout_name}",
                                   mime="image/png", on_click="ignore", key="card_cutout",
                                   icon=":material/download:")
                st.download_button("Mask (PNG)", data=to_png_bytes(full),
                                   file_name=f"{stem}_{mask_filename(position, len(kept), name)}",
                                   mime="image/png", on_click="ignore", key="card_mask",
                                   icon=":material/download:")
                st.download_button("COCO result (JSON)", data=json.dumps(coco_results(one)),
                                   file_name=f"{stem}_object_{position + 1:02d}.json",
                                   mime="application/json", on_click="ignore", key="card_json",
                                   icon=":material/data_object:")
            st.caption("The \"How it works\" page can follow this object through the network.")
