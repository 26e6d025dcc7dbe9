"""The teaching page's last sections: RoI Align, the classifier and box heads, IoU, masks."""
from __future__ import annotations

import numpy as np
import streamlit as st

from mrcnn import explain
from mrcnn import intermediates as stages
from mrcnn.draw import figures as fig
from mrcnn.draw.overlay import draw_detections, palette
from studio import alt_text
from studio.lesson_network_ui import (
    DISPLAY,
    LEVEL_COLOURS,
    SUPPRESSED,
    WHITE,
    by,
    fmt_box,
    frame,
    shapes_line,
    sizes,
    to_display,
)

# ---------------------------------------------------------------- text (sizes from the run)

def roi_align_text(insp) -> str:
    z = sizes(insp)
    return ("Each proposal is cut out of one pyramid level and resampled to a fixed grid "
            f"(bilinear crop-and-resize): {by(z.pool)} for the classifier, {by(z.mask_pool)} "
            "for the mask head. Big boxes read the coarse maps, small boxes the fine ones; "
            "a 224×224 box (ImageNet's picture size) reads P4.")


def roi_align_shapes(insp) -> list[str]:
    z = sizes(insp)
    return [f"classifier input ({len(insp.proposals)}, {z.pool[0]}, {z.pool[1]}, "
            f"{z.pyramid_channels})",
            f"mask-head input (detections, {z.mask_pool[0]}, {z.mask_pool[1]}, "
            f"{z.pyramid_channels})"]


def heads_text(insp) -> str:
    z = sizes(insp)
    return (f"Every proposal's {by(z.pool, z.pyramid_channels)} crop goes through two fully "
            f"connected layers of {z.fc}. One output is a probability for each of the "
            f"{z.classes} classes (background included), the other four box deltas per "
            "class. The best class wins and its deltas refine the box; background and "
            "scores below the threshold are dropped, then NMS per class (IoU > "
            f"{insp.detection_nms_threshold:g}) removes duplicates and the best "
            f"{insp.detection_max_instances} remain.")


def masks_text(insp) -> str:
    z = sizes(insp)
    return (f"For each detection, a {by(z.mask_pool, z.pyramid_channels)} crop goes through "
            "four 3×3 convolutions and one 2× up-convolution, giving a "
            f"{by(z.mask)} probability map for every class; only the detected class's map "
            "is used. It is stretched over the box and cut at 0.5.")


def masks_shapes(insp) -> list[str]:
    z = sizes(insp)
    return [f"mask head output (1, {insp.detection_max_instances}, {z.mask[0]}, {z.mask[1]}, "
            f"{z.classes})",
            f"final masks ({insp.image.shape[0]}, {insp.image.shape[1]}, "
            f"{len(insp.class_ids)}) bool"]


# ---------------------------------------------------------------- sections


