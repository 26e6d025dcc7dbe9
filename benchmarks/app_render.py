"""How long the page takes to re-render after a confidence-slider move.

A slider move never runs the network: the page filters the cached low-threshold
run and redraws. This script measures that work for a 1024-px photo with the
detections of the full COCO model (generated weights in the published layout,
or the real file via ``--weights``), and prints one JSON object.

Measurements, each the median of ``--repeats`` runs per threshold:

- ``steps``: the module functions a slider move needs, ``filter_detections`` +
  ``draw_detections`` + ``mask_areas`` + every gallery cut-out (at most 40)
  encoded as PNG, on the masks as ``detect()`` returns them (H, W, N; one
  object's pixels are N bytes apart) and as the page keeps them (one
  contiguous plane per object); plus ``cache_read_ms``, the unpickling
  ``st.cache_data`` would add to every slider move.
- ``page``: the whole script rerun of ``app.py`` under ``AppTest`` after a
  slider move (what the server does before the browser has the new page), and
  the time from upload to result. Skipped with ``--no-page``.
- ``memory`` (with ``--memory N``): the process's resident memory after each of
  N uploads of different photos in one session (network at 512 px).

Usage::

    python benchmarks/app_render.py [--weights PATH] [--repeats 7] [--no-page] [--memory 12]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from mrcnn.classes import COCO_CLASS_NAMES  # noqa: E402
from mrcnn.render import cutout, draw_detections, palette, to_png_bytes  # noqa: E402
from mrcnn.results import filter_detections, mask_areas, num_detections  # noqa: E402

SIDE = 1024
LOW_THRESHOLD = 0.1
THRESHOLDS = (0.5, 0.9, 0.97)
GALLERY_LIMIT = 40


def photo_1024() -> np.ndarray:
    """scikit-image's astronaut photo scaled to 1024 x 1024."""
    import skimage.data
    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((SIDE, SIDE),
                                                                        Image.Resampling.LANCZOS))


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 1)


def plane_major(result: dict) -> dict:
    """The same result with its masks stored one contiguous plane per object."""
    planes = np.ascontiguousarray(np.moveaxis(result["masks"], -1, 0))
    return {**result, "masks": np.moveaxis(planes, 0, -1)}


def render_once(image, result, threshold):
    shown = filter_detections(result, threshold)
    count = num_detections(shown)
    draw_detections(image, shown, COCO_CLASS_NAMES, colors=palette(count))
    mask_areas(shown)
    for i in range(min(count, GALLERY_LIMIT)):
        to_png_bytes(cutout(image, shown["masks"][..., i]))


def step_times(image, result, threshold, repeats):
    shown = filter_detections(result, threshold)
    count = num_detections(shown)
    colours = palette(count)
    return {
        "threshold": threshold,
        "objects": count,
        "filter_ms": median_ms(lambda: filter_detections(result, threshold), repeats),
        "draw_ms": median_ms(lambda: draw_detections(image, shown, COCO_CLASS_NAMES,
                                                     colors=colours), repeats),
        "areas_ms": median_ms(lambda: mask_areas(shown), repeats),
        "cutouts_ms": median_ms(lambda: [to_png_bytes(cutout(image, shown["masks"][..., i]))
                                         for i in range(min(count, GALLERY_LIMIT))], repeats),
        "filter_draw_cutouts_ms": median_ms(lambda: render_once(image, result, threshold),
                                            repeats),
    }


def png(image) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def open_app(weights):
    from streamlit.testing.v1 import AppTest
    os.environ["MRCNN_WEIGHTS"] = str(weights)
    os.environ.pop("MRCNN_SERVE_URL", None)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.run()
    return at


def page_times(image, weights, repeats):
    """Upload to result, and the median script rerun after a slider move per threshold."""
    at = open_app(weights)
    at.file_uploader(key="uploads").set_value(("photo.png", png(image), "image/png"))
    start = time.perf_counter()
    at.run()
    first = time.perf_counter() - start
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    out = {"upload_to_result_s": round(first, 2), "reruns": []}
    for threshold in THRESHOLDS:
        times = []
        for k in range(repeats):
            # Alternate by one step so each rerun is a real change of the slider.
            at.slider(key="min_score").set_value(round(threshold + 0.01 * (k % 2), 2))
            start = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - start)
        out["reruns"].append({"threshold": threshold,
                              "rerun_ms": round(statistics.median(times) * 1000, 1)})
    return out


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def memory_trend(weights, uploads: int):
    """Resident memory after each upload of a different photo, in one session."""
    import skimage.data
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]
    at = open_app(weights)
    at.selectbox(key="image_max_dim").set_value(512)
    trend = []
    for k in range(uploads):
        photo = photos[k % len(photos)]
        side = 400 + 40 * k            # every upload a new image (new digest)
        variant = np.asarray(Image.fromarray(photo).resize((side, side * 3 // 4)))
        at.file_uploader(key="uploads").set_value((f"photo{k}.png", png(variant), "image/png"))
        at.run()
        if at.exception:
            raise RuntimeError(at.exception[0].value)
        trend.append(round(resident_mb()))
    return {"uploads": uploads, "resident_mb_after_each": trend}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=None,
                        help="weights file (default: generate one in the published layout)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-page", action="store_true", help="skip the AppTest page rerun")
    parser.add_argument("--memory", type=int, default=0, metavar="N",
                        help="also upload N different photos and report resident memory")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        weights = args.weights
        if weights is None:
            from mrcnn.synthetic import generate_coco_weights
            weights = generate_coco_weights(Path(scratch) / "coco_generated.h5", seed=0)
        from mrcnn.model import load_model
        model = load_model(weights)
        image = photo_1024()
        start = time.perf_counter()
        result = model.detect([image], DETECTION_MIN_CONFIDENCE=LOW_THRESHOLD)[0]
        detect_s = time.perf_counter() - start
        pickled = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        report = {
            "image": f"astronaut scaled to {SIDE}x{SIDE}",
            "weights": "generated" if args.weights is None else str(args.weights),
            "device": model.device,
            "detections_at_0.1": num_detections(result),
            "detect_s": round(detect_s, 2),
            "repeats": args.repeats,
            "cache_read_ms": median_ms(lambda: pickle.loads(pickled), args.repeats),
            "steps_pixel_major": [step_times(image, result, t, args.repeats) for t in THRESHOLDS],
            "steps_plane_major": [step_times(image, plane_major(result), t, args.repeats)
                                  for t in THRESHOLDS],
        }
        del model
        if not args.no_page:
            report["page"] = page_times(image, weights, args.repeats)
        if args.memory:
            report["memory"] = memory_trend(weights, args.memory)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
