"""How it works: one real run of Mask R-CNN on one image, stage by stage.

Every number and picture comes from ``mrcnn.inspect.inspect_image`` (the loaded
weights, the engine's own layers): the network runs once per image (cached by the
image's hash), then every control only redraws pictures from that Inspection.
Each section with controls is an ``st.fragment`` so moving one reruns only it.
"""
from __future__ import annotations

import gc
import hashlib
import threading

import numpy as np
import streamlit as st

from mrcnn import CocoConfig
from mrcnn import inspect as insp_lib
from mrcnn.imaging import to_rgb_array
from mrcnn.render import draw_detections, palette
from mrcnn.weights import WeightsFileError, check_weights_file, default_weights_path

DISPLAY = 512            # side of the molded-frame pictures, pixels
LEVEL_COLOURS = {2: (66, 135, 245), 3: (46, 204, 113), 4: (241, 196, 15),
                 5: (231, 76, 60), 6: (155, 89, 182)}
RATIO_COLOURS = [(0, 200, 255), (255, 210, 0), (255, 70, 160)]
KEPT, SUPPRESSED, WHITE = (60, 220, 90), (235, 70, 60), (255, 255, 255)

st.set_page_config(page_title="How it works · Mask R-CNN Studio", page_icon=":mag:",
                   layout="wide")


# ----------------------------------------------------------------- loading

@st.cache_resource(show_spinner="Loading Mask R-CNN (ResNet-101 FPN, COCO weights)…")
def load_model(weights_path: str):
    """The COCO model for a weights file: the same object the main page uses."""
    from mrcnn.model import shared_model
    model = shared_model(weights_path, CocoConfig())
    # Streamlit ends every run (fragment runs too) with a full garbage collection;
    # freezing the model's and TensorFlow's long-lived objects keeps that cheap.
    gc.freeze()
    return model


@st.cache_resource
def model_lock(weights_path: str) -> threading.Lock:
    """One run at a time on a shared model."""
    return threading.Lock()


@st.cache_data(show_spinner=False, max_entries=4)
def run_inspection(image_key: str, weights_path: str, _image: np.ndarray):
    model = load_model(weights_path)
    with model_lock(weights_path):
        return insp_lib.inspect_image(model, _image)


def sample_images() -> dict:
    """Bundled samples: name -> loader."""
    try:
        from mrcnn.samples import SAMPLES
        return dict(SAMPLES)
    except ImportError:
        import skimage.data
        return {"astronaut (scikit-image)": skimage.data.astronaut}


@st.cache_data(show_spinner=False)
def load_sample(name: str) -> np.ndarray:
    return to_rgb_array(sample_images()[name]())


def image_key(image: np.ndarray) -> str:
    digest = hashlib.sha1(np.ascontiguousarray(image).tobytes())
    digest.update(str(image.shape).encode())
    return digest.hexdigest()


def choose_image():
    """The image chosen on the main page if there is one, else a bundled sample."""
    chosen = st.session_state.get("selected_image")
    options = {}
    if chosen is not None:
        name = st.session_state.get("selected_image_name") or "your image"
        options[f"{name} (chosen on the main page)"] = None
    samples = sample_images()
    for name, loader in samples.items():
        options[getattr(loader, "title", name)] = name
    label = st.selectbox("Image to look inside", list(options), key="hiw_image")
    if options[label] is None:
        return label, np.asarray(chosen)
    return label, load_sample(options[label])


# ----------------------------------------------------------------- helpers

def frame(insp) -> np.ndarray:
    """The network input at display size."""
    return insp_lib.resize_picture(insp.molded_image, (DISPLAY, DISPLAY))


def to_display(insp) -> float:
    """Factor from molded pixels to display pixels."""
    return DISPLAY / insp.molded_shape[0]


def fmt_box(box) -> str:
    return "(" + ", ".join(f"{float(v):.3f}" for v in box) + ")"


def shapes_line(*parts) -> None:
    st.caption(" · ".join(parts))


# ---------------------------------------------------------------- sections