@st.fragment
def section_roi_align(insp) -> None:
    st.header("5. RoI Align", anchor="roi-align")
    H, W = insp.molded_shape
    st.markdown(roi_align_text(insp))
    st.latex(r"\text{level} = \min\Big(5,\ \max\big(2,\ 4 + \operatorname{round}"
             r"\big(\log_2 \tfrac{\sqrt{h\,w}}{224/\sqrt{H\,W}}\big)\big)\Big)")
    counts = np.bincount(insp.proposal_levels, minlength=6)[2:6]
    cols = st.columns(4)
    for col, level, count in zip(cols, range(2, 6), counts):
        col.metric(f"Proposals read from P{level}", f"{int(count):,}")
    choice = st.selectbox(
        "Proposal", list(range(len(insp.crop_ids))), key="hiw_roi_pick",
        format_func=lambda j: f"proposal #{int(insp.crop_ids[j]) + 1} "
                              f"(P{int(insp.proposal_levels[insp.crop_ids[j]])})")
    index = int(insp.crop_ids[choice])
    f = explain.level_formula(insp, index)
    st.markdown(
        f"Proposal #{index + 1}: h = {f['h']:.3f}, w = {f['w']:.3f} (fractions of the "
        f"frame) → √(h·w)·√(H·W) = {f['side_px']:.1f} px → {f['side_px']:.1f} / 224 = "
        f"{f['ratio']:.3f} → log₂ = {f['log2']:.3f} → round = {f['rounded']} → "
        f"4 + {f['rounded']} → clamp to 2..5 → **P{f['level']}**")
    s = to_display(insp)
    top = min(60, insp.proposal_count)
    picture = fig.draw_boxes(
        fig.dim(frame(insp), 0.35), insp.to_pixels(insp.proposals[:top]),
        [LEVEL_COLOURS[int(v)] for v in insp.proposal_levels[:top]], width=1, scale=s)
    box_px = insp.to_pixels(insp.proposals[index])
    picture = fig.draw_boxes(picture, [box_px], [WHITE], width=4,
                                  labels=[f"#{index + 1} → P{f['level']}"], scale=s)
    patch = explain.image_patch(insp, box_px)
    crop_cls = insp.crops_classifier[choice]
    crop_msk = insp.crops_mask[choice]
    cols = st.columns([2, 1, 1, 1])
    cols[0].image(picture, width="stretch",
                  caption=f"Top {top} proposals coloured by level "
                          "(P2 blue, P3 green, P4 yellow, P5 red); white: the chosen one",
                  alt=alt_text.boxes_figure(
                      f"The {top} best proposals on the network input", top,
                      (DISPLAY, DISPLAY), f"the chosen one, #{index + 1}, drawn thick and "
                      f"labelled with its level P{f['level']}"))
    cols[1].image(fig.resize_picture(patch, (196, 196)), width="stretch",
                  caption=f"The image under it ({patch.shape[0]}×{patch.shape[1]} px)",
                  alt=alt_text.photo("The part of the network input under the chosen "
                                     "proposal", patch.shape))
    cols[2].image(fig.enlarge(fig.colormap(crop_cls.mean(axis=2)), 196),
                  width="stretch",
                  caption=f"Classifier crop {by(crop_cls.shape)} "
                          "(mean over channels)",
                  alt=alt_text.feature_map(f"RoI Align's classifier crop from P{f['level']}:",
                                           crop_cls.shape))
    cols[3].image(fig.enlarge(fig.colormap(crop_msk.mean(axis=2)), 196),
                  width="stretch",
                  caption=f"Mask crop {by(crop_msk.shape)} "
                          "(mean over channels)",
                  alt=alt_text.feature_map(f"RoI Align's mask crop from P{f['level']}:",
                                           crop_msk.shape))
    shapes_line(*roi_align_shapes(insp))


