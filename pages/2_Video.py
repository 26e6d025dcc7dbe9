"""Video: a clip in, every object segmented and tracked under one id, a clip and
annotations out.

Every sampled frame goes through the app's one fair queue as a job of this visitor
(``studio.video_run``), so a clip never holds others back by more than a frame per turn.
The confidence slider afterwards re-tracks and redraws the kept answers; it never runs
the network again (``studio.video_ui``).
"""
from __future__ import annotations

import streamlit as st

from studio.accessibility_ui import accessible_page
from studio.public import guarded
from studio.services import ready_services
from studio.session_keys import KEY_VIDEO_JOB
from studio.video_ui import (
    choose_clip,
    clip_controls,
    confidence_slider,
    progress_panel,
    results_panel,
    start_analysis,
)

st.set_page_config(page_title="Video · Mask R-CNN Studio", page_icon=":movie_camera:",
                   layout="wide")


def main() -> None:
    accessible_page()
    st.title("Video")
    st.caption("Upload a short clip: every object is segmented in each sampled frame and "
               "keeps one id and colour from frame to frame. Take the clip back, and the "
               "tracks as MOTChallenge CSV or COCO JSON for your labelling tool.")
    services = ready_services(explain_missing_weights=False)
    if services is None:
        return
    with st.sidebar:
        st.header("Display")
        min_score = confidence_slider()
        mask_alpha = st.slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key="mask_alpha")
    clip = choose_clip(services)
    job = st.session_state.get(KEY_VIDEO_JOB)
    if clip is not None:
        plan = clip_controls(services, clip)
        if plan.problem:
            st.error(plan.problem, icon=":material/timer_off:")
        busy = job is not None and job.running
        if st.button(f"Analyse {plan.frames} frames", type="primary", key="video_start",
                     disabled=bool(plan.problem) or busy, icon=":material/play_arrow:"):
            job = start_analysis(services, clip, plan, min_score)
    if job is None:
        return
    st.divider()
    if job.running:
        progress_panel(job)
    else:
        results_panel(job, min_score, mask_alpha)


guarded(main)
