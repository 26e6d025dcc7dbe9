"""The network's heaviest stage under another runtime: OpenVINO against TensorFlow.

Backbone + FPN + RPN (``model.network.features``: a 1024 x 1024 image -> C2..P6 and
the RPN's outputs) is where ``detect()`` spends most of its time. This converts that
stage, BatchNorm folded, from its ``tf.function`` to OpenVINO (``openvino.convert_model``)
and times it, alternated with TensorFlow's own, in float32 and in bfloat16 (OpenVINO's
``INFERENCE_PRECISION_HINT``; ``mrcnn.precision`` for TensorFlow), on the COCO model
with weights generated in the published layout. It reports each output's largest
difference from TensorFlow's float32, relative to that output's largest value.

The rest of the network (proposal layer, RoI Align, heads, detection layer) stays in
TensorFlow either way; converting it is not attempted here (OpenVINO has no operation
for ``tf.sets.intersection``, which the detection layer uses).

    pip install openvino
    python benchmarks/runtimes.py [--runs 5]

The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def timed_calls(calls: dict, runs: int, outputs: dict, times: dict) -> None:
    """Each call's outputs and ``runs`` timed calls (after two warm-ups), alternated."""
    for name, call in calls.items():
        outputs[name] = call()
        call()
    for name in calls:
        times[name] = []
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import openvino as ov
    import skimage.data
    import tensorflow as tf
    from PIL import Image

    from mrcnn import CocoConfig
    from mrcnn.folding import FEATURES
    from mrcnn.model import MaskRCNN
    from mrcnn.testing.machine import cpu_name
    from mrcnn.testing.synthetic_weights import generate_coco_weights

    tmp = tempfile.TemporaryDirectory()
    weights = generate_coco_weights(Path(tmp.name) / "coco.h5", seed=0,
                                    gains={"mrcnn_class_logits": 1.5})
    model = MaskRCNN(CocoConfig(), precision="fp32").load_weights(weights)
    image = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((1024, 1024)))
    batch, _, _ = model.mold_inputs([image])
    spec = tf.TensorSpec([1, 1024, 1024, 3], tf.float32)

    def features_in(dtype):
        network = model.network.in_dtype(dtype)

        def features(x):
            stages = network.features(x)
            return [stages[name] for name in FEATURES]
        return tf.function(features, input_signature=[spec])

    tf_steps = {"fp32": features_in("float32"), "bf16": features_in("bfloat16")}
    # TensorFlow first, then OpenVINO: each runtime's worker threads stay busy a while
    # after a call, so calls of the two interleaved would slow each other down.
    calls = {f"tensorflow_{m}": (lambda f=f: [t.numpy() for t in f(tf.constant(batch))])
             for m, f in tf_steps.items()}
    outputs, times = {}, {}
    timed_calls(calls, args.runs, outputs, times)
    started = time.perf_counter()
    converted = ov.convert_model(tf_steps["fp32"].get_concrete_function())
    convert_s = time.perf_counter() - started
    core = ov.Core()
    calls = {}
    for mode, hint in (("fp32", "f32"), ("bf16", "bf16")):
        compiled = core.compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                        "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        calls[f"openvino_{mode}"] = (lambda request=request: [
            np.array(t.data) for t in request.infer({0: batch}).values()])
    timed_calls(calls, args.runs, outputs, times)
    reference = outputs["tensorflow_fp32"]
    errors = {}
    for name, values in outputs.items():
        if name == "tensorflow_fp32":
            continue
        by_shape = {}
        for ref in reference:      # OpenVINO may order outputs differently: match by shape
            by_shape.setdefault(ref.shape, []).append(ref)
        worst = 0.0
        for ref in reference:
            candidates = [v for v in values if v.shape == ref.shape]
            error = min(float(np.abs(v - ref).max()) for v in candidates)
            worst = max(worst, error / max(float(np.abs(ref).max()), 1e-12))
        errors[name] = round(worst, 5)
    figures = {"cpu": cpu_name(), "cpus": os.cpu_count(), "openvino": ov.__version__,
               "tensorflow": tf.__version__, "stage": "backbone + FPN + RPN at 1024 px",
               "seconds": {k: round(statistics.median(v), 3) for k, v in times.items()},
               "largest_relative_difference_to_tensorflow_fp32": errors,
               "convert_s": round(convert_s, 1), "runs": args.runs}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