@st.fragment
def section_heads(insp) -> None:
    st.header("6. Classifier and box heads", anchor="heads")
    R, C = insp.class_probs.shape
    st.markdown(heads_text(insp))
    shapes_line(f"class probabilities (1, {R}, {C})", f"box deltas (1, {R}, {C}, 4)",
                f"detections (1, {insp.detection_max_instances}, 6)")
    s = to_display(insp)

    st.subheader("One RoI at a time")
    shown = min(50, insp.proposal_count)
    pick = st.selectbox(
        "RoI", list(range(shown)), key="hiw_heads_roi",
        format_func=lambda i: f"RoI #{i + 1}: {insp.class_name(insp.roi_class_ids[i])} "
                              f"{insp.roi_scores[i]:.3f}")
    order = np.argsort(-insp.class_probs[pick], kind="stable")[:6]
    st.image(fig.class_bars([insp.class_name(c) for c in order],
                                 insp.class_probs[pick][order]),
             caption=f"RoI #{pick + 1}: the six most likely of {C} classes (softmax)",
             alt=alt_text.probability_bars([insp.class_name(c) for c in order],
                                           insp.class_probs[pick][order]))
    left, right = st.columns(2)
    proposal_px = insp.to_pixels(insp.proposals[pick])
    refined_px = insp.to_pixels(insp.roi_refined_boxes[pick])
    name = insp.class_name(insp.roi_class_ids[pick])
    colours = [WHITE, (255, 120, 40)]
    picture = fig.draw_boxes(fig.dim(frame(insp), 0.3), [proposal_px, refined_px],
                                  colours, width=2, scale=s)
    region = fig.zoom_region([proposal_px, refined_px], insp.molded_shape)
    close_up = fig.zoom(insp.molded_image, region, [proposal_px, refined_px], colours,
                             labels=["", name])
    left.image(picture, width="stretch", caption="Where it is in the network input",
               alt=alt_text.boxes_figure(f"RoI #{pick + 1} on the network input", 2,
                                         (DISPLAY, DISPLAY), "white: the proposal, orange: "
                                         "the box refined by the heads"))
    right.image(close_up, width="stretch",
                caption=f"Close-up. White: the proposal {fmt_box(insp.proposals[pick])}; "
                        f"orange: refined by the {name} deltas {fmt_box(insp.roi_deltas[pick])}",
                alt=alt_text.boxes_figure(f"Close-up of RoI #{pick + 1}", 2, close_up.shape,
                                          f"white: the proposal, orange and labelled {name}: "
                                          "the refined box"))

    st.subheader("From RoIs to detections")
    threshold = st.slider("Minimum class score", 0.0, 1.0,
                          float(insp.detection_min_confidence), step=0.05,
                          key="hiw_heads_threshold")
    chosen = explain.detections_at(insp, threshold)
    candidates, kept = chosen["candidates"], chosen["kept"]
    names = sorted({insp.class_name(c) for c in insp.roi_class_ids[candidates]})
    only = st.selectbox("Class", ["all classes"] + names, key="hiw_heads_class")
    if only != "all classes":
        class_id = insp.class_names.index(only)
        candidates = candidates[insp.roi_class_ids[candidates] == class_id]
        kept = kept[insp.roi_class_ids[kept] == class_id]
    cols = st.columns(3)
    objects = int((insp.roi_class_ids[:insp.proposal_count] > 0).sum())
    cols[0].metric("RoIs with an object class", f"{objects:,}")
    cols[1].metric("Candidates at this score", f"{len(candidates):,}")
    cols[2].metric("Detections after per-class NMS", f"{len(kept):,}")
    if abs(threshold - insp.detection_min_confidence) < 1e-9 and only == "all classes":
        dropped = len(kept) - len(insp.class_ids)
        st.caption(f"At {insp.detection_min_confidence:g} (the configured threshold) these "
                   f"are the engine's own {len(insp.detections)} detections"
                   + (f"; {dropped} of them round to an empty box in the original image "
                      "and are dropped when unmolding." if dropped else "."))
    base = fig.dim(frame(insp), 0.35)
    left, right = st.columns(2)
    left.image(fig.draw_boxes(base, insp.to_pixels(insp.roi_refined_boxes[candidates]),
                                   [SUPPRESSED], width=1, scale=s),
               width="stretch", caption=f"Before NMS: {len(candidates)} refined boxes",
               alt=alt_text.boxes_figure("Refined boxes before non-maximum suppression",
                                         len(candidates), (DISPLAY, DISPLAY)))
    colours = palette(max(len(kept), 1))
    labels = [f"{insp.class_name(insp.roi_class_ids[i])} {insp.roi_scores[i]:.2f}" for i in kept]
    right.image(fig.draw_boxes(base, insp.to_pixels(insp.roi_refined_boxes[kept]),
                                    colours[:len(kept)], width=2,
                                    labels=labels if len(kept) <= 25 else None, scale=s),
                width="stretch", caption=f"After NMS: {len(kept)} detections",
                alt=alt_text.boxes_figure("Detections after per-class NMS", len(kept),
                                          (DISPLAY, DISPLAY), ", ".join(labels[:10])
                                          + (f" and {len(kept) - 10} more"
                                             if len(kept) > 10 else "")))


@st.fragment
def iou_explainer() -> None:
    """Part of section 6, in a fragment of its own: its sliders redraw only this."""
    st.subheader("IoU: how much two boxes overlap")
    st.markdown(
        "Intersection over union = the shared area divided by the area the two boxes "
        "cover together. NMS uses it to spot duplicates; in training a RoI counts as a "
        f"positive example of an object when its IoU with that object's true box is at "
        f"least {stages.TRAINING_POSITIVE_IOU:g}, otherwise it is trained as background.")
    size = 400
    controls, picture_col = st.columns([1, 1])
    with controls:
        ax = st.slider("Box A: x", 0, 240, 60, key="hiw_iou_ax")
        ay = st.slider("Box A: y", 0, 200, 60, key="hiw_iou_ay")
        bx = st.slider("Box B: x", 0, 240, 140, key="hiw_iou_bx")
        by = st.slider("Box B: y", 0, 200, 110, key="hiw_iou_by")
    a = [ay, ax, ay + 180, ax + 160]
    b = [by, bx, by + 180, bx + 160]
    value = float(explain.iou(a, [b])[0])
    overlap = explain.intersection(a, b)
    canvas = np.full((size, size, 3), 250, np.uint8)
    canvas = fig.draw_boxes(canvas, [a, b], [(40, 120, 220), (230, 110, 30)], width=3,
                                 labels=["A (true box)", "B (RoI)"], fill_alpha=0.12)
    if overlap is not None:
        canvas = fig.draw_boxes(canvas, [overlap], [(120, 60, 160)],
                                     width=1, fill_alpha=0.45)
    picture_col.image(canvas, width=size, caption="Purple: the intersection",
                      alt=f"Two boxes, A (the true box) at x {ax}, y {ay} and B (the RoI) at "
                          f"x {bx}, y {by}, both 160x180 px; "
                          + ("their intersection is shaded" if overlap is not None
                             else "they do not overlap"))
    with controls:
        st.metric("IoU(A, B)", f"{value:.3f}")
        if value >= stages.TRAINING_POSITIVE_IOU:
            st.success(f"IoU ≥ {stages.TRAINING_POSITIVE_IOU:g}: in training, B is a "
                       "positive RoI for A's class, box and mask.")
        else:
            st.info(f"IoU < {stages.TRAINING_POSITIVE_IOU:g}: in training, B is a "
                    "negative RoI (background).")


