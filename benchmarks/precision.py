"""float32 against bfloat16 (``mrcnn.precision``): speed on the COCO model, accuracy on
the trained shapes model, and where the rest of the time goes.

In one process, on this machine's CPU:

- **Speed.** The COCO model (ResNet-101 FPN, 81 classes) with weights generated in the
  published layout, on a 1024 x 1024 photo: ``detect()`` in each precision, alternated,
  median of ``--runs`` warm runs; the same with all 100 detection slots filled (a
  generated file whose class head fills them); Keras' bare ResNet-101 at 1024 px in the
  same precision (Keras' ``mixed_bfloat16`` policy for bfloat16), and the ratios.
- **Profile.** Each precision's step times: backbone + FPN + RPN, the proposal layer,
  RoI Align + classifier, the detection layer, the mask head, unmolding.
- **Agreement.** Detections at confidence >= 0.7 on the generated COCO weights, bfloat16
  against float32 (same class, box IoU >= 0.9). Generated weights amplify rounding, so
  this is reported, not judged.
- **Accuracy.** The trained shapes model (``--shapes-weights``, a ``ShapesConfig``
  checkpoint from ``benchmarks/train_shapes.py``; without it one is trained here,
  ``--train-epochs`` of 50 steps) on ``--eval-images`` held-out generated images
  (the same seed as ``train_shapes.py``'s evaluation) with pycocotools' COCOeval, mask
  and box, in each precision. bfloat16 is asked for by name there: at 128 px ``auto``
  would pick float32.
- **Crossover** (``--crossover``): ``detect()`` at 128 to 1024 px in each precision,
  the sizes where ``auto`` (``BF16_MIN_PIXELS``) switches.
- **Ceiling** (``--ceiling``): the multiply-adds of one ``detect()`` at 1024 px, counted
  from the traced graphs, against the rate of the model's largest convolution timed
  alone in each precision: the least time this CPU could take for that many.

    python benchmarks/precision.py [--runs 5] [--shapes-weights PATH] [--crossover] [--ceiling]

The last line is one JSON object.
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

from mrcnn.testing.machine import timed_runs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODES = ("fp32", "bf16")
EVAL_SEED = 3                  # benchmarks/train_shapes.py's held-out images
#: Published accuracy of reduced-precision Mask R-CNN on COCO, for comparison.
PUBLISHED = (
    "Mask R-CNN 2Go (Facebook, Caffe2 model zoo: facebookarchive/models, "
    "mask_rcnn_2go/README.md), COCO 2014 minival, mAP[.5:.95]: float32 box 25.1 / mask 21.6, "
    "int8 box 24.8 / mask 21.7. mmdetection (configs/fp16/README.md): Mask R-CNN R-50-FPN "
    "1x float32 box 38.2 / mask 34.7, float16 box 38.1 / mask 34.7.")


def timed(fn, runs):
    return statistics.median(timed_runs(fn, runs))


def alternated(fns: dict, runs: int) -> dict:
    """Median seconds of each of ``fns``, their calls interleaved so that a busy spell of
    the machine falls on all of them alike."""
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def agreement(a: dict, b: dict, iou: float = 0.9) -> dict:
    """Detections of ``b`` matched one to one to ``a``'s of the same class at box IoU."""
    import numpy as np

    from mrcnn.box_ops import box_iou
    matched, used = 0, set()
    if len(a["rois"]) and len(b["rois"]):
        overlaps = box_iou(a["rois"].astype(float), b["rois"].astype(float))
        for i, class_id in enumerate(a["class_ids"]):
            for j in np.argsort(-overlaps[i]):
                if j not in used and b["class_ids"][j] == class_id and overlaps[i, j] >= iou:
                    used.add(j)
                    matched += 1
                    break
    return {"fp32": int(len(a["class_ids"])), "bf16": int(len(b["class_ids"])),
            "matched": matched}


