"""The teaching page's "Follow one object through the network" section.

One detection's trail (:func:`mrcnn.follow.follow_detection`): the anchor it grew
from, its proposal, RoI-align level and crops, class probabilities, refined box,
the boxes NMS removed in its favour, and its soft mask. The object is picked
here, or comes from the main page's inspector (``KEY_SELECTED_OBJECT``: the digest of
its picture, class id, box in original pixels and score).
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from mrcnn.draw import figures as fig
from mrcnn.draw.overlay import draw_detections, palette
from mrcnn.explain import paste_soft_mask
from mrcnn.follow import follow_detection, match_selection
from studio import alt_text
from studio.lesson_network_ui import (
    KEPT,
    SUPPRESSED,
    WHITE,
    by,
    fmt_box,
    frame,
    sizes,
    to_display,
)
from studio.session_keys import KEY_FOLLOW_PICK, KEY_FOLLOW_SOURCE, KEY_SELECTED_OBJECT

ANCHOR, PROPOSAL, DETECTION = (0, 200, 255), WHITE, (255, 140, 0)


def _start_on_selection(insp, digest: str) -> None:
    """Point the object picker at the main page's selected object when a new one
    arrives, or say why it is not among this run's detections."""
    selected = st.session_state.get(KEY_SELECTED_OBJECT)
    if not selected:
        return
    name = insp.class_name(int(selected["class_id"]))
    if selected.get("digest") != digest:
        st.info(f"The object selected on the main page ({name}) is in another picture. "
                "Choose that picture under *Image to look inside* at the top to follow it.",
                icon=":material/info:")
        return
    score = selected.get("score")
    match = match_selection(insp, int(selected["class_id"]), selected["box"], score)
    marker = (digest, int(selected["class_id"]), tuple(float(v) for v in selected["box"]))
    if match.detection is None:
        shown = f" {score:.2f}" if score is not None else ""
        st.warning(f"The object selected on the main page ({name}{shown}) is not among this "
                   f"run's detections. {match.reason} Pick another object below.",
                   icon=":material/search_off:")
    elif st.session_state.get(KEY_FOLLOW_SOURCE) != marker:
        st.session_state[KEY_FOLLOW_PICK] = match.detection
    if match.detection is not None:
        st.caption(f"The main page's selected {name} is object #{match.detection + 1} here "
                   f"(box overlap IoU {match.overlap:.2f}).")
    st.session_state[KEY_FOLLOW_SOURCE] = marker


@st.fragment
def section_follow(insp, digest: str) -> None:
    st.header("8. Follow one object through the network", anchor="follow")
    st.markdown(
        "Every detection started as one anchor. Pick an object to see the path the "
        "network took to it: which anchor the RPN refined into its proposal, which "
        "pyramid level RoI Align read, what the classifier thought, which duplicates "
        "NMS removed in its favour, and the mask it drew. The links are the network's "
        "own record of this run, not a guess afterwards.")
    n = len(insp.class_ids)
    if n == 0:
        st.info("No object passed the threshold in this image, so there is nothing to follow.")
        return
    _start_on_selection(insp, digest)
    if st.session_state.get(KEY_FOLLOW_PICK, 0) >= n:
        st.session_state[KEY_FOLLOW_PICK] = 0
    pick = st.selectbox(
        "Object to follow", list(range(n)), key=KEY_FOLLOW_PICK,
        format_func=lambda i: f"#{i + 1} {insp.class_name(insp.class_ids[i])} "
                              f"{insp.scores[i]:.3f}")
    trail = follow_detection(insp, pick)
    name = insp.class_name(insp.class_ids[pick])
    _trail_boxes(insp, trail, name)
    _trail_heads(insp, trail, name)
    _trail_nms(insp, trail, name)
    _trail_mask(insp, trail, pick, name)


def _trail_boxes(insp, trail, name: str) -> None:
    s = to_display(insp)
    boxes = [insp.to_pixels(b) for b in (trail.anchor_box, trail.proposal, trail.box)]
    colours = [ANCHOR, PROPOSAL, DETECTION]
    picture = fig.draw_boxes(fig.dim(frame(insp), 0.35), boxes, colours, width=3, scale=s)
    region = fig.zoom_region(boxes, insp.molded_shape)
    close_up = fig.zoom(insp.molded_image, region, boxes, colours,
                        labels=["anchor", "proposal", name])
    left, middle, right = st.columns([2, 2, 3])
    key = f"cyan: the anchor, white: the proposal, orange: the {name} detection"
    left.image(picture, width="stretch", caption="Cyan: the anchor · white: the proposal · "
               f"orange: the {name} detection (network input)",
               alt=alt_text.boxes_figure("The followed object on the network input", 3,
                                         picture.shape, key))
    middle.image(close_up, width="stretch", caption="Close-up",
                 alt=alt_text.boxes_figure("Close-up of the followed object", 3,
                                           close_up.shape, key + ", each labelled"))
    right.markdown(trail_steps_text(insp, trail, name))


def trail_steps_text(insp, trail, name: str) -> str:
    """Steps 1-4 of the trail: anchor, RPN deltas, RoI Align, classifier."""
    z = sizes(insp)
    K = len(insp.pre_nms_scores)
    return (
        f"1. **Anchor** #{trail.anchor:,} on P{trail.anchor_level}: {trail.anchor_scale} px, "
        f"width/height {trail.anchor_ratio:g}. Objectness **{trail.objectness:.3f}**, "
        f"rank {trail.pre_nms_rank + 1:,} of the {K:,} best anchors kept before NMS.\n"
        f"2. **RPN deltas** (dy, dx, log dh, log dw) {fmt_box(trail.rpn_deltas)} move and "
        f"stretch it into **proposal #{trail.roi + 1}** {fmt_box(trail.proposal)}, which "
        f"survived the RPN's NMS.\n"
        f"3. **RoI Align** reads the proposal from **P{trail.roi_level}** ({by(z.pool)} for "
        f"the classifier); the mask head later reads the refined box from "
        f"**P{trail.mask_level}** ({by(z.mask_pool)}).\n"
        f"4. **Classifier**: {name} with probability **{trail.class_probs.max():.3f}**; "
        f"the {name} box deltas {fmt_box(trail.class_deltas)} refine the proposal into "
        f"the detection {fmt_box(trail.box)}.")