def section_input(insp, label: str) -> None:
    st.header("1. Input", anchor="input")
    h, w = insp.image.shape[:2]
    H, W = insp.molded_shape
    y1, x1, y2, x2 = (int(v) for v in insp.window)
    low, high = insp.resize_limits
    st.markdown(
        f"The network takes one fixed frame. A picture whose shorter side is below {low} "
        f"pixels is enlarged to reach {low}; then, if its longer side is over {high}, it is "
        f"scaled so that side is exactly {high}, and zeros pad it into a {H}×{W} square. "
        f"Here the scale is "
        f"**{insp.scale:.4f}**, so the picture becomes {y2 - y1}×{x2 - x1}. Before the "
        f"first layer the mean colour ({', '.join(f'{v:g}' for v in insp.mean_pixel)}) "
        f"is subtracted from every pixel.")
    shapes_line(f"original: {h}×{w}×3 uint8", f"network input: (1, {H}, {W}, 3) float32",
                f"window y1, x1, y2, x2 = ({y1}, {x1}, {y2}, {x2})")
    left, right = st.columns(2)
    left.image(insp.image, caption=f"Original: {label}, {w}×{h} px", width="stretch")
    s = to_display(insp)
    framed = insp_lib.draw_boxes(frame(insp), [[y1, x1, y2 - 1, x2 - 1]], [(255, 80, 80)],
                                 width=3, labels=["window"], scale=s)
    right.image(framed, caption=f"Network input: resized to {y2 - y1}×{x2 - x1}, "
                f"padded to {H}×{W}; the red box is the window", width="stretch")
    cols = st.columns([2, 2, 3, 2])
    cols[0].metric("Original size", f"{w}×{h}")
    cols[1].metric("Scale", f"{insp.scale:.4f}")
    cols[2].metric("Window (y1, x1, y2, x2)", f"{y1}, {x1}, {y2}, {x2}")
    cols[3].metric("Network input", f"{W}×{H}")


@st.fragment
def section_backbone(insp) -> None:
    st.header("2. Backbone and FPN", anchor="backbone")
    st.markdown(
        "A ResNet-101 turns the image into feature maps at four resolutions, C2 to C5: "
        "each step halves the size and adds channels. The Feature Pyramid Network "
        "then adds coarse, meaningful features back into the finer maps, giving P2 to P6 "
        "with 256 channels each (P6 is P5 subsampled, used only for proposals). "
        "Each picture shows one map's mean over its channels.")
    overlay = st.toggle("Show the maps over the image", value=True, key="hiw_overlay")
    base = frame(insp)
    for row in (("C2", "C3", "C4", "C5"), ("P2", "P3", "P4", "P5", "P6")):
        cols = st.columns(5)
        for col, name in zip(cols, row):
            mean = insp.feature_means[name]
            rows, columns, channels = insp.feature_shapes[name]
            picture = (insp_lib.heatmap_over(base, mean, alpha=0.65) if overlay
                       else insp_lib.enlarge(insp_lib.colormap(mean), 256))
            col.image(picture, width="stretch",
                      caption=f"{name}: {rows}×{columns}×{channels}, "
                              f"stride {insp_lib.FEATURE_STRIDES[name]}")
    shapes_line("stride = input pixels per map cell",
                "C2..C5 channels 256, 512, 1024, 2048; P2..P6 channels 256")


