"""Load Keras 2 HDF5 weight files (matterport's layout) into the Keras 3 model.

Layout: the root attribute ``layer_names`` lists layers; each layer's group has a
``weight_names`` attribute (empty for weightless layers) and each weight is the
dataset at ``<layer>/<weight name>``. Strings may be fixed-length bytes (h5py 2 /
Keras 2.0.8) or variable-length str (tf_keras). Layers are matched by name and
weights taken in stored order; weight-name strings are not trusted (old files may
carry suffixes like ``fpn_c5p5_3/kernel:0``).

Everything is checked before any variable is assigned, so a bad file leaves the
model untouched and the error lists every problem.
"""
from __future__ import annotations

import h5py
import numpy as np


class WeightsMismatchError(ValueError):
    """The file does not fit the model: missing, unexpected or mis-shaped layers."""


def _decode(values) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def read_h5_weights(path) -> dict[str, list[np.ndarray]]:
    """{layer name: [arrays in stored order]} for every layer that holds weights."""
    with h5py.File(path, "r") as f:
        if "layer_names" not in f.attrs and "model_weights" in f:
            f = f["model_weights"]  # a full-model file saved with model.save()
        if "layer_names" not in f.attrs:
            raise WeightsMismatchError(
                f"{path} has no 'layer_names' attribute: it is not a Keras 2 HDF5 weights "
                "file like mask_rcnn_coco.h5.")
        weights = {}
        for name in _decode(f.attrs["layer_names"]):
            group = f[name]
            names = group.attrs.get("weight_names", [])
            if len(names) == 0:
                continue
            weights[name] = [np.asarray(group[w]) for w in _decode(names)]
        return weights


def model_weighted_layers(model) -> dict:
    """{layer name: layer} for each layer of ``model`` that owns variables."""
    return {layer.name: layer for layer in model.layers if layer.weights}


def plan_assignment(model, file_weights: dict, exclude=()) -> list[tuple]:
    """Match file layers to model layers; raise listing every problem found."""
    exclude = set(exclude)
    layers = {n: l for n, l in model_weighted_layers(model).items() if n not in exclude}
    file_layers = {n: w for n, w in file_weights.items() if n not in exclude}
    missing = [n for n in layers if n not in file_layers]
    unexpected = [n for n in file_layers if n not in layers]
    problems = []
    if missing:
        problems.append(f"missing from the file: {', '.join(missing)}")
    if unexpected:
        problems.append(f"in the file but not in the model: {', '.join(unexpected)}")
    plan = []
    for name, layer in layers.items():
        if name not in file_layers:
            continue
        variables, arrays = layer.weights, file_layers[name]
        if len(variables) != len(arrays):
            problems.append(f"layer {name} has {len(variables)} weights in the model but "
                            f"{len(arrays)} in the file")
            continue
        for variable, array in zip(variables, arrays):
            if tuple(variable.shape) != array.shape:
                problems.append(f"layer {name}, weight {variable.path}: the model expects "
                                f"shape {tuple(variable.shape)}, the file has {array.shape}")
        plan.extend(zip(variables, arrays))
    if problems:
        raise WeightsMismatchError(
            "The weights file does not fit this model (check NUM_CLASSES and BACKBONE in "
            "your config, or pass exclude=[...] for layers you retrain): " + "; ".join(problems))
    return plan


def load_h5_weights(model, path, exclude=()) -> int:
    """Assign every weighted layer of ``model`` from ``path``; returns arrays loaded."""
    plan = plan_assignment(model, read_h5_weights(path), exclude)
    for variable, array in plan:
        variable.assign(array)
    return len(plan)