@st.fragment
def section_masks(insp) -> None:
    st.header("7. Mask head", anchor="masks")
    N = len(insp.class_ids)
    st.markdown(masks_text(insp))
    shapes_line(*masks_shapes(insp))
    st.metric("Detections", f"{N:,}")
    if N == 0:
        st.info("No object passed the threshold in this image, so there is no mask to show.")
        return
    colours = palette(N)
    pick = st.selectbox(
        "Detection", list(range(N)), key="hiw_mask_pick",
        format_func=lambda i: f"#{i + 1} {insp.class_name(insp.class_ids[i])} "
                              f"{insp.scores[i]:.3f}")
    threshold = st.slider("Mask threshold", 0.05, 0.95, 0.5, step=0.05, key="hiw_mask_threshold")
    soft = insp.soft_masks[pick]
    pasted = explain.paste_soft_mask(soft, insp.rois[pick], insp.image.shape)
    mask = pasted >= threshold
    result = {"rois": insp.rois[pick:pick + 1], "class_ids": insp.class_ids[pick:pick + 1],
              "scores": insp.scores[pick:pick + 1], "masks": mask[:, :, None]}
    overlay = draw_detections(insp.image, result, insp.class_names, colors=colours[pick:pick + 1])
    unlabelled = draw_detections(insp.image, result, insp.class_names, show_labels=False,
                                 colors=colours[pick:pick + 1])
    region = fig.zoom_region(insp.rois[pick], insp.image.shape, margin=0.25)
    cols = st.columns(3)
    name = insp.class_name(insp.class_ids[pick])
    cols[0].image(fig.enlarge(fig.colormap(soft, "magma", 0.0, 1.0), 280),
                  width="stretch",
                  caption=f"{by(soft.shape)} soft mask, values {soft.min():.2f}–{soft.max():.2f}",
                  alt=alt_text.heat_map(f"Soft mask of detection #{pick + 1}, {name}",
                                        soft.shape, float(soft.min()), float(soft.max())))
    cols[1].image(fig.zoom(unlabelled, region, smooth=False), width="stretch",
                  caption=f"Stretched over the box {tuple(int(v) for v in insp.rois[pick])} "
                          f"and cut at {threshold:.2f} (close-up)",
                  alt=f"Close-up of detection #{pick + 1}, {name}: its mask cut at "
                      f"{threshold:.2f}, {int(mask.sum()):,} pixels")
    cols[2].image(overlay, width="stretch", caption="In the whole image",
                  alt=alt_text.annotated_photo(f"The whole photo with detection #{pick + 1}",
                                               [name], insp.scores[pick:pick + 1]))
    left, right, _ = st.columns(3)
    left.metric("Mask pixels at this cut", f"{int(mask.sum()):,}")
    right.metric("Engine's mask (0.5)", f"{int(insp.masks[:, :, pick].sum()):,}")
    st.markdown("**Every detection's soft mask:**")
    shown = min(N, 12)
    cols = st.columns(6)
    for i in range(shown):
        heat = fig.colormap(insp.soft_masks[i], "magma", 0.0, 1.0)
        cols[i % 6].image(fig.enlarge(heat, 112),
                          width="stretch",
                          caption=f"#{i + 1} {insp.class_name(insp.class_ids[i])}",
                          alt=alt_text.heat_map(
                              f"Soft mask of detection #{i + 1}, "
                              f"{insp.class_name(insp.class_ids[i])}",
                              insp.soft_masks[i].shape))
    if N > shown:
        st.caption(f"…and {N - shown} more.")
