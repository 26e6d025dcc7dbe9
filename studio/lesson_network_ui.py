"""The teaching page's first four sections: input, backbone and FPN, anchors, RPN.

Every picture is drawn from one :class:`mrcnn.intermediates.Intermediates` (one
run of the network, cached); each section with controls is an ``st.fragment``,
so moving a control reruns only that section.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from mrcnn import explain
from mrcnn.draw import figures as fig
from studio import alt_text

DISPLAY = 512            # side of the molded-frame pictures, pixels
LEVEL_COLOURS = {2: (66, 135, 245), 3: (46, 204, 113), 4: (241, 196, 15),
                 5: (231, 76, 60), 6: (155, 89, 182)}
RATIO_COLOURS = [(0, 200, 255), (255, 210, 0), (255, 70, 160)]
KEPT, SUPPRESSED, WHITE = (60, 220, 90), (235, 70, 60), (255, 255, 255)


def frame(insp) -> np.ndarray:
    """The network input at display size."""
    return fig.resize_picture(insp.molded_image, (DISPLAY, DISPLAY))


def to_display(insp) -> float:
    """Factor from molded pixels to display pixels."""
    return DISPLAY / insp.molded_shape[0]


def fmt_box(box) -> str:
    return "(" + ", ".join(f"{float(v):.3f}" for v in box) + ")"


def shapes_line(*parts) -> None:
    st.caption(" · ".join(parts))


@dataclass(frozen=True)
class NetworkSizes:
    """The sizes the lesson states, as this run's network has them: read from its
    tensors, and from the config values the record keeps where no tensor shows one."""
    backbone: str              # "ResNet-101": BACKBONE
    stage_channels: tuple      # C2..C5 channels (the backbone's stage widths)
    pyramid_channels: int      # P2..P6 channels: TOP_DOWN_PYRAMID_SIZE
    pool: tuple                # the classifier's crop (h, w): POOL_SIZE
    mask_pool: tuple           # the mask head's crop (h, w): MASK_POOL_SIZE
    mask: tuple                # the mask head's output (h, w): MASK_SHAPE
    fc: int                    # width of the classifier's FC layers: FPN_CLASSIF_FC_LAYERS_SIZE
    classes: int               # NUM_CLASSES, background included


def sizes(insp) -> NetworkSizes:
    name = insp.backbone
    return NetworkSizes(
        backbone=f"ResNet-{name[len('resnet'):]}" if name.startswith("resnet") else name,
        stage_channels=tuple(insp.feature_shapes[c][2] for c in ("C2", "C3", "C4", "C5")),
        pyramid_channels=insp.feature_shapes["P2"][2],
        pool=tuple(insp.crops_classifier.shape[1:3]),
        mask_pool=tuple(insp.crops_mask.shape[1:3]),
        mask=tuple(insp.soft_masks.shape[1:3]),
        fc=insp.classifier_fc_size, classes=insp.class_probs.shape[1])


def by(*dims) -> str:
    """Dimensions as the page writes them: by((7, 7), 256) -> "7×7×256"."""
    flat = [d for dim in dims for d in (dim if isinstance(dim, tuple) else (dim,))]
    return "×".join(str(int(d)) for d in flat)


def backbone_text(insp) -> str:
    z = sizes(insp)
    return (f"A {z.backbone} turns the image into feature maps at four resolutions, C2 to "
            "C5: each step halves the size and adds channels. The Feature Pyramid Network "
            "then adds coarse, meaningful features back into the finer maps, giving P2 to "
            f"P6 with {z.pyramid_channels} channels each (P6 is P5 subsampled, used only for "
            "proposals). Each picture shows one map's mean over its channels.")


def backbone_shapes(insp) -> list[str]:
    z = sizes(insp)
    return ["stride = input pixels per map cell",
            f"C2..C5 channels {', '.join(str(c) for c in z.stage_channels)}; "
            f"P2..P6 channels {z.pyramid_channels}"]


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
    left.image(insp.image, caption=f"Original: {label}, {w}×{h} px", width="stretch",
               alt=alt_text.photo(f"The original photo, {label}", insp.image.shape))
    s = to_display(insp)
    framed = fig.draw_boxes(frame(insp), [[y1, x1, y2 - 1, x2 - 1]], [(255, 80, 80)],
                                 width=3, labels=["window"], scale=s)
    right.image(framed, caption=f"Network input: resized to {y2 - y1}×{x2 - x1}, "
                f"padded to {H}×{W}; the red box is the window", width="stretch",
                alt=f"The network input, {W}x{H} px: the photo resized to {x2 - x1}x"
                    f"{y2 - y1} px with black padding around it, and a red box labelled "
                    "window around the photo")
    cols = st.columns([2, 2, 3, 2])
    cols[0].metric("Original size", f"{w}×{h}")
    cols[1].metric("Scale", f"{insp.scale:.4f}")
    cols[2].metric("Window (y1, x1, y2, x2)", f"{y1}, {x1}, {y2}, {x2}")
    cols[3].metric("Network input", f"{W}×{H}")


@st.fragment
def section_backbone(insp) -> None:
    st.header("2. Backbone and FPN", anchor="backbone")
    st.markdown(backbone_text(insp))
    overlay = st.toggle("Show the maps over the image", value=True, key="hiw_overlay")
    base = frame(insp)
    for row in (("C2", "C3", "C4", "C5"), ("P2", "P3", "P4", "P5", "P6")):
        cols = st.columns(5)
        for col, name in zip(cols, row):
            mean = insp.feature_means[name]
            rows, columns, channels = insp.feature_shapes[name]
            picture = (fig.heatmap_over(base, mean, alpha=0.65) if overlay
                       else fig.enlarge(fig.colormap(mean), 256))
            col.image(picture, width="stretch",
                      caption=f"{name}: {rows}×{columns}×{channels}, "
                              f"stride {explain.FEATURE_STRIDES[name]}",
                      alt=alt_text.feature_map(name, (rows, columns, channels), overlay))
    shapes_line(*backbone_shapes(insp))


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
    table = {"level": list(explain.RPN_LEVELS),
             "stride": [explain.FEATURE_STRIDES[n] for n in explain.RPN_LEVELS],
             "grid": [f"{r}×{c}" for r, c in insp.level_shapes],
             "anchor scale (px)": list(insp.anchor_scales),
             "anchors": [f"{int(n):,}" for n in insp.anchors_per_level]}
    left, right = st.columns([3, 2])
    with right:
        st.dataframe(table, hide_index=True)
        st.metric("Anchors in total", f"{insp.anchor_count:,}")
        st.caption(f"Σ ⌈{H}/s⌉ × ⌈{W}/s⌉ × {len(insp.anchor_ratios)} over the strides s = "
                   + ", ".join(str(explain.FEATURE_STRIDES[n]) for n in explain.RPN_LEVELS)
                   + f"; tensor (1, {insp.anchor_count:,}, 4)")
        level = st.radio("Level", [2, 3, 4, 5, 6], index=2, horizontal=True,
                         format_func=lambda n: f"P{n}", key="hiw_anchor_level")
        x = st.slider("x (pixels of the network input)", 0, W - 1, W // 2, key="hiw_anchor_x")
        y = st.slider("y (pixels of the network input)", 0, H - 1, H // 2, key="hiw_anchor_y")
        every_level = st.toggle("Show this point's anchors on every level", key="hiw_all_levels")
    levels = [2, 3, 4, 5, 6] if every_level else [level]
    boxes, colours, labels = [], [], []
    for lv in levels:
        at = explain.anchors_at(insp, lv, y, x)
        for i, box in enumerate(at["boxes"]):
            boxes.append(box)
            colours.append(LEVEL_COLOURS[lv] if every_level else RATIO_COLOURS[i])
            labels.append(f"P{lv}" if every_level and i == 1 else
                          ("" if every_level else f"ratio {insp.anchor_ratios[i]:g}"))
    at = explain.anchors_at(insp, level, y, x)
    s = to_display(insp)
    picture = fig.draw_boxes(fig.dim(frame(insp), 0.3), boxes, colours, width=2,
                                  labels=labels, scale=s)
    cy, cx = at["center"]
    picture = fig.draw_boxes(picture, [[cy - 3 / s, cx - 3 / s, cy + 3 / s, cx + 3 / s]],
                                  [WHITE], width=2, fill_alpha=1.0, scale=s)
    with left:
        st.image(picture, width="stretch",
                 alt=alt_text.boxes_figure(
                     f"Anchors at point ({y}, {x}) of the network input", len(boxes),
                     (DISPLAY, DISPLAY),
                     "one colour per level" if every_level else "one colour per ratio"),
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
    base = fig.dim(frame(insp), 0.35)
    anchors_px = insp.to_pixels(insp.anchors[insp.pre_nms_anchor_ids[:k]])
    refined_px = insp.to_pixels(insp.pre_nms_boxes[:k])
    kept = np.isin(np.arange(k), insp.nms_kept)
    left, middle, right = st.columns(3)
    shape = (DISPLAY, DISPLAY)
    left.image(fig.draw_boxes(base, anchors_px, [(0, 200, 255)], width=1, scale=s),
               width="stretch", caption=f"Top {k} anchors, as they are",
               alt=alt_text.boxes_figure(f"The {k} anchors with the highest objectness", k,
                                         shape))
    middle.image(fig.draw_boxes(base, refined_px, [(255, 210, 0)], width=1, scale=s),
                 width="stretch", caption=f"The same {k} after the RPN's deltas",
                 alt=alt_text.boxes_figure(f"The same {k} anchors moved by the RPN's deltas",
                                           k, shape))
    # Kept boxes are thick and green, suppressed ones thin and red: not by colour alone.
    suppressed = fig.draw_boxes(base, refined_px[~kept], [SUPPRESSED], width=1, scale=s)
    right.image(fig.draw_boxes(suppressed, refined_px[kept], [KEPT], width=3, scale=s),
                width="stretch",
                caption=f"After NMS: {int(kept.sum())} kept (thick, green), "
                        f"{int((~kept).sum())} suppressed (thin, red)",
                alt=alt_text.boxes_figure(
                    "The same boxes after non-maximum suppression", k, shape,
                    f"{int(kept.sum())} kept, drawn thick, {int((~kept).sum())} suppressed, "
                    "drawn thin"))
    st.markdown(f"**Objectness per level** (the best of the {len(insp.anchor_ratios)} "
                "anchors at each cell):")
    cols = st.columns(5)
    for col, (name, scores) in zip(cols, explain.objectness_maps(insp).items()):
        col.image(fig.enlarge(fig.colormap(scores, "viridis", 0.0, 1.0), 256),
                  width="stretch", caption=f"{name}: max {scores.max():.3f}",
                  alt=alt_text.heat_map(f"Objectness on {name}, the best anchor of each cell",
                                        scores.shape, float(scores.min()),
                                        float(scores.max())))
