"""Mask R-CNN Studio: upload a photo, see every object segmented, take the pieces away.

The page only lays out what ``studio/`` provides: inputs (``studio.inputs_ui``),
results (``studio.results_ui``), Run all (``studio.run_all_ui``), and the model,
queue and results shared by every visitor of this server (``studio.services``).

Run it with ``streamlit run app.py``. ``MRCNN_WEIGHTS`` names another weights
file than ``weights/mask_rcnn_coco.h5``, ``MRCNN_CONFIG`` another model config
(``module:Class``), ``MRCNN_SERVE_URL`` a Ray Serve deployment to use instead of
a model in this process. ``MRCNN_CONFIG``, ``MRCNN_SERVE_URL`` and the limits may also
be set in Streamlit secrets; ``MRCNN_WEIGHTS`` is read from the environment only.
"""
from __future__ import annotations

import streamlit as st

from studio.accessibility_ui import accessible_page
from studio.fair_queue import QueueFull
from studio.inputs_ui import choose, input_area, load_picture
from studio.public import guarded, public_mode, report_error
from studio.results_ui import show_results, sidebar_settings, stored_run
from studio.run_all_ui import run_all_section
from studio.services import ready_services
from studio.session_keys import KEY_IMAGE, KEY_IMAGE_DIGEST, KEY_IMAGE_NAME
from studio.settings import service_settings

PAGE_STYLE = """<style>
.st-key-samples [data-testid='stImage'] img {aspect-ratio: 1 / 1; object-fit: cover;
  border-radius: 8px;}
.st-key-samples button {padding-left: 0.25rem; padding-right: 0.25rem;}
.st-key-samples button p {font-size: 0.85rem;}
.st-key-run_details [data-testid='stMetricValue'] {font-size: 1.6rem;}
.st-key-gallery [data-testid='stImage'] img {border-radius: 6px; width: 100% !important;
  height: 150px; object-fit: scale-down;
  background: repeating-conic-gradient(#e8ebf0 0 25%, #ffffff 0 50%) 0 0 / 16px 16px;}
</style>"""

st.set_page_config(page_title="Mask R-CNN Studio", page_icon="🎭", layout="wide")


@st.cache_data(ttl=30, show_spinner=False)
def service_status(url: str, _backend) -> dict:
    """The service's replicas and device (asked at most every 30 s, not per rerun)."""
    return _backend.describe()


def main() -> None:
    st.html(PAGE_STYLE)
    accessible_page()
    st.title("Mask R-CNN Studio")
    st.caption("Upload a photo: Mask R-CNN (ResNet FPN) outlines every object it recognises. "
               "Tune what you see in the sidebar and take the pieces away as PNG, ZIP or "
               "COCO JSON.")
    services = ready_services()
    if services is None:
        return
    settings, view = sidebar_settings(services)
    url, _ = service_settings()
    if url:
        service = service_status(url, services.backend)
        where = ("a Ray Serve deployment" if public_mode()
                 else f"the Ray Serve deployment at **{url}**")
        st.caption(f"Served by {where} · replicas: "
                   f"**{service.get('replicas') or '?'}** · device: **{service.get('device')}**"
                   + (f" · {service['status']}" if service.get("status") else ""))

    pictures = input_area(services)
    if not pictures:
        st.info("Upload a photo, take one with your camera, or pick a sample to start.",
                icon=":material/add_photo_alternate:")
        return
    st.divider()
    if len(pictures) > 1:
        pick_col, all_col = st.columns([3, 2], gap="large")
        with pick_col:
            picture = choose(pictures)
        with all_col:
            run_all_section(services, pictures, settings, view)
    else:
        picture = choose(pictures)
    image, original_size = load_picture(picture, services)
    st.session_state[KEY_IMAGE] = image
    st.session_state[KEY_IMAGE_NAME] = picture.name
    st.session_state[KEY_IMAGE_DIGEST] = picture.digest
    try:
        run = stored_run(services, picture.digest, image, settings,
                         what=f"your photo ({picture.name})")
    except QueueFull as exc:
        st.warning(str(exc), icon=":material/production_quantity_limits:")
        return
    except Exception:  # noqa: BLE001 - the page must survive a failed run
        report_error(f"running the model on {picture.name}")
        return
    show_results(picture.name, image, original_size, run, view, services.class_names,
                 picture.digest)
    services.store.shrink()       # the cut-outs just made count against the budget


guarded(main)
