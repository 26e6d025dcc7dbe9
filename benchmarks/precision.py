"""detect() in float32 and in oneDNN's bfloat16 auto-mixed precision, on this machine's CPU.

A first measurement toward a precision setting (the engine itself still runs float32).
Each mode runs in its own process, because TensorFlow's grappler option
``auto_mixed_precision_onednn_bfloat16`` is process-wide and must be set before
anything is traced. On a photo of 1024 x 1024 pixels with the COCO model and generated
weights in the published layout, each process prints the median of ``--runs`` warm
``detect()`` calls and its detections at confidence >= 0.7; the parent reports the
times, their ratio, and how far the bfloat16 detections agree with float32's (same
class, box IoU >= 0.9). Generated weights amplify rounding, so agreement is reported,
not judged; accuracy belongs to a trained model's mAP.

    python benchmarks/precision.py [--runs 5]

The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("fp32", "bf16")


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def child(mode: str, weights: str, runs: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import skimage.data
    import tensorflow as tf
    from PIL import Image

    if mode == "bf16":
        tf.config.optimizer.set_experimental_options(
            {"auto_mixed_precision_onednn_bfloat16": True})
    from mrcnn import CocoConfig
    from mrcnn.model import MaskRCNN
    model = MaskRCNN(CocoConfig()).load_weights(weights)
    image = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((1024, 1024)))
    model.detect([image])
    model.detect([image])
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = model.detect([image], DETECTION_MIN_CONFIDENCE=0.7)[0]
        times.append(time.perf_counter() - start)
    return {"mode": mode, "detect_s": round(statistics.median(times), 3),
            "steps_s": {k: round(v, 3) for k, v in model.last_timings.as_dict().items()},
            "rois": result["rois"].tolist(), "class_ids": result["class_ids"].tolist(),
            "scores": [round(float(s), 4) for s in result["scores"]]}


def agreement(a: dict, b: dict) -> dict:
    """Detections of ``b`` matched one to one to ``a``'s of the same class at box IoU >= 0.9."""
    import numpy as np

    from mrcnn.box_ops import box_iou
    rois_a, rois_b = np.asarray(a["rois"], float).reshape(-1, 4), np.asarray(
        b["rois"], float).reshape(-1, 4)
    iou = box_iou(rois_a, rois_b) if len(rois_a) and len(rois_b) else np.zeros((0, 0))
    used, matched = set(), 0
    for i, class_id in enumerate(a["class_ids"]):
        for j in np.argsort(-iou[i]) if iou.size else []:
            if j not in used and b["class_ids"][j] == class_id and iou[i, j] >= 0.9:
                used.add(j)
                matched += 1
                break
    return {"fp32": len(a["class_ids"]), "bf16": len(b["class_ids"]), "matched": matched}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.weights, args.runs)))
        return

    from mrcnn.testing.machine import cpu_name
    from mrcnn.testing.synthetic_weights import generate_coco_weights
    with tempfile.TemporaryDirectory() as tmp:
        weights = generate_coco_weights(Path(tmp) / "coco.h5", seed=0,
                                        gains={"mrcnn_class_logits": 1.5})
        results = {}
        for mode in MODES:
            done = subprocess.run([sys.executable, __file__, "--child", mode, "--weights",
                                   str(weights), "--runs", str(args.runs)],
                                  capture_output=True, text=True, check=True)
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    flags = cpu_flags()
    figures = {
        "cpu": cpu_name(), "cpus": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
        **{f"detect_{m}_s": results[m]["detect_s"] for m in MODES},
        **{f"steps_{m}_s": results[m]["steps_s"] for m in MODES},
        "speed_up": round(results["fp32"]["detect_s"] / results["bf16"]["detect_s"], 2),
        "agreement_at_0.7": agreement(results["fp32"], results["bf16"]),
        "runs": args.runs,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