def profile(model, image, precision, runs) -> dict:
    """Seconds per step of one ``detect()`` in ``precision``, each step timed alone."""
    import numpy as np
    import tensorflow as tf

    from mrcnn.anchors import get_anchors
    from mrcnn.precision import DTYPES
    batch, metas, _ = model.mold_inputs([image])
    anchors = get_anchors(model.config, batch.shape[1:3])
    images, metas = tf.constant(batch), tf.constant(metas)
    anchors = tf.constant(anchors[np.newaxis])
    steps = model.steps_in(precision)
    network = model.network.in_dtype(DTYPES[precision])
    layer = model._proposal_layer
    features = tf.function(network.features)
    propose = tf.function(layer.propose_with_anchors)
    maps = lambda stages: [stages[n] for n in ("P2", "P3", "P4", "P5")]  # noqa: E731
    classify = tf.function(lambda rois, stages: network.classifier(rois, metas, maps(stages)))
    stages = features(images)
    proposals, _ = propose(stages["rpn_probs"], stages["rpn_deltas"], anchors)
    probs, deltas = classify(proposals, stages)
    full = steps.classify(images, metas, anchors)
    cfg = model.config
    args = (full["proposals"], full["class_probs"], full["class_deltas"], metas,
            tf.constant(0.7), tf.constant(float(cfg.DETECTION_NMS_THRESHOLD)),
            tf.constant(int(cfg.DETECTION_MAX_INSTANCES)))
    detections = steps.detections(*args)[0].numpy()
    count = max(1, int((detections[0, :, 4] > 0).sum()))
    mask_args = (tf.constant(detections[:, :, :4]), tf.constant(count), metas,
                 tf.constant(detections[:, :count, 4].astype(np.int32)), *maps(full))
    steps.masks(*mask_args)
    result = {
        "backbone_fpn_rpn": timed(lambda: [t.numpy() for t in features(images).values()], runs),
        "proposal_layer": timed(
            lambda: propose(stages["rpn_probs"], stages["rpn_deltas"], anchors)[0].numpy(), runs),
        "roi_align_and_classifier": timed(lambda: classify(proposals, stages)[0].numpy(), runs),
        "classify_step_whole": timed(
            lambda: steps.classify(images, metas, anchors)["class_probs"].numpy(), runs),
        "detection_layer": timed(lambda: steps.detections(*args)[0].numpy(), runs),
        "mask_head": timed(lambda: steps.masks(*mask_args).numpy(), runs),
        "mask_head_detections": count,
    }
    model.detect([image], precision=precision, DETECTION_MIN_CONFIDENCE=0.7)
    result["unmold"] = model.last_timings.unmold
    result["mold"] = model.last_timings.mold
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}


def multiply_adds(model, side: int) -> dict:
    """Billions of multiply-adds (GMAC), counted from the traced graphs' convolutions and
    matrix products: the features step (backbone, FPN, RPN) on one ``side`` px picture,
    the classifier on the inference RoIs, and the mask head for one detection."""
    import tensorflow as tf
    cfg, network = model.config, model.network
    pool, mask_pool, channels = cfg.POOL_SIZE, cfg.MASK_POOL_SIZE, cfg.TOP_DOWN_PYRAMID_SIZE

    def count(fn, shape) -> float:
        graph = tf.function(fn).get_concrete_function(tf.TensorSpec(shape)).graph
        total = 0
        for op in graph.get_operations():
            if op.type in ("Conv2D", "_FusedConv2D"):            # out * kh * kw * cin
                kernel = op.inputs[1].shape
                total += op.outputs[0].shape.num_elements() * kernel[0] * kernel[1] * kernel[2]
            elif op.type == "Conv2DBackpropInput":             # in * kh * kw * cout
                kernel = op.inputs[1].shape
                total += op.inputs[2].shape.num_elements() * kernel[0] * kernel[1] * kernel[2]
            elif op.type in ("MatMul", "_FusedMatMul"):
                a = op.inputs[0].shape
                total += op.outputs[0].shape.num_elements() * a[0 if op.get_attr(
                    "transpose_a") else 1]
        return total / 1e9
    return {
        "features": round(count(lambda x: network.features(x), [1, side, side, 3]), 1),
        "classifier": round(count(lambda x: network.classifier_graph(x),
                                  [1, cfg.POST_NMS_ROIS_INFERENCE, pool, pool, channels]), 1),
        "mask_head_per_detection": round(count(lambda x: network.mask_graph(x),
                                               [1, 1, mask_pool, mask_pool, channels]), 2),
    }


