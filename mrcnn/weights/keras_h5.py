"""Keras 2 HDF5 weights files (matterport's layout): read into the Keras 3 model, and write.

Layout: the root attribute ``layer_names`` lists layers; each layer's group has a
``weight_names`` attribute (empty for weightless layers) and each weight is the
dataset at ``<layer>/<weight name>``. Strings may be fixed-length bytes (h5py 2 /
Keras 2.0.8) or variable-length str (tf_keras). Layers are matched by name and
weights taken in stored order; weight-name strings are not trusted (old files may
carry suffixes like ``fpn_c5p5_3/kernel:0``).

Everything is checked before any variable is assigned, so a bad file leaves the
model untouched and the error lists every problem.

Writing (:func:`save_h5_weights`, used for training checkpoints, and
:func:`write_keras2_weights` for generated test files) produces the same layout,
so whatever this module writes, it and matterport's code read back by name.
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
    layers = {n: layer for n, layer in model_weighted_layers(model).items() if n not in exclude}
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


def weight_names_of(layer) -> list[str]:
    """Keras 2 style names of a layer's weights (``conv1/kernel:0``), in stored order."""
    return [f"{variable.path}:0" for variable in layer.weights]


def write_keras2_weights(path, layer_names, weights, weight_names, *, fixed_strings=True,
                         attrs=None, extra_groups=()):
    """Write the Keras 2 HDF5 weights layout.

    layer_names: every layer in the file's order (weightless ones included).
    weights / weight_names: {layer: [arrays]} / {layer: [names]} for weighted layers.
    fixed_strings: numpy 'S' strings as h5py 2 wrote them, else variable-length str.
    """
    def strings(values):
        if fixed_strings:
            return np.array([v.encode("utf8") for v in values])
        return np.array(values, dtype=h5py.string_dtype())

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = strings(layer_names)
        for key, value in (attrs or {}).items():
            f.attrs[key] = value.encode("utf8") if fixed_strings else value
        for name in layer_names:
            group = f.create_group(name)
            names = weight_names.get(name, [])
            if not names:
                group.attrs["weight_names"] = np.zeros((0,), dtype=np.float64)
                continue
            group.attrs["weight_names"] = strings(names)
            for weight_name, array in zip(names, weights[name]):
                group.create_dataset(weight_name, data=array)
        for name in extra_groups:
            f.create_group(name)


def save_h5_weights(model, path) -> int:
    """Write every weighted layer of ``model`` in the layout :func:`load_h5_weights` reads.

    Returns the number of arrays written. The file is written to ``<path>.tmp``
    and renamed, so a reader never sees half a checkpoint.
    """
    from pathlib import Path
    path = Path(path)
    layers = model_weighted_layers(model)
    weights = {name: [np.asarray(v.numpy()) for v in layer.weights]
               for name, layer in layers.items()}
    names = {name: weight_names_of(layer) for name, layer in layers.items()}
    partial = path.with_name(path.name + ".tmp")
    write_keras2_weights(partial, [layer.name for layer in model.layers], weights, names,
                         fixed_strings=False)
    partial.replace(path)
    return sum(len(arrays) for arrays in weights.values())
