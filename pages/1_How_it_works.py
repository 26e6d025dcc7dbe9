"""How it works: one real run of Mask R-CNN on one image, stage by stage.

Every number and picture comes from ``mrcnn.intermediates.compute_intermediates``
(the loaded weights, the engine's own computation): the network runs once per
image, through the same fair queue as the main page (``studio.queue_ui``), and the
result is kept with the main page's results; every control afterwards only
redraws pictures (``studio.lesson_network_ui``, ``studio.lesson_heads_ui``,
``studio.lesson_follow_ui``), except the "What if" section's proposal settings,
which rerun only the proposal layer and the heads on the saved feature maps
(``studio.lesson_what_if_ui``).
"""
from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from mrcnn.pixels import to_rgb_array
from studio.accessibility_ui import accessible_page
from studio.fair_queue import QueueFull
from studio.jobs import intermediates_job, sample_digest
from studio.lesson_follow_ui import section_follow
from studio.lesson_heads_ui import iou_explainer, section_heads, section_masks, section_roi_align
from studio.lesson_network_ui import section_anchors, section_backbone, section_input, section_rpn
from studio.lesson_what_if_ui import section_what_if
from studio.public import guarded, report_error
from studio.queue_ui import run_through_queue
from studio.sample_sets import samples_for
from studio.services import ready_services
from studio.session_keys import KEY_IMAGE, KEY_IMAGE_DIGEST, KEY_IMAGE_NAME

st.set_page_config(page_title="How it works · Mask R-CNN Studio", page_icon=":mag:",
                   layout="wide")


@st.cache_data(show_spinner=False)
def load_sample(config_path: str, name: str, _services) -> np.ndarray:
    return to_rgb_array(samples_for(_services.config)[name]())


def choose_image(services) -> tuple[str, np.ndarray, str]:
    """(label, image, digest): the main page's picture if there is one, else a sample."""
    options = {}
    chosen = st.session_state.get(KEY_IMAGE)
    if chosen is not None:
        name = st.session_state.get(KEY_IMAGE_NAME) or "your image"
        options[f"{name} (chosen on the main page)"] = None
    samples = samples_for(services.config)
    for name, sample in samples.items():
        options[sample.title] = name
    label = st.selectbox("Image to look inside", list(options), key="hiw_image")
    if options[label] is None:
        image = np.asarray(chosen)
        digest = st.session_state.get(KEY_IMAGE_DIGEST) or hashlib.sha256(
            np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()
        return label, image, digest
    name = options[label]
    return label, load_sample(services.config_path, name, services), \
        sample_digest(services.config_path, name)


def page() -> None:
    accessible_page()
    st.title("How Mask R-CNN works")
    st.markdown(
        "One photo, one pass through the network, seven stages, then one object followed "
        "through them and a few settings changed. Everything below is "
        "computed from this image with the loaded weights: the numbers, the boxes and "
        "the heat maps are what the model really did.")

    services = ready_services(need_local_model=True, explain_missing_weights=False)
    if services is None:
        st.stop()
    label, image, digest = choose_image(services)
    try:
        record = run_through_queue(services, intermediates_job(services, digest, image),
                                   slot="lesson", what="this image's step-by-step run")
    except QueueFull as error:
        st.warning(str(error))
        st.stop()
    except Exception:  # noqa: BLE001 - say what failed instead of a traceback
        report_error("running this image's step-by-step run")
        st.stop()
    st.caption(f"Network run: {record.seconds.get('network', 0.0):.1f} s on "
               f"{services.local_model().device}; everything after it is redrawn from "
               "the saved results.")

    section_input(record, label)
    section_backbone(record)
    section_anchors(record)
    section_rpn(record)
    section_roi_align(record)
    section_heads(record)
    iou_explainer()
    section_masks(record)
    section_follow(record, digest)
    section_what_if(record, services, digest)


guarded(page)
