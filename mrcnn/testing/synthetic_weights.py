"""Weights files in the published Keras 2 HDF5 layout, filled with seeded values.

The real ``mask_rcnn_coco.h5`` cannot be downloaded on build machines, so tests,
the benchmarks and offline demos use a file written here in exactly its layout
(from ``coco_h5_manifest.json``, package data beside this module): same
``layer_names`` list, same groups, same ``weight_names`` attributes, same shapes
and dtypes. The values are random but scaled so the network stays numerically
tame and does produce detections.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mrcnn.weights.keras_h5 import weight_names_of, write_keras2_weights

MANIFEST_PATH = Path(__file__).resolve().parent / "coco_h5_manifest.json"
LAYOUTS = {
    "original": "original_mask_rcnn_coco_h5_v2.0_reconstructed",
    "tf_keras": "tf_keras_2.21_inference_save_weights",
}

# Standard deviation multipliers (on top of He scaling) for the heads' final layers,
# chosen so that objectness and class scores spread over (0, 1) and many RoIs
# clear DETECTION_MIN_CONFIDENCE.
HEAD_GAIN = {"rpn_class_raw": 0.6, "rpn_bbox_pred": 0.02, "mrcnn_class_logits": 4.0,
             "mrcnn_bbox_fc": 0.002, "mrcnn_mask": 1.0}


def seeded_values(layer_name, weight_shapes, rng, gains=None) -> list[np.ndarray]:
    """Plausible float32 values for one layer's weights, in stored order.

    ``gains`` overrides entries of ``HEAD_GAIN`` (e.g. a smaller
    ``mrcnn_class_logits`` gain gives fewer confident detections).
    """
    gains = {**HEAD_GAIN, **(gains or {})}
    shapes = [tuple(s) for s in weight_shapes]
    if len(shapes) == 4 and all(len(s) == 1 for s in shapes):   # BatchNorm
        n = shapes[0][0]
        # A residual branch's last BN is damped so 33 stacked blocks stay near unit scale.
        gamma = rng.uniform(0.1, 0.3, n) if layer_name.endswith("2c") else rng.uniform(0.5, 1.0, n)
        beta = rng.normal(0.0, 0.05, n)
        mean = rng.normal(0.0, 0.05, n)
        var = rng.uniform(0.5, 1.5, n)
        if layer_name == "bn_conv1":
            var *= 1e4   # the first layer sees raw pixels (about +-128)
        # The real file has channels with moving_variance exactly 0 (dead channels,
        # small gamma): Keras' epsilon 1e-3 is then what keeps them finite.
        dead = rng.random(n) < 0.02
        var[dead], gamma[dead] = 0.0, 1e-3
        return [a.astype(np.float32) for a in (gamma, beta, mean, var)]
    arrays = []
    for shape in shapes:
        if len(shape) == 1:
            arrays.append(rng.normal(0.0, 0.01, shape).astype(np.float32))
            continue
        if len(shape) == 4 and "deconv" in layer_name:    # (kh, kw, out, in)
            fan_in = shape[0] * shape[1] * shape[3]
        else:                                               # (kh, kw, in, out) or (in, out)
            fan_in = int(np.prod(shape[:-1]))
        std = np.sqrt(2.0 / fan_in) * gains.get(_head_of(layer_name, shape), 1.0)
        arrays.append(rng.standard_normal(shape, dtype=np.float32) * np.float32(std))
    return arrays


def _head_of(layer_name, shape):
    """Inside the nested rpn_model the sub-layer is identified by its output width."""
    if layer_name == "rpn_model":
        return {6: "rpn_class_raw", 12: "rpn_bbox_pred"}.get(shape[-1], "rpn_conv_shared")
    return layer_name


def generate_coco_weights(path, seed=0, layout="original", manifest_path=MANIFEST_PATH,
                          gains=None):
    """A file shaped exactly like mask_rcnn_coco.h5 (or the tf_keras re-save of it)."""
    manifest = json.loads(Path(manifest_path).read_text())
    spec = manifest["layouts"][LAYOUTS[layout]]
    rng = np.random.default_rng(seed)
    weights, names = {}, {}
    for layer in spec["weighted_layer_order"]:
        entries = manifest["weighted_layers"][layer]["weights"]
        names[layer] = [w["name"] for w in entries]
        weights[layer] = seeded_values(layer, [w["shape"] for w in entries], rng, gains)
    write_keras2_weights(
        path, spec["layer_names"], weights, names,
        fixed_strings=layout == "original", attrs=spec.get("attrs"),
        extra_groups=spec.get("extra_top_level_groups_not_in_layer_names", ()))
    return Path(path)


def generate_model_weights(keras_model, path, seed=0):
    """A Keras 2 layout file for any built model (small test configs)."""
    rng = np.random.default_rng(seed)
    weights, names = {}, {}
    for layer in keras_model.layers:
        if not layer.weights:
            continue
        names[layer.name] = weight_names_of(layer)
        weights[layer.name] = seeded_values(layer.name, [v.shape for v in layer.weights], rng)
    write_keras2_weights(path, [layer.name for layer in keras_model.layers], weights, names)
    return Path(path)