@st.fragment
def section_anchors(insp) -> None:
    st.header("3. Anchors", anchor="anchors")
    H, W = insp.molded_shape
    st.markdown(
        f"An anchor is a fixed reference box. Every cell of P2..P6 carries "
        f"{len(insp.anchor_ratios)} of them, one per width/height ratio "
        f"({', '.join(f'{r:g}' for r in insp.anchor_ratios)}), all of area scale²; the "
        f"scale grows with the level ({', '.join(map(str, insp.anchor_scales))} pixels). "
        f"The network never draws boxes from nothing: it scores and nudges these.")
    table = {"level": list(insp_lib.RPN_LEVELS),
             "stride": [insp_lib.FEATURE_STRIDES[n] for n in insp_lib.RPN_LEVELS],
             "grid": [f"{r}×{c}" for r, c in insp.level_shapes],
             "anchor scale (px)": list(insp.anchor_scales),
             "anchors": [f"{int(n):,}" for n in insp.anchors_per_level]}
    left, right = st.columns([3, 2])
    with right:
        st.dataframe(table, hide_index=True)
        st.metric("Anchors in total", f"{insp.anchor_count:,}")
        st.caption(f"Σ ⌈{H}/s⌉ × ⌈{W}/s⌉ × {len(insp.anchor_ratios)} over the strides s = "
                   + ", ".join(str(insp_lib.FEATURE_STRIDES[n]) for n in insp_lib.RPN_LEVELS)
                   + f"; tensor (1, {insp.anchor_count:,}, 4)")
        level = st.radio("Level", [2, 3, 4, 5, 6], index=2, horizontal=True,
                         format_func=lambda n: f"P{n}", key="hiw_anchor_level")
        x = st.slider("x (pixels of the network input)", 0, W - 1, W // 2, key="hiw_anchor_x")
        y = st.slider("y (pixels of the network input)", 0, H - 1, H // 2, key="hiw_anchor_y")
        every_level = st.toggle("Show this point's anchors on every level", key="hiw_all_levels")
    levels = [2, 3, 4, 5, 6] if every_level else [level]
    boxes, colours, labels = [], [], []
    for lv in levels:
        at = insp_lib.anchors_at(insp, lv, y, x)
        for i, box in enumerate(at["boxes"]):
            boxes.append(box)
            colours.append(LEVEL_COLOURS[lv] if every_level else RATIO_COLOURS[i])
            labels.append(f"P{lv}" if every_level and i == 1 else
                          ("" if every_level else f"ratio {insp.anchor_ratios[i]:g}"))
    at = insp_lib.anchors_at(insp, level, y, x)
    s = to_display(insp)
    picture = insp_lib.draw_boxes(insp_lib.dim(frame(insp), 0.3), boxes, colours, width=2,
                                  labels=labels, scale=s)
    cy, cx = at["center"]
    picture = insp_lib.draw_boxes(picture, [[cy - 3 / s, cx - 3 / s, cy + 3 / s, cx + 3 / s]],
                                  [WHITE], width=2, fill_alpha=1.0, scale=s)
    with left:
        st.image(picture, width="stretch",
                 caption=(f"P{level} cell (row {at['row']}, col {at['col']}), centre "
                          f"({cy}, {cx}) px: {len(at['ids'])} anchors of scale {at['scale']}"
                          + ("; colours = levels" if every_level else "; colours = ratios")))
    st.markdown("Objectness the RPN gave these anchors: " + ", ".join(
        f"ratio {r:g} → **{p:.3f}**" for r, p in zip(insp.anchor_ratios, at["objectness"])))


@st.fragment
def section_rpn(insp) -> None:
    st.header("4. Region Proposal Network", anchor="rpn")
    K = len(insp.pre_nms_scores)
    st.markdown(
        f"A small network slides over each pyramid level and gives every anchor two "
        f"numbers: how likely it covers an object (objectness) and four deltas that "
        f"shift and stretch it. The {K:,} anchors with the highest objectness are "
        f"refined by their deltas, clipped to the frame, and non-maximum suppression "
        f"(NMS) drops any box overlapping a better one by IoU > {insp.rpn_nms_threshold:g}.")
    shapes_line(f"objectness (1, {insp.anchor_count:,}, 2)",
                f"deltas (1, {insp.anchor_count:,}, 4)",
                f"proposals (1, {len(insp.proposals):,}, 4)")
    cols = st.columns(4)
    cols[0].metric("Anchors scored", f"{insp.anchor_count:,}")
    cols[1].metric("Best kept before NMS", f"{K:,}")
    cols[2].metric("Proposals after NMS", f"{insp.proposal_count:,}")
    cols[3].metric("Proposal slots", f"{len(insp.proposals):,}",
                   help="Unused slots are zero rows.")
    k = st.slider("Anchors with the highest objectness to draw", 5, 200, 30, step=5,
                  key="hiw_rpn_k")
    s = to_display(insp)
    base = insp_lib.dim(frame(insp), 0.35)
    anchors_px = insp.to_pixels(insp.anchors[insp.pre_nms_anchor_ids[:k]])
    refined_px = insp.to_pixels(insp.pre_nms_boxes[:k])
    kept = np.isin(np.arange(k), insp.nms_kept)
    left, middle, right = st.columns(3)
    left.image(insp_lib.draw_boxes(base, anchors_px, [(0, 200, 255)], width=1, scale=s),
               width="stretch", caption=f"Top {k} anchors, as they are")
    middle.image(insp_lib.draw_boxes(base, refined_px, [(255, 210, 0)], width=1, scale=s),
                 width="stretch", caption=f"The same {k} after the RPN's deltas")
    order = np.argsort(kept, kind="stable")   # suppressed first, kept on top
    right.image(insp_lib.draw_boxes(base, refined_px[order],
                                    [KEPT if kept[i] else SUPPRESSED for i in order],
                                    width=2, scale=s),
                width="stretch",
                caption=f"After NMS: {int(kept.sum())} kept (green), "
                        f"{int((~kept).sum())} suppressed (red)")
    st.markdown("**Objectness per level** (the best of the three anchors at each cell):")
    cols = st.columns(5)
    for col, (name, scores) in zip(cols, insp_lib.objectness_maps(insp).items()):
        col.image(insp_lib.enlarge(insp_lib.colormap(scores, "viridis", 0.0, 1.0), 256),
                  width="stretch", caption=f"{name}: max {scores.max():.3f}")


@st.fragment
def section_roi_align(insp) -> None:
    st.header("5. RoI Align", anchor="roi-align")
    H, W = insp.molded_shape
    st.markdown(
        "Each proposal is cut out of one pyramid level and resampled to a fixed grid "
        "(bilinear crop-and-resize): 7×7 for the classifier, 14×14 for the mask head. "
        "Big boxes read the coarse maps, small boxes the fine ones; a 224×224 box "
        "(ImageNet's picture size) reads P4.")
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
    f = insp_lib.level_formula(insp, index)
    st.markdown(
        f"Proposal #{index + 1}: h = {f['h']:.3f}, w = {f['w']:.3f} (fractions of the "
        f"frame) → √(h·w)·√(H·W) = {f['side_px']:.1f} px → {f['side_px']:.1f} / 224 = "
        f"{f['ratio']:.3f} → log₂ = {f['log2']:.3f} → round = {f['rounded']} → "
        f"4 + {f['rounded']} → clamp to 2..5 → **P{f['level']}**")
    s = to_display(insp)
    top = min(60, insp.proposal_count)
    picture = insp_lib.draw_boxes(
        insp_lib.dim(frame(insp), 0.35), insp.to_pixels(insp.proposals[:top]),
        [LEVEL_COLOURS[int(v)] for v in insp.proposal_levels[:top]], width=1, scale=s)
    box_px = insp.to_pixels(insp.proposals[index])
    picture = insp_lib.draw_boxes(picture, [box_px], [WHITE], width=4,
                                  labels=[f"#{index + 1} → P{f['level']}"], scale=s)
    patch = insp_lib.image_patch(insp, box_px)
    crop7 = insp.crops_classifier[choice]
    crop14 = insp.crops_mask[choice]
    cols = st.columns([2, 1, 1, 1])
    cols[0].image(picture, width="stretch",
                  caption=f"Top {top} proposals coloured by level "
                          "(P2 blue, P3 green, P4 yellow, P5 red); white: the chosen one")
    cols[1].image(insp_lib.resize_picture(patch, (196, 196)), width="stretch",
                  caption=f"The image under it ({patch.shape[0]}×{patch.shape[1]} px)")
    cols[2].image(insp_lib.enlarge(insp_lib.colormap(crop7.mean(axis=2)), 196),
                  width="stretch",
                  caption=f"Classifier crop {crop7.shape[0]}×{crop7.shape[1]}×{crop7.shape[2]} "
                          "(mean over channels)")
    cols[3].image(insp_lib.enlarge(insp_lib.colormap(crop14.mean(axis=2)), 196),
                  width="stretch",
                  caption=f"Mask crop {crop14.shape[0]}×{crop14.shape[1]}×{crop14.shape[2]} "
                          "(mean over channels)")
    shapes_line(f"classifier input ({len(insp.proposals)}, 7, 7, 256)",
                "mask-head input (detections, 14, 14, 256)")


@st.fragment
def section_heads(insp) -> None:
    st.header("6. Classifier and box heads", anchor="heads")
    R, C = insp.class_probs.shape
    st.markdown(
        f"Every proposal's 7×7×256 crop goes through two fully connected layers of "
        f"1024. One output is a probability for each of the {C} classes (background "
        f"included), the other four box deltas per class. The best class wins and its "
        f"deltas refine the box; background and scores below the threshold are "
        f"dropped, then NMS per class (IoU > {insp.detection_nms_threshold:g}) removes "
        f"duplicates and the best {insp.detection_max_instances} remain.")
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
    st.image(insp_lib.class_bars([insp.class_name(c) for c in order],
                                 insp.class_probs[pick][order]),
             caption=f"RoI #{pick + 1}: the six most likely of {C} classes (softmax)")
    left, right = st.columns(2)
    proposal_px = insp.to_pixels(insp.proposals[pick])
    refined_px = insp.to_pixels(insp.roi_refined_boxes[pick])
    name = insp.class_name(insp.roi_class_ids[pick])
    colours = [WHITE, (255, 120, 40)]
    picture = insp_lib.draw_boxes(insp_lib.dim(frame(insp), 0.3), [proposal_px, refined_px],
                                  colours, width=2, scale=s)
    region = insp_lib.zoom_region([proposal_px, refined_px], insp.molded_shape)
    close_up = insp_lib.zoom(insp.molded_image, region, [proposal_px, refined_px], colours,
                             labels=["", name])
    left.image(picture, width="stretch", caption="Where it is in the network input")
    right.image(close_up, width="stretch",
                caption=f"Close-up. White: the proposal {fmt_box(insp.proposals[pick])}; "
                        f"orange: refined by the {name} deltas {fmt_box(insp.roi_deltas[pick])}")

    st.subheader("From RoIs to detections")
    threshold = st.slider("Minimum class score", 0.0, 1.0,
                          float(insp.detection_min_confidence), step=0.05,
                          key="hiw_heads_threshold")
    chosen = insp_lib.detections_at(insp, threshold)
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
    base = insp_lib.dim(frame(insp), 0.35)
    left, right = st.columns(2)
    left.image(insp_lib.draw_boxes(base, insp.to_pixels(insp.roi_refined_boxes[candidates]),
                                   [SUPPRESSED], width=1, scale=s),
               width="stretch", caption=f"Before NMS: {len(candidates)} refined boxes")
    colours = palette(max(len(kept), 1))
    labels = [f"{insp.class_name(insp.roi_class_ids[i])} {insp.roi_scores[i]:.2f}" for i in kept]
    right.image(insp_lib.draw_boxes(base, insp.to_pixels(insp.roi_refined_boxes[kept]),
                                    colours[:len(kept)], width=2,
                                    labels=labels if len(kept) <= 25 else None, scale=s),
                width="stretch", caption=f"After NMS: {len(kept)} detections")


@st.fragment
def iou_explainer() -> None:
    """Part of section 6, in a fragment of its own: its sliders redraw only this."""
    st.subheader("IoU: how much two boxes overlap")
    st.markdown(
        "Intersection over union = the shared area divided by the area the two boxes "
        "cover together. NMS uses it to spot duplicates; in training a RoI counts as a "
        f"positive example of an object when its IoU with that object's true box is at "
        f"least {insp_lib.TRAINING_POSITIVE_IOU:g}, otherwise it is trained as background.")
    size = 400
    controls, picture_col = st.columns([1, 1])
    with controls:
        ax = st.slider("Box A: x", 0, 240, 60, key="hiw_iou_ax")
        ay = st.slider("Box A: y", 0, 200, 60, key="hiw_iou_ay")
        bx = st.slider("Box B: x", 0, 240, 140, key="hiw_iou_bx")
        by = st.slider("Box B: y", 0, 200, 110, key="hiw_iou_by")
    a = [ay, ax, ay + 180, ax + 160]
    b = [by, bx, by + 180, bx + 160]
    value = float(insp_lib.iou(a, [b])[0])
    overlap = insp_lib.intersection(a, b)
    canvas = np.full((size, size, 3), 250, np.uint8)
    canvas = insp_lib.draw_boxes(canvas, [a, b], [(40, 120, 220), (230, 110, 30)], width=3,
                                 labels=["A (true box)", "B (RoI)"], fill_alpha=0.12)
    if overlap is not None:
        canvas = insp_lib.draw_boxes(canvas, [overlap], [(120, 60, 160)],
                                     width=1, fill_alpha=0.45)
    picture_col.image(canvas, width=size, caption="Purple: the intersection")
    with controls:
        st.metric("IoU(A, B)", f"{value:.3f}")
        if value >= insp_lib.TRAINING_POSITIVE_IOU:
            st.success(f"IoU ≥ {insp_lib.TRAINING_POSITIVE_IOU:g}: in training, B is a "
                       "positive RoI for A's class, box and mask.")
        else:
            st.info(f"IoU < {insp_lib.TRAINING_POSITIVE_IOU:g}: in training, B is a "
                    "negative RoI (background).")


@st.fragment
def section_masks(insp) -> None:
    st.header("7. Mask head", anchor="masks")
    N = len(insp.class_ids)
    st.markdown(
        "For each detection, a 14×14×256 crop goes through four 3×3 convolutions and "
        "one 2× up-convolution, giving a 28×28 probability map for every class; only "
        "the detected class's map is used. It is stretched over the box and cut at 0.5.")
    shapes_line(f"mask head output (1, {insp.detection_max_instances}, 28, 28, "
                f"{insp.class_probs.shape[1]})",
                f"final masks ({insp.image.shape[0]}, {insp.image.shape[1]}, {N}) bool")
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
    pasted = insp_lib.paste_soft_mask(soft, insp.rois[pick], insp.image.shape)
    mask = pasted >= threshold
    result = {"rois": insp.rois[pick:pick + 1], "class_ids": insp.class_ids[pick:pick + 1],
              "scores": insp.scores[pick:pick + 1], "masks": mask[:, :, None]}
    overlay = draw_detections(insp.image, result, insp.class_names, colors=colours[pick:pick + 1])
    unlabelled = draw_detections(insp.image, result, insp.class_names, show_labels=False,
                                 colors=colours[pick:pick + 1])
    region = insp_lib.zoom_region(insp.rois[pick], insp.image.shape, margin=0.25)
    cols = st.columns(3)
    cols[0].image(insp_lib.enlarge(insp_lib.colormap(soft, "magma", 0.0, 1.0), 280),
                  width="stretch",
                  caption=f"28×28 soft mask, values {soft.min():.2f}–{soft.max():.2f}")
    cols[1].image(insp_lib.zoom(unlabelled, region, smooth=False), width="stretch",
                  caption=f"Stretched over the box {tuple(int(v) for v in insp.rois[pick])} "
                          f"and cut at {threshold:.2f} (close-up)")
    cols[2].image(overlay, width="stretch", caption="In the whole image")
    left, right, _ = st.columns(3)
    left.metric("Mask pixels at this cut", f"{int(mask.sum()):,}")
    right.metric("Engine's mask (0.5)", f"{int(insp.masks[:, :, pick].sum()):,}")
    st.markdown("**Every detection's soft mask:**")
    shown = min(N, 12)
    cols = st.columns(6)
    for i in range(shown):
        heat = insp_lib.colormap(insp.soft_masks[i], "magma", 0.0, 1.0)
        cols[i % 6].image(insp_lib.enlarge(heat, 112),
                          width="stretch",
                          caption=f"#{i + 1} {insp.class_name(insp.class_ids[i])}")
    if N > shown:
        st.caption(f"…and {N - shown} more.")


# -------------------------------------------------------------------- page

st.title("How Mask R-CNN works")
st.markdown(
    "One photo, one pass through the network, seven stages. Everything below is "
    "computed from this image with the loaded weights: the numbers, the boxes and "
    "the heat maps are what the model really did.")

weights_path = str(default_weights_path())
try:
    check_weights_file(weights_path)
except WeightsFileError as error:
    st.error(str(error))
    st.stop()

label, image = choose_image()
with st.spinner("Running the network once on this image and keeping every stage…"):
    try:
        inspection = run_inspection(image_key(image), weights_path, image)
    except Exception as error:  # noqa: BLE001 - say what failed instead of a traceback
        st.error(f"The model could not run on this image: {error}. Check the weights file "
                 f"({weights_path}) and reload the page.")
        st.stop()
st.caption(f"Network run: {inspection.seconds.get('network', 0.0):.1f} s on "
           f"{load_model(weights_path).device}; everything after it is redrawn from "
           "the saved results.")

section_input(inspection, label)
section_backbone(inspection)
section_anchors(inspection)
section_rpn(inspection)
section_roi_align(inspection)
section_heads(inspection)
iou_explainer()
section_masks(inspection)
