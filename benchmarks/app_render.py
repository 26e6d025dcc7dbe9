"""What the page costs after the network: filter, overlay, table, cut-outs, and a slider move.

For a 1024-px photo and the full COCO model (generated weights in the published
layout, or the real file via ``--weights``), at the page's network threshold
(0.1; the generated weights fill all 100 detection slots), this prints one JSON
object with:

- ``network_s``: ``detect_compact()`` once, warm (what the queue runs);
- ``stored_run_bytes``: what the page keeps of that run (compact masks);
- ``after_network``: medians of the page's own steps at three slider values:
  filtering, drawing the overlay, mask areas, the first view's 40 gallery
  cut-outs as PNG (made once, then kept), and the sum as a share of the
  network's time;
- ``page``: with AppTest, the upload-to-result time and the whole script rerun
  after a slider move (skipped with ``--no-page``).

Usage::

    python benchmarks/app_render.py [--weights PATH] [--repeats 7] [--no-page]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image

from mrcnn.classes import COCO_CLASS_NAMES
from mrcnn.draw.overlay import cutout_from_crop, draw_detections, palette, to_png_bytes
from mrcnn.results import filter_detections, mask_areas
from mrcnn.testing.machine import cpu_name, timed_runs

SIDE = 1024
LOW_THRESHOLD = 0.1
THRESHOLDS = (0.5, 0.9, 0.97)
GALLERY_LIMIT = 40
APP = Path(__file__).resolve().parent.parent / "app.py"




def photo_1024() -> np.ndarray:
    """scikit-image's astronaut photo scaled to 1024 x 1024."""
    import skimage.data
    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((SIDE, SIDE),
                                                                        Image.Resampling.LANCZOS))


def median_ms(fn, repeats: int) -> float:
    return round(statistics.median(timed_runs(fn, repeats)) * 1000, 1)


def gallery_pngs(image, shown) -> list[bytes]:
    masks = shown["masks"]
    return [to_png_bytes(cutout_from_crop(image, masks.crop(i), masks.windows[i][:2]))
            for i in range(min(len(masks), GALLERY_LIMIT))]


def step_times(image, result, threshold, repeats, network_s):
    shown = filter_detections(result, threshold)
    count = len(shown["scores"])
    colours = palette(count)
    steps = {
        "threshold": threshold,
        "objects": count,
        "filter_ms": median_ms(lambda: filter_detections(result, threshold), repeats),
        "overlay_ms": median_ms(lambda: draw_detections(image, shown, COCO_CLASS_NAMES,
                                                        colors=colours), repeats),
        "areas_ms": median_ms(lambda: mask_areas(shown), repeats),
        "first_view_cutouts_ms": median_ms(lambda: gallery_pngs(image, shown), repeats),
    }
    total = sum(v for k, v in steps.items() if k.endswith("_ms"))
    steps["total_ms"] = round(total, 1)
    steps["share_of_network"] = round(total / 1000 / network_s, 3)
    return steps


def png(image) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def page_times(image, weights, repeats):
    """Upload to result, and the median script rerun after a slider move per threshold."""
    from streamlit.testing.v1 import AppTest
    os.environ["MRCNN_WEIGHTS"] = str(weights)
    os.environ.pop("MRCNN_SERVE_URL", None)
    at = AppTest.from_file(str(APP), default_timeout=600)
    at.run()
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=None,
                        help="weights file (default: generate one in the published layout)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-page", action="store_true", help="skip the AppTest page rerun")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        weights = args.weights
        if weights is None:
            from mrcnn.testing.synthetic_weights import generate_coco_weights
            weights = generate_coco_weights(Path(scratch) / "coco_generated.h5", seed=0)
        from mrcnn.model import load_model
        model = load_model(weights)
        image = photo_1024()
        model.detect_compact([image], DETECTION_MIN_CONFIDENCE=LOW_THRESHOLD)   # warm up
        start = time.perf_counter()
        result = model.detect_compact([image], DETECTION_MIN_CONFIDENCE=LOW_THRESHOLD)[0]
        network_s = time.perf_counter() - start
        full_bytes = int(np.prod(result["masks"].shape))
        report = {
            "cpu": cpu_name(),
            "image": f"astronaut scaled to {SIDE}x{SIDE}",
            "weights": "generated" if args.weights is None else str(args.weights),
            "device": model.device,
            "detections_at_0.1": len(result["scores"]),
            "network_s": round(network_s, 2),
            "stored_run_bytes": result["masks"].nbytes,
            "full_frame_masks_bytes": full_bytes,
            "repeats": args.repeats,
            "after_network": [step_times(image, result, t, args.repeats, network_s)
                              for t in (LOW_THRESHOLD,) + THRESHOLDS],
        }
        del model
        if not args.no_page:
            report["page"] = page_times(image, weights, args.repeats)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