def best_rate(precision, runs) -> float:
    """GMAC per second of the model's largest convolution alone (the RPN's shared 3x3,
    256 -> 512 channels, on P2 of a 1024 px picture): what this CPU's oneDNN does at
    best in ``precision``."""
    import tensorflow as tf

    from mrcnn.precision import DTYPES
    dtype = DTYPES[precision]
    x = tf.cast(tf.random.stateless_normal((1, 256, 256, 256), (1, 2)), dtype)
    w = tf.cast(tf.random.stateless_normal((3, 3, 256, 512), (3, 4)), dtype)
    conv = tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"))
    conv(x, w).numpy()
    return 256 * 256 * 9 * 256 * 512 / 1e9 / timed(lambda: conv(x, w).numpy(), runs)


def bare_backbone(precision, runs) -> float:
    """Keras' ResNet-101 at 1024 px, in float32 or under the ``mixed_bfloat16`` policy."""
    import keras
    import numpy as np
    import tensorflow as tf
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    try:
        backbone = keras.applications.ResNet101(include_top=False, weights=None,
                                                input_shape=(1024, 1024, 3))
    finally:
        keras.config.set_dtype_policy(policy)
    forward = tf.function(lambda x: backbone(x, training=False))
    batch = tf.constant(np.random.default_rng(0).normal(size=(1, 1024, 1024, 3)).astype(
        np.float32))
    forward(batch), forward(batch)
    return round(timed(lambda: forward(batch).numpy(), runs), 3)