def _trail_heads(insp, trail, name: str) -> None:
    order = np.argsort(-trail.class_probs, kind="stable")[:6]
    crop_cls, crop_msk = trail.crop_classifier, trail.crop_mask
    cols = st.columns([1, 1, 2])
    cols[0].image(fig.enlarge(fig.colormap(crop_cls.mean(axis=2)), 196), width="stretch",
                  caption=f"Classifier input: its proposal from P{trail.roi_level}, "
                          f"{by(crop_cls.shape)} (mean over channels)",
                  alt=alt_text.feature_map(f"Classifier input read from P{trail.roi_level}:",
                                           crop_cls.shape))
    cols[1].image(fig.enlarge(fig.colormap(crop_msk.mean(axis=2)), 196), width="stretch",
                  caption=f"Mask-head input: its box from P{trail.mask_level}, "
                          f"{by(crop_msk.shape)} (mean over channels)",
                  alt=alt_text.feature_map(f"Mask-head input read from P{trail.mask_level}:",
                                           crop_msk.shape))
    cols[2].image(fig.class_bars([insp.class_name(c) for c in order], trail.class_probs[order]),
                  width="stretch",
                  caption=f"Its six most likely classes of {len(trail.class_probs)} (softmax)",
                  alt=alt_text.probability_bars([insp.class_name(c) for c in order],
                                                trail.class_probs[order]))


def _trail_nms(insp, trail, name: str) -> None:
    count = len(trail.suppressed)
    threshold = insp.detection_nms_threshold
    if count == 0:
        st.markdown(f"5. **NMS**: no other {name} box overlapped this one by IoU > "
                    f"{threshold:g}, so NMS removed nothing in its favour.")
        return
    st.markdown(f"5. **NMS** removed **{count}** other {name} box{'es' if count > 1 else ''} "
                f"in its favour: each scored lower and overlapped it by IoU > {threshold:g}.")
    shown = trail.suppressed[:12]
    boxes = [insp.to_pixels(trail.box)] + list(insp.to_pixels(insp.roi_refined_boxes[shown]))
    labels = [f"{name} (kept)"] + [f"IoU {v:.2f}" for v in trail.suppressed_iou[:12]]
    colours = [KEPT] + [SUPPRESSED] * len(shown)
    region = fig.zoom_region(boxes, insp.molded_shape, margin=0.3)
    # the suppressed boxes first, the detection on top
    close_up = fig.zoom(insp.molded_image, region, boxes[::-1], colours[::-1],
                        labels=labels[::-1], size=420, width=2)
    left, right = st.columns([3, 2])
    left.image(close_up, width="stretch",
               caption="Green: the detection; red: boxes NMS removed in its favour (close-up)"
                       + (f", the first 12 of {count}" if count > 12 else ""),
               alt=alt_text.boxes_figure(
                   "Close-up of the detection and the boxes NMS removed in its favour",
                   len(boxes), close_up.shape, f"the detection labelled {name} (kept), "
                   "each removed box labelled with its IoU with it"))
    right.dataframe({"RoI": [f"#{int(r) + 1}" for r in trail.suppressed],
                     "score": [f"{insp.roi_scores[r]:.3f}" for r in trail.suppressed],
                     "IoU with it": [f"{v:.3f}" for v in trail.suppressed_iou]},
                    hide_index=True)


def _trail_mask(insp, trail, pick: int, name: str) -> None:
    soft = trail.soft_mask
    mask = paste_soft_mask(soft, insp.rois[pick], insp.image.shape) >= 0.5
    colour = palette(len(insp.class_ids))[pick:pick + 1]
    result = {"rois": insp.rois[pick:pick + 1], "class_ids": insp.class_ids[pick:pick + 1],
              "scores": insp.scores[pick:pick + 1], "masks": mask[:, :, None]}
    drawn = draw_detections(insp.image, result, insp.class_names, show_labels=False,
                            colors=colour)
    region = fig.zoom_region(insp.rois[pick], insp.image.shape, margin=0.25)
    st.markdown(trail_mask_text(insp, trail, pick, name))
    left, right, _ = st.columns([1, 1, 1])
    left.image(fig.enlarge(fig.colormap(soft, "magma", 0.0, 1.0), 280), width="stretch",
               caption=f"{by(soft.shape)} soft mask before pasting, "
                       f"values {soft.min():.2f}–{soft.max():.2f}",
               alt=alt_text.heat_map(f"Soft mask of the {name} before pasting", soft.shape,
                                     float(soft.min()), float(soft.max())))
    right.image(fig.zoom(drawn, region, smooth=False), width="stretch",
                caption=f"Pasted into the photo: {int(mask.sum()):,} pixels",
                alt=f"Close-up of the photo with the {name}'s mask pasted in, "
                    f"{int(mask.sum()):,} pixels")


def trail_mask_text(insp, trail, pick: int, name: str) -> str:
    """Step 6 of the trail: the mask head's map for the detection's class."""
    return (f"6. **Mask head**: a {by(trail.soft_mask.shape)} probability map for {name}, "
            f"stretched over the box {tuple(int(v) for v in insp.rois[pick])} and cut at 0.5.")
