"""The teaching page's "What if…" section: change one setting, see what changes.

The detection NMS and the mask threshold are numpy on the run's cached results
(:mod:`mrcnn.what_if`); the proposal settings rerun the proposal layer and the
heads on the run's cached feature maps through the shared queue (job kind
``heads_rerun``), never the backbone. Objects gained and lost against the run
above are marked in every picture.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from mrcnn.draw import figures as fig
from mrcnn.draw.overlay import draw_detections, palette
from mrcnn.what_if import SAME_OBJECT_IOU, masks_what_if, match_objects, nms_what_if
from studio import alt_text
from studio.fair_queue import QueueFull
from studio.jobs import heads_rerun_job
from studio.lesson_network_ui import WHITE, by, frame, sizes, to_display
from studio.public import report_error
from studio.queue_ui import run_through_queue

GAINED, LOST = (40, 210, 90), (235, 60, 50)
STRIPE = 4                 # px: the width of the stripes over lost mask pixels
PROPOSAL_COUNTS = (50, 100, 200, 300, 500, 1000, 1500, 2000)


def section_what_if(insp, services, digest: str) -> None:
    st.header("9. What if…", anchor="what-if")
    st.markdown(
        "Change one setting of the run above and see what the network would have found. "
        "Nothing here runs the backbone again: NMS and the mask threshold are redone on "
        "the saved results, and the proposal settings run only the proposal layer and "
        "the heads again on the saved feature maps. **Green** marks objects gained, "
        "**red** objects lost, against the run above.")
    what_if_nms(insp)
    what_if_proposals(insp, services, digest)
    what_if_masks(insp)


def _label(insp, roi) -> str:
    return f"{insp.class_name(insp.roi_class_ids[roi])} {insp.roi_scores[roi]:.2f}"


@st.fragment
def what_if_nms(insp) -> None:
    st.subheader("Detection NMS")
    left, right = st.columns([1, 2])
    with left:
        threshold = st.slider("Detection NMS IoU threshold", 0.05, 0.95,
                              float(insp.detection_nms_threshold), step=0.05,
                              key="hiw_whatif_nms")
        st.caption("Two boxes overlapping by more than this IoU count as the same object, "
                   "and only the higher-scoring one is kept.")
        mode = st.radio("NMS groups", ["per class", "all classes together"],
                        key="hiw_whatif_nms_mode", horizontal=True)
        st.caption("Per class (the network's rule) compares only boxes of the same class; "
                   "all classes together lets a box also remove overlapping boxes of "
                   "other classes.")
        change = nms_what_if(insp, threshold, class_agnostic=mode != "per class")
        st.metric("Detections with this NMS", f"{len(change.kept):,}",
                  delta=f"{len(change.kept) - len(insp.detection_rois):+,}",
                  delta_color="off")
        st.markdown(f"Gained **{len(change.gained)}**, lost **{len(change.lost)}** "
                    f"against the run above ({len(insp.detection_rois)} detections).")
    s = to_display(insp)
    same = change.kept[np.isin(change.kept, insp.detection_rois)]
    picture = fig.dim(frame(insp), 0.35)
    for rois, colour, width, sign in ((same, WHITE, 1, ""), (change.lost, LOST, 3, "- "),
                                      (change.gained, GAINED, 3, "+ ")):
        if len(rois):
            labels = [sign + _label(insp, r) for r in rois] if sign else None
            picture = fig.draw_boxes(picture, insp.to_pixels(insp.roi_refined_boxes[rois]),
                                     [colour], width=width, labels=labels, scale=s)
    right.image(picture, width="stretch",
                caption="White: kept in both · green, labelled +: gained · red, labelled −: "
                        "lost (boxes in the network input; the mask head ran only for the "
                        "run's own detections)",
                alt=alt_text.boxes_figure(
                    "Detections with this NMS on the network input", len(change.kept),
                    picture.shape, f"{len(same)} kept in both, thin and white; "
                    f"{len(change.gained)} gained, labelled with a plus; {len(change.lost)} "
                    "lost, labelled with a minus"))


@st.fragment
def what_if_proposals(insp, services, digest: str) -> None:
    st.subheader("Proposals")
    counts = sorted(set(PROPOSAL_COUNTS) | {insp.proposal_slots})
    with st.form("hiw_whatif_proposals_form", border=False):
        left, right = st.columns(2)
        with left:
            rpn_threshold = st.slider("RPN NMS IoU threshold", 0.3, 0.95,
                                      float(insp.rpn_nms_threshold), step=0.05,
                                      key="hiw_whatif_rpn_nms")
            st.caption("Among the anchors' refined boxes, one overlapping a better one by "
                       "more than this IoU is dropped before the heads see it.")
        with right:
            count = st.select_slider("Proposals that reach the heads", counts,
                                     value=insp.proposal_slots, key="hiw_whatif_proposals")
            st.caption("The heads classify at most this many of the best proposals; "
                       "fewer means faster but objects can be missed.")
        st.form_submit_button("Run the proposal layer and the heads again",
                              icon=":material/replay:", key="hiw_whatif_run")
    if (abs(rpn_threshold - insp.rpn_nms_threshold) < 1e-9
            and count == insp.proposal_slots):
        st.caption(f"These are the run's own settings ({insp.proposal_count:,} proposals, "
                   f"{len(insp.class_ids)} detections): change one and press the button.")
        return
    try:
        rerun = run_through_queue(
            services, heads_rerun_job(services, digest, insp, rpn_threshold, count),
            slot="lesson_what_if", what="the proposal layer and heads' rerun", pin=False)
    except QueueFull as error:
        st.warning(str(error))
        return
    except Exception:  # noqa: BLE001 - one sentence with an id instead of a traceback
        report_error("running the proposal layer and heads again")
        return
    _show_rerun(insp, rerun)


def _show_rerun(insp, rerun) -> None:
    _, gained, lost = match_objects(insp.rois, insp.class_ids, rerun.rois, rerun.class_ids)
    cols = st.columns(4)
    cols[0].metric("Proposals after the rerun", f"{rerun.proposal_count:,}",
                   delta=f"{rerun.proposal_count - insp.proposal_count:+,}", delta_color="off")
    cols[1].metric("Detections after the rerun", f"{len(rerun.class_ids):,}",
                   delta=f"{len(rerun.class_ids) - len(insp.class_ids):+,}", delta_color="off")
    cols[2].metric("Objects gained", f"{len(gained):,}")
    cols[3].metric("Objects lost", f"{len(lost):,}")
    picture = draw_detections(insp.image, rerun.result, insp.class_names,
                              colors=palette(max(len(rerun.class_ids), 1))[:len(rerun.class_ids)],
                              show_labels=False)
    for boxes, colour, names in (
            (insp.rois[lost], LOST, [f"- {insp.class_name(c)}" for c in insp.class_ids[lost]]),
            (rerun.rois[gained], GAINED,
             [f"+ {insp.class_name(c)}" for c in rerun.class_ids[gained]])):
        if len(boxes):
            picture = fig.draw_boxes(picture, boxes, [colour], width=3, labels=names)
    st.image(picture, width="stretch",
             alt=alt_text.annotated_photo(
                 f"The photo after the rerun, {len(gained)} objects gained (labelled with a "
                 f"plus, green), {len(lost)} lost (labelled with a minus, red)",
                 [insp.class_name(c) for c in rerun.class_ids], rerun.scores),
             caption=f"Detections with RPN NMS at {rerun.rpn_nms_threshold:g} and "
                     f"{rerun.proposal_slots:,} proposal slots ({rerun.seconds:.1f} s, "
                     "backbone not rerun). An object counts as the same when its class "
                     f"matches and the boxes overlap by IoU ≥ {SAME_OBJECT_IOU:g}.")


def mask_cut_caption(insp) -> str:
    return (f"A pixel belongs to the object when its stretched {by(sizes(insp).mask)} mask "
            "probability is at least this value (the network uses 0.5).")


@st.fragment
def what_if_masks(insp) -> None:
    st.subheader("Mask threshold")
    n = len(insp.class_ids)
    left, right = st.columns([1, 2])
    with left:
        threshold = st.slider("Mask threshold for every object", 0.05, 0.95, 0.5, step=0.05,
                              key="hiw_whatif_mask")
        st.caption(mask_cut_caption(insp))
    if n == 0:
        right.info("No object passed the threshold in this image, so there is no mask to cut.")
        return
    change = masks_what_if(insp, threshold)
    with left:
        st.metric("Pixels gained", f"{int(change.gained_pixels.sum()):,}")
        st.metric("Pixels lost", f"{int(change.lost_pixels.sum()):,}")
        if len(change.vanished):
            names = [f"#{i + 1} {insp.class_name(insp.class_ids[i])}" for i in change.vanished]
            more = len(names) - 8
            st.markdown(f"Masks that vanish ({len(names)}): " + ", ".join(names[:8])
                        + (f" and {more} more" if more > 0 else ""))
    picture = np.array(insp.image, np.uint8)
    colours = palette(n)
    for i in range(n):
        picture = fig.tint(picture, change.masks[:, :, i] & insp.masks[:, :, i], colours[i])
    gained = (change.masks & ~insp.masks).any(axis=2)
    lost = (insp.masks & ~change.masks).any(axis=2)
    picture = fig.tint(picture, gained, GAINED, 0.8)
    # Lost pixels are striped as well as red, so they differ from gained ones in form.
    rows, columns = np.indices(lost.shape)
    picture = fig.tint(picture, lost & ((rows + columns) // STRIPE % 2 == 0), LOST, 0.9)
    right.image(picture, width="stretch",
                caption=f"Cut at {threshold:.2f}: object colours where both cuts agree; "
                        "solid green: pixels gained (+), red stripes: pixels lost (−) "
                        "against 0.5",
                alt=f"The photo with its {n} masks cut at {threshold:.2f}: "
                    f"{int(gained.sum()):,} pixels gained, shaded solid, and "
                    f"{int(lost.sum()):,} lost, striped, against the cut at 0.5")
