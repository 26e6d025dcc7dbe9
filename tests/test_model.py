"""The full COCO model: building, loading the published layout, detecting on real photos."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from mrcnn import COCO_CLASS_NAMES, CocoConfig
from mrcnn.testing.synthetic_weights import MANIFEST_PATH as MANIFEST
from mrcnn.testing.synthetic_weights import generate_coco_weights
from mrcnn.weights.keras_h5 import (
    WeightsMismatchError,
    model_weighted_layers,
    read_h5_weights,
    write_keras2_weights,
)

MANIFEST_DATA = json.loads(MANIFEST.read_text())


def test_model_layers_match_the_published_manifest(coco_model):
    layers = model_weighted_layers(coco_model.keras_model)
    expected = MANIFEST_DATA["weighted_layers"]
    assert sorted(layers) == sorted(expected)
    for name, layer in layers.items():
        shapes = [tuple(w["shape"]) for w in expected[name]["weights"]]
        assert [tuple(v.shape) for v in layer.weights] == shapes, name
    params = sum(int(np.prod(v.shape)) for layer in layers.values() for v in layer.weights)
    assert params == MANIFEST_DATA["num_parameters"] == 64_158_584


def test_generated_file_has_the_published_layout(coco_weights):
    spec = MANIFEST_DATA["layouts"]["original_mask_rcnn_coco_h5_v2.0_reconstructed"]
    with h5py.File(coco_weights, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names == spec["layer_names"] and len(names) == 406
        assert f.attrs["layer_names"].dtype.kind == "S"          # fixed-length, as Keras 2.0.8
        assert f["input_image"].attrs["weight_names"].shape == (0,)
        assert [n.decode() for n in f["rpn_model"].attrs["weight_names"]][0] == \
            "rpn_conv_shared/kernel:0"
        arrays = sum(len(f[n].attrs["weight_names"]) for n in names)
    assert arrays == MANIFEST_DATA["num_weight_arrays"] == 690


def test_every_layer_holds_the_files_values(coco_model, coco_weights):
    stored = read_h5_weights(coco_weights)
    layers = model_weighted_layers(coco_model.keras_model)
    assert len(stored) == len(layers) == 233
    for name, layer in layers.items():
        for variable, array in zip(layer.weights, stored[name], strict=True):
            np.testing.assert_array_equal(variable.numpy(), array, err_msg=name)


def test_tf_keras_layout_loads_to_the_same_values(coco_model, tmp_path):
    """Later Keras 2 releases write vlen strings, 394 names and an extra empty group."""
    path = generate_coco_weights(tmp_path / "tf_keras.h5", seed=0, layout="tf_keras")
    with h5py.File(path, "r") as f:
        assert len(f.attrs["layer_names"]) == 394 and "top_level_model_weights" in f
    original = read_h5_weights(generate_coco_weights(tmp_path / "orig.h5", seed=0))
    resaved = read_h5_weights(path)
    # Same seed, different weighted-layer order in the file: values follow layer names.
    assert sorted(original) == sorted(resaved)
    model_layers = model_weighted_layers(coco_model.keras_model)
    before = model_layers["mrcnn_class_bn1"].weights[0].numpy().copy()
    coco_model.load_weights(path)
    after = model_layers["mrcnn_class_bn1"].weights[0].numpy()
    np.testing.assert_array_equal(after, resaved["mrcnn_class_bn1"][0])
    assert not np.array_equal(before, after)   # the two files' values differ by order of generation
    coco_model.load_weights(generate_coco_weights(tmp_path / "restore.h5", seed=0))


def test_detect_on_real_photos(coco_model, photos):
    for name, image in photos.items():
        result = coco_model.detect([image])[0]
        h, w = image.shape[:2]
        n = len(result["class_ids"])
        assert n > 0, f"no detections on {name}"
        assert result["rois"].dtype == np.int32 and result["rois"].shape == (n, 4)
        assert result["class_ids"].dtype == np.int32 and result["scores"].dtype == np.float32
        assert result["masks"].dtype == bool and result["masks"].shape == (h, w, n)
        assert np.all((result["class_ids"] >= 1) & (result["class_ids"] < len(COCO_CLASS_NAMES)))
        assert np.all(result["scores"] >= CocoConfig.DETECTION_MIN_CONFIDENCE)
        assert np.all(result["scores"] <= 1.0)
        assert np.all(np.diff(result["scores"]) <= 0), "scores must come best first"
        y1, x1, y2, x2 = result["rois"].T
        assert np.all((0 <= y1) & (y1 < y2) & (y2 <= h) & (0 <= x1) & (x1 < x2) & (x2 <= w))
        # every mask lies inside its box
        for i in range(n):
            ys, xs = np.nonzero(result["masks"][:, :, i])
            if len(ys):
                assert (ys.min() >= y1[i] and ys.max() < y2[i]
                        and xs.min() >= x1[i] and xs.max() < x2[i])
    assert coco_model.last_timings.input_shape == (1024, 1024)


def test_compact_masks_are_detects_masks_in_a_few_megabytes(coco_model, photos):
    """A 1024-px photo with all 100 detection slots filled: detect_compact() keeps the
    masks in <= 10 MB (detect()'s (H, W, N) stack is 100 MB) and they are the same pixels."""
    from PIL import Image

    from mrcnn.molding import unmold_detections, unmold_detections_compact
    image = np.asarray(Image.fromarray(photos["astronaut"]).resize((1024, 1024)))
    outputs = coco_model.forward([image], DETECTION_MIN_CONFIDENCE=0.1)
    molded = outputs.molded[0]
    args = (outputs.detections[0], outputs.masks[0], molded.original_shape, molded.image.shape,
            molded.window)
    rois, class_ids, scores, full = unmold_detections(*args)
    compact_rois, compact_ids, compact_scores, compact = unmold_detections_compact(*args)
    assert len(scores) == 100
    assert compact.nbytes <= 10 * 2**20, compact.nbytes
    assert full.nbytes == 1024 * 1024 * 100
    np.testing.assert_array_equal(compact.stack(), full)
    np.testing.assert_array_equal(compact_rois, rois)
    np.testing.assert_array_equal(compact.windows, rois)
    np.testing.assert_array_equal(compact.areas, full.sum(axis=(0, 1)))
    for i in (0, 37, 99):
        assert compact.coco_rle(i)["size"] == [1024, 1024]


def test_grayscale_and_rgba_arrays_are_converted(small_model, photos):
    """The conversion happens before the network, so the small model shows it as well."""
    model = small_model
    gray = (photos["coffee"].mean(axis=2)).astype(np.uint8)
    from_gray = model.detect([gray], DETECTION_MIN_CONFIDENCE=0.0)[0]
    from_rgb = model.detect([np.repeat(gray[:, :, None], 3, axis=2)],
                            DETECTION_MIN_CONFIDENCE=0.0)[0]
    assert len(from_gray["rois"]) > 0
    np.testing.assert_array_equal(from_gray["rois"], from_rgb["rois"])
    rgba = np.dstack([photos["coffee"], np.full(photos["coffee"].shape[:2], 255, np.uint8)])
    from_rgba = model.detect([rgba], DETECTION_MIN_CONFIDENCE=0.0)[0]
    from_rgb = model.detect([photos["coffee"]], DETECTION_MIN_CONFIDENCE=0.0)[0]
    np.testing.assert_array_equal(from_rgba["rois"], from_rgb["rois"])


def test_no_retracing_across_calls_and_sizes(small_model, photos):
    """Graph tracing does not depend on the model's size: the small model's steps are the
    COCO model's, at other widths."""
    model = small_model
    model.detect([photos["chelsea"]])
    traces = model.trace_count()
    for image in photos.values():
        model.detect([image])
    model.detect([photos["chelsea"]], IMAGE_MAX_DIM=512, IMAGE_MIN_DIM=400,
                 DETECTION_MIN_CONFIDENCE=0.9)
    assert model.trace_count() == traces


# ----------------------------------------------------------------- loader errors

def _copy_without(src, dst, drop=None, reshape=None):
    stored = read_h5_weights(src)
    with h5py.File(src, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        weight_names = {n: [w.decode() for w in f[n].attrs["weight_names"]] for n in stored}
    if drop:
        names.remove(drop)
        del stored[drop], weight_names[drop]
    if reshape:
        stored[reshape][0] = stored[reshape][0][..., :-1]
    write_keras2_weights(dst, names, stored, weight_names)
    return dst


def test_missing_layer_is_named_and_nothing_is_loaded(small_model, tmp_path):
    path = _copy_without(small_model.weights_path, tmp_path / "missing.h5", drop="fpn_p3")
    before = small_model.keras_model.get_layer("conv1").weights[0].numpy().copy()
    with pytest.raises(WeightsMismatchError, match="missing from the file: fpn_p3"):
        small_model.load_weights(path)
    np.testing.assert_array_equal(
        small_model.keras_model.get_layer("conv1").weights[0].numpy(), before)


def test_wrong_shape_is_named(small_model, tmp_path):
    path = _copy_without(small_model.weights_path, tmp_path / "shape.h5", reshape="mrcnn_mask")
    with pytest.raises(WeightsMismatchError,
                       match=r"layer mrcnn_mask, weight .*expects shape \(1, 1, 256, 4\)"):
        small_model.load_weights(path)


def test_exclude_skips_heads_with_another_class_count(coco_weights):
    """A fine-tuning user with NUM_CLASSES=4 loads everything but the class-specific heads."""
    from mrcnn.model import MaskRCNN

    class Shapes(CocoConfig):
        NUM_CLASSES = 4
        BACKBONE = "resnet101"
    model = MaskRCNN(Shapes())
    with pytest.raises(WeightsMismatchError, match="mrcnn_class_logits"):
        model.load_weights(coco_weights)
    heads = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]
    model.load_weights(coco_weights, exclude=heads)
    stored = read_h5_weights(coco_weights)
    np.testing.assert_array_equal(model.keras_model.get_layer("fpn_p2").weights[0].numpy(),
                                  stored["fpn_p2"][0])


def test_unexpected_layer_is_reported(small_model, tmp_path):
    stored = read_h5_weights(small_model.weights_path)
    names = list(stored) + ["extra_head"]
    stored["extra_head"] = [np.zeros((3, 3), np.float32)]
    weight_names = {n: [f"{n}/w{i}:0" for i in range(len(a))] for n, a in stored.items()}
    write_keras2_weights(tmp_path / "extra.h5", names, stored, weight_names, fixed_strings=False)
    with pytest.raises(WeightsMismatchError, match="in the file but not in the model: extra_head"):
        small_model.load_weights(tmp_path / "extra.h5")


def test_load_model_rejects_truncated_and_non_hdf5_files(coco_weights, tmp_path):
    from mrcnn import load_model
    from mrcnn.weights import WeightsFileError
    truncated = tmp_path / "mask_rcnn_coco.h5"
    truncated.write_bytes(coco_weights.read_bytes()[: 50_000_000])
    with pytest.raises(WeightsFileError):
        load_model(truncated)
    text = tmp_path / "notes.h5"
    text.write_text("this is not a weights file")
    with pytest.raises(WeightsFileError, match="HDF5"):
        load_model(text)
    with pytest.raises(WeightsFileError):
        load_model(tmp_path / "absent.h5")


def test_load_model_end_to_end_with_env_path(coco_weights, monkeypatch, photos):
    """mrcnn.load_model() with no argument reads $MRCNN_WEIGHTS."""
    import mrcnn
    monkeypatch.setenv("MRCNN_WEIGHTS", str(coco_weights))
    model = mrcnn.load_model(config=small_config_like_coco())
    assert model.config.NUM_CLASSES == 81
    assert len(model.detect([photos["astronaut"]])[0]["scores"]) > 0


def small_config_like_coco():
    """COCO head sizes (so the published file loads) at a small input size, for speed."""
    class FastCoco(CocoConfig):
        IMAGE_MIN_DIM = 256
        IMAGE_MAX_DIM = 256
    return FastCoco()
