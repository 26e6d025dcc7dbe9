"""Speed and memory of detect() on this machine, against a bare ResNet-101 forward pass.

Builds the COCO model (ResNet-101 FPN, 81 classes), loads a weights file generated in
the published layout (the real file is not needed for timing) and times, on a photo of
1024 x 1024 pixels (so unmolding pastes full 1024-px masks, the costly case):

- ``detect()`` (matterport's output, full-frame masks), median of ``--runs`` warm runs,
  with a few dozen detections and with all 100 slots filled;
- ``detect_compact()`` (what the app and the service call);
- Keras' bare ResNet-101 forward at 1024 x 1024, and the ratio;
- batching: seconds per image for ``detect_compact()`` on batches of 1, 2 and 4;
- cold start (build + load), the first call, and peak memory.

The last line is one JSON object.

    python benchmarks/detect.py [--runs 7] [--weights PATH] [--precision fp32]

``benchmarks/precision.py`` compares float32 with bfloat16.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")




from mrcnn.testing.machine import cpu_name, timed_runs


def median_time(fn, runs):
    times = timed_runs(fn, runs)
    return statistics.median(times), times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed warm runs (median reported)")
    parser.add_argument("--weights", help="a weights file (default: a generated one)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="fp32",
                        help="what detect() computes in (mrcnn.precision); the bare "
                             "ResNet-101 stays float32")
    args = parser.parse_args()

    import numpy as np
    import skimage.data

    from mrcnn.testing.synthetic_weights import generate_coco_weights

    tmp = tempfile.TemporaryDirectory()
    # Generated weights whose class head is about as confident as the real one on a
    # photo (a few dozen detections); the default generated file fills all 100 slots,
    # which is timed too, as the worst case of the mask step.
    weights = args.weights or generate_coco_weights(Path(tmp.name) / "coco.h5", seed=0,
                                                    gains={"mrcnn_class_logits": 1.5})
    crowded = generate_coco_weights(Path(tmp.name) / "crowded.h5", seed=0)

    start = time.perf_counter()
    import keras
    import tensorflow as tf

    from mrcnn import CocoConfig
    from mrcnn.model import MaskRCNN
    model = MaskRCNN(CocoConfig(), precision=args.precision)
    built = time.perf_counter()
    model.load_weights(weights)
    loaded = time.perf_counter()
    from PIL import Image
    image = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((1024, 1024)))
    result = model.detect([image])[0]
    first = time.perf_counter()
    model.detect([image])                   # second warm-up
    detect_s, detect_runs = median_time(lambda: model.detect([image]), args.runs)
    steps = model.last_timings.as_dict()
    compact_s, _ = median_time(lambda: model.detect_compact([image]), args.runs)
    photos = [image, np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(image[::-1]),
              np.ascontiguousarray(image[::-1, ::-1])]
    per_image = {}
    for size in (1, 2, 4):
        model.detect_compact(photos[:size])
        seconds, _ = median_time(lambda size=size: model.detect_compact(photos[:size]),
                                 max(3, args.runs // size))
        per_image[size] = round(seconds / size, 3)

    model.load_weights(crowded)
    model.detect([image])
    crowded_s, _ = median_time(lambda: model.detect([image]), args.runs)
    crowded_count = len(model.detect([image])[0]["scores"])
    crowded_steps = model.last_timings.as_dict()

    backbone = keras.applications.ResNet101(include_top=False, weights=None,
                                            input_shape=(1024, 1024, 3))
    forward = tf.function(lambda x: backbone(x, training=False))
    batch = tf.constant(np.random.default_rng(0).normal(size=(1, 1024, 1024, 3)).astype(np.float32))
    forward(batch), forward(batch)
    backbone_s, backbone_runs = median_time(lambda: forward(batch).numpy(), args.runs)

    figures = {
        "cpu": cpu_name(),
        "device": model.device,
        "precision": model.last_timings.precision,
        "input_size": list(model.last_timings.input_shape),
        "detections": int(len(result["scores"])),
        "build_s": round(built - start, 2),
        "load_s": round(loaded - built, 2),
        "cold_start_s": round(loaded - start, 2),
        "first_detect_s": round(first - loaded, 2),
        "detect_s": round(detect_s, 3),
        "last_run_steps_s": {k: round(v, 3) for k, v in steps.items()},
        "detect_compact_s": round(compact_s, 3),
        "seconds_per_image_by_batch": per_image,
        "backbone_resnet101_s": round(backbone_s, 3),
        "ratio_detect_to_backbone": round(detect_s / backbone_s, 2),
        "worst_case_detections": crowded_count,
        "worst_case_detect_s": round(crowded_s, 3),
        "worst_case_ratio": round(crowded_s / backbone_s, 2),
        "worst_case_steps_s": {k: round(v, 3) for k, v in crowded_steps.items()},
        "runs": args.runs,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print("detect runs (s):", " ".join(f"{t:.3f}" for t in detect_runs))
    print("backbone runs (s):", " ".join(f"{t:.3f}" for t in backbone_runs))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