def shapes_accuracy(weights, eval_images, train_epochs) -> dict:
    from mrcnn.config import config_from_path
    from mrcnn.model import MaskRCNN
    from mrcnn.training.evaluate import coco_map
    from mrcnn.training.shapes import shapes_dataset, train_shapes_from_scratch
    config = config_from_path("mrcnn.training.shapes:ShapesConfig")
    trained_here = weights is None
    if trained_here:
        out = Path(tempfile.mkdtemp(prefix="precision_shapes_"))
        config = config_from_path("mrcnn.training.shapes:ShapesConfig",
                                  {"STEPS_PER_EPOCH": 50})
        _, marks = train_shapes_from_scratch(config, out, train_epochs,
                                             min(3, train_epochs // 4))
        weights = marks[-1][0]
    model = MaskRCNN(config, precision="fp32").load_weights(weights)
    dataset = shapes_dataset(eval_images, EVAL_SEED, config.IMAGE_MAX_DIM)
    scores = {}
    for mode in MODES:
        model.precision = mode
        started = time.perf_counter()
        found = coco_map(model, dataset)
        scores[mode] = {**{k: round(v, 4) for k, v in found.items() if k.startswith("map")},
                        "detections": found["detections"],
                        "seconds": round(time.perf_counter() - started, 1)}
    scores["points_bf16_minus_fp32"] = {
        k: round(100 * (scores["bf16"][k] - scores["fp32"][k]), 2)
        for k in ("map50_segm", "map_segm", "map50_bbox", "map_bbox")}
    scores["weights"] = str(weights)
    scores["trained_here_epochs"] = train_epochs if trained_here else None
    scores["eval_images"] = eval_images
    return scores


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shapes-weights", default=os.environ.get("MRCNN_SHAPES_WEIGHTS"),
                        help="a trained ShapesConfig checkpoint (default: train one here)")
    parser.add_argument("--train-epochs", type=int, default=14)
    parser.add_argument("--eval-images", type=int, default=200)
    parser.add_argument("--no-accuracy", action="store_true", help="skip the shapes mAP")
    parser.add_argument("--crossover", action="store_true",
                        help="also time detect() from 128 to 1024 px in each precision")
    parser.add_argument("--ceiling", action="store_true",
                        help="also count detect()'s multiply-adds and time the largest "
                             "convolution alone: the least time this CPU could take")
    args = parser.parse_args()

    import numpy as np
    import skimage.data
    from PIL import Image

    from mrcnn import CocoConfig
    from mrcnn.model import MaskRCNN
    from mrcnn.precision import BF16_MIN_PIXELS, cpu_flags, cpu_has_bf16
    from mrcnn.testing.machine import cpu_name
    from mrcnn.testing.synthetic_weights import generate_coco_weights

    figures = {"cpu": cpu_name(), "cpus": os.cpu_count(), "cpu_has_bf16": cpu_has_bf16(),
               "avx512_bf16": "avx512_bf16" in cpu_flags(),
               "amx_bf16": "amx_bf16" in cpu_flags(), "runs": args.runs,
               "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}
    tmp = tempfile.TemporaryDirectory()
    photo_weights = generate_coco_weights(Path(tmp.name) / "coco.h5", seed=0,
                                          gains={"mrcnn_class_logits": 1.5})
    crowded_weights = generate_coco_weights(Path(tmp.name) / "crowded.h5", seed=0)
    model = MaskRCNN(CocoConfig(), precision="fp32").load_weights(photo_weights)
    image = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((1024, 1024)))

    def detect(mode, **kw):
        return lambda: model.detect([image], precision=mode, **kw)

    for mode in MODES:                       # trace, warm up
        detect(mode)(), detect(mode)()
    figures["detect_s"] = alternated({m: detect(m) for m in MODES}, args.runs)
    step_times = {}
    for mode in MODES:
        detect(mode)()
        step_times[mode] = {k: round(v, 3) for k, v in model.last_timings.as_dict().items()}
    figures["detect_steps_s"] = step_times
    found = {m: model.detect([image], precision=m, DETECTION_MIN_CONFIDENCE=0.7)[0]
             for m in MODES}
    figures["agreement_at_0.7"] = agreement(found["fp32"], found["bf16"])
    figures["profile_s"] = {m: profile(model, image, m, args.runs) for m in MODES}

    model.load_weights(crowded_weights)
    for mode in MODES:
        detect(mode)()
    figures["crowded_detect_s"] = alternated({m: detect(m) for m in MODES}, args.runs)
    figures["crowded_detections"] = int(len(model.detect([image], precision="fp32")[0][
        "scores"]))
    if args.crossover:
        model.load_weights(photo_weights)
        sizes = {}
        for side in (128, 256, 384, 512, 768, 1024):
            small = np.asarray(Image.fromarray(image).resize((side, side)))
            calls = {m: (lambda m=m, small=small, side=side: model.detect(
                [small], precision=m, IMAGE_MIN_DIM=side, IMAGE_MAX_DIM=side)) for m in MODES}
            for call in calls.values():
                call(), call()
            sizes[side] = alternated(calls, max(3, args.runs))
            sizes[side]["auto_picks"] = model.resolve_precision(side * side, "auto")
        figures["crossover_s"] = sizes
        figures["bf16_min_pixels"] = BF16_MIN_PIXELS
    if args.ceiling:
        model.load_weights(photo_weights)
        macs = multiply_adds(model, 1024)
        count = len(found["fp32"]["scores"])
        total = macs["features"] + macs["classifier"] + count * macs["mask_head_per_detection"]
        rates = {m: round(best_rate(m, args.runs), 1) for m in MODES}
        figures["ceiling"] = {
            "gmac": macs, "gmac_detect_at_0.7": round(total, 1), "detections": count,
            "best_conv_gmac_per_s": rates,
            "seconds_at_best_rate": {m: round(total / rates[m], 3) for m in MODES},
            "share_of_best_rate_in_detect": {
                m: round(total / rates[m] / figures["detect_s"][m], 2) for m in MODES}}
    figures["backbone_s"] = {m: bare_backbone(m, args.runs) for m in MODES}
    figures["speed_up"] = round(figures["detect_s"]["fp32"] / figures["detect_s"]["bf16"], 2)
    figures["crowded_ratio_to_backbone"] = {
        m: round(figures["crowded_detect_s"][m] / figures["backbone_s"][m], 2) for m in MODES}
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if not args.no_accuracy:
        figures["shapes"] = shapes_accuracy(args.shapes_weights, args.eval_images,
                                            args.train_epochs)
    figures["targets"] = {
        "detect_bf16_at_most_1.6_s": figures["detect_s"]["bf16"] <= 1.6,
        "crowded_at_most_2.2x_backbone": figures["crowded_ratio_to_backbone"]["bf16"] <= 2.2,
    }
    if "shapes" in figures:
        figures["targets"]["shapes_map_within_1_point"] = all(
            abs(v) <= 1.0 for k, v in figures["shapes"]["points_bf16_minus_fp32"].items()
            if "segm" in k)
    figures["published"] = PUBLISHED
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
