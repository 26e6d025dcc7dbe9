"""The training loop on a tiny network: layer selection, weight decay, loss going down,
checkpoints that load back through the usual loader, matterport's train() semantics."""
from __future__ import annotations

import csv
import threading

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.model import MaskRCNN
from mrcnn.training.calibration import backbone_statistics, calibrate_batchnorm
from mrcnn.training.data import TrainingBatches
from mrcnn.training.graph import decayed_variables, set_trainable
from mrcnn.training.shapes import ShapesConfig, ShapesDataset
from mrcnn.training.trainer import Trainer, TrainSteps


class TinyConfig(ShapesConfig):
    NAME = "tiny"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    IMAGES_PER_GPU = 2
    TOP_DOWN_PYRAMID_SIZE = 64
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    TRAIN_ROIS_PER_IMAGE = 16
    PRE_NMS_LIMIT = 500
    POST_NMS_ROIS_TRAINING = 100
    POST_NMS_ROIS_INFERENCE = 50
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    TRAIN_BN = False            # matterport's default; test_train_bn turns it on


def shapes(count, seed, size=64):
    dataset = ShapesDataset()
    dataset.load_shapes(count, size, size, seed=seed)
    dataset.prepare()
    return dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A calibrated from-scratch tiny model in training mode, and its datasets."""
    keras.utils.set_random_seed(0)
    model = MaskRCNN(mode="training", config=TinyConfig(),
                     model_dir=tmp_path_factory.mktemp("logs"))
    train_set, val_set = shapes(40, seed=11), shapes(8, seed=12)
    calibrate_batchnorm(model, train_set, images=8)
    batch = next(TrainingBatches(train_set, model.config, seed=0))
    return model, train_set, val_set, batch


@pytest.fixture(scope="module")
def trainer(tiny):
    """The tiny model's one Trainer: it owns the epochs done and the log folder."""
    return Trainer(tiny[0])


_TRAINERS: dict = {}


def steps_for(model, learning_rate, layers, batch) -> TrainSteps:
    """Compiled steps from the model's one Trainer (which builds its training graph once)."""
    trainer = _TRAINERS.setdefault(id(model), Trainer(model))
    return trainer.steps(learning_rate, layers, batch["images"].shape[1:],
                         batch["gt_masks"].shape[1:3])


def values_of(model):
    return {v.path: v.numpy().copy() for v in model.keras_model.weights}


@pytest.fixture
def restored(tiny):
    """The tiny model's weights put back after a test that moves them on purpose."""
    saved = values_of(tiny[0])
    yield tiny
    for variable in tiny[0].keras_model.weights:
        variable.assign(saved[variable.path])
    set_trainable(tiny[0].keras_model, "all")


# --------------------------------------------------------------------------- layer selection
def owner(variable) -> str:
    return variable.path.split("/")[0]


def expected_trainable(name: str, layers: str) -> bool:
    """matterport's layer groups, spelt out: heads always; ResNet stages from a threshold."""
    if name.startswith(("mrcnn_", "rpn_", "fpn_")):
        return True
    stage = int(name[3]) if name.startswith("res") else int(name[2]) if name[2].isdigit() else 1
    return stage >= {"heads": 6, "5+": 5, "4+": 4, "3+": 3, "all": 1}[layers]


@pytest.mark.parametrize("layers", ["heads", "3+", "4+", "5+", "all"])
def test_layers_select_exactly_matterports_groups(tiny, layers):
    model = tiny[0]
    km = model.keras_model
    set_trainable(km, layers)
    trainable = {v.path for v in km.trainable_variables}
    for variable in km.weights:
        wanted = (expected_trainable(owner(variable), layers)
                  and not variable.path.endswith(("moving_mean", "moving_variance")))
        assert (variable.path in trainable) == wanted, (layers, variable.path)
    set_trainable(km, "all")


def test_heads_training_changes_only_the_heads_and_never_batchnorm_statistics(restored):
    model, _, _, batch = restored
    before = values_of(model)
    trainer = steps_for(model, 0.01, "heads", batch)
    trainer.run(trainer.train_step, batch)
    after = values_of(model)
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    for path in before:
        frozen = (path.endswith(("moving_mean", "moving_variance"))
                  or not expected_trainable(path.split("/")[0], "heads"))
        if frozen:
            assert path not in changed, path
    assert any(p.startswith("mrcnn_class_conv1") and p.endswith("kernel") for p in changed)
    assert any(p.startswith("rpn_conv_shared") for p in changed)
    assert any(p.startswith("fpn_p2") for p in changed)


def test_weight_decay_never_touches_batchnorm_gamma_or_beta(restored):
    model, _, _, batch = restored
    km = model.keras_model
    set_trainable(km, "all")
    decayed = {v.path for v in decayed_variables(km.trainable_variables, km)}
    for variable in km.trainable_variables:
        is_bn = variable.path.endswith(("gamma", "beta"))
        assert (variable.path in decayed) != is_bn, variable.path
    # In the compiled step: with every loss weighted 0 only the decay moves weights (a
    # huge decay: matterport divides each tensor's L2 by its size).
    config = model.config
    saved = config.LOSS_WEIGHTS, config.WEIGHT_DECAY
    config.LOSS_WEIGHTS, config.WEIGHT_DECAY = {name: 0.0 for name in saved[0]}, 1e4
    try:
        trainer = steps_for(model, 0.01, "all", batch)
        before = values_of(model)
        trainer.run(trainer.train_step, batch)
        after = values_of(model)
    finally:
        config.LOSS_WEIGHTS, config.WEIGHT_DECAY = saved
    for path in before:
        if path.endswith(("gamma", "beta", "moving_mean", "moving_variance")):
            np.testing.assert_array_equal(after[path], before[path], err_msg=path)
        elif path.endswith("kernel"):
            assert np.linalg.norm(after[path]) < np.linalg.norm(before[path]), path


def test_a_few_steps_lower_the_total_loss_on_a_fixed_batch(restored):
    model, _, _, batch = restored
    trainer = steps_for(model, 0.002, "all", batch)

    def loss():
        tf.random.set_seed(1)                # the same RoI sampling for both measurements
        return trainer.run(trainer.validation_step, batch)["loss"]

    start = loss()
    for _ in range(12):
        trainer.run(trainer.train_step, batch)
    end = loss()
    assert np.isfinite(start) and end < 0.7 * start, (start, end)


def test_train_bn_trains_backbone_statistics_and_measures_them_exactly(restored):
    model, _, _, batch = restored
    config = model.config
    config.TRAIN_BN = True
    try:
        trainer = steps_for(model, 0.001, "all", batch)
        before = values_of(model)
        trainer.run(trainer.validation_step, batch)
        assert all(np.array_equal(v.numpy(), before[v.path]) for v in model.keras_model.weights)
        trainer.run(trainer.train_step, batch)
        after = values_of(model)
    finally:
        config.TRAIN_BN = False
    assert not np.array_equal(after["bn2a_branch2a/moving_mean"],
                              before["bn2a_branch2a/moving_mean"])
    for path in before:                       # the heads' BatchNorm keeps its statistics
        if path.startswith("mrcnn_") and path.endswith(("moving_mean", "moving_variance")):
            np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    # Precise statistics: bn_conv1's moving mean/variance become its input's moments.
    conv1 = keras.Model(model.keras_model.inputs[0],
                        model.keras_model.get_layer("conv1").output)
    inputs = conv1(batch["images"]).numpy().astype(np.float64)
    backbone_statistics(model, batch["images"])
    bn = model.keras_model.get_layer("bn_conv1")
    np.testing.assert_allclose(bn.moving_mean.numpy(), inputs.mean(axis=(0, 1, 2)), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), inputs.var(axis=(0, 1, 2)), rtol=1e-3)


# --------------------------------------------------------------------------- train()
@pytest.mark.slow
def test_train_epochs_checkpoints_csv_and_stop(tiny, trainer):
    model, train_set, val_set, _ = tiny
    first = trainer.epoch
    history = trainer.train(train_set, val_set, 0.002, epochs=first + 1, layers="heads", verbose=0)
    assert trainer.epoch == first + 1 and len(history) == 1
    assert set(history[0]) >= {"loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
                               "mrcnn_bbox_loss", "mrcnn_mask_loss", "val_loss", "checkpoint"}
    second = trainer.train(train_set, val_set, 0.002, epochs=first + 2, layers="all", verbose=0)
    assert [h["epoch"] for h in second] == [first + 2]
    assert trainer.train(train_set, val_set, 0.002, epochs=first + 2, layers="all", verbose=0) == []

    stop = threading.Event()

    class StopAtFirstStep:
        def on_train_batch_end(self, step, logs):
            stop.set()

    third = trainer.train(train_set, None, 0.002, epochs=first + 5, layers="all", verbose=0,
                          custom_callbacks=[StopAtFirstStep()], stop_event=stop)
    assert len(third) == 1 and third[0]["steps"] == 1 and "val_loss" not in third[0]
    folder = trainer.log_dir
    names = sorted(p.name for p in folder.glob("*.h5"))
    assert names == [f"mask_rcnn_tiny_{e:04d}.h5" for e in range(first + 1, first + 4)]
    with open(folder / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows][-3:] == [first + 1, first + 2, first + 3]
    assert all(float(r["loss"]) > 0 for r in rows)


def test_checkpoint_loads_back_through_the_loader_with_the_same_detections(tiny, trainer):
    model, train_set, _, _ = tiny
    history = trainer.train(train_set, None, 0.002, epochs=trainer.epoch + 1, layers="all",
                            verbose=0)
    path = history[-1]["checkpoint"]
    with h5py.File(path, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        assert "res2a_branch2a" in names and "rpn_model" in names and "mrcnn_mask" in names
        assert len(f["mrcnn_class_bn1"].attrs["weight_names"]) == 4
    loaded = MaskRCNN(TinyConfig()).load_weights(path)
    for mine, theirs in zip(model.keras_model.weights, loaded.keras_model.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)
    images = [train_set.load_image(i) for i in range(3)]
    expected = model.detect(images, DETECTION_MIN_CONFIDENCE=0.0)
    got = loaded.detect(images, DETECTION_MIN_CONFIDENCE=0.0)
    assert sum(len(r["class_ids"]) for r in expected) > 0
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(have["rois"], want["rois"])
        np.testing.assert_array_equal(have["class_ids"], want["class_ids"])
        np.testing.assert_allclose(have["scores"], want["scores"], rtol=1e-6)
        np.testing.assert_array_equal(have["masks"], want["masks"])


def test_matterports_exclude_loads_a_file_with_other_heads(tiny, tmp_path):
    from mrcnn.testing.synthetic_weights import generate_model_weights
    from mrcnn.weights.keras_h5 import WeightsMismatchError, read_h5_weights
    model = tiny[0]
    other = MaskRCNN(type("SixClasses", (TinyConfig,), {"NUM_CLASSES": 6})())
    path = generate_model_weights(other.keras_model, tmp_path / "six.h5")
    with pytest.raises(WeightsMismatchError, match="mrcnn_class_logits"):
        model.load_weights(path, by_name=True)
    heads = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]
    kept = {n: [w.numpy() for w in model.keras_model.get_layer(n).weights] for n in heads}
    model.load_weights(path, by_name=True, exclude=heads)
    stored = read_h5_weights(path)
    np.testing.assert_array_equal(model.keras_model.get_layer("res2a_branch2a").weights[0].numpy(),
                                  stored["res2a_branch2a"][0])
    for name in heads:
        for before, variable in zip(kept[name], model.keras_model.get_layer(name).weights):
            np.testing.assert_array_equal(variable.numpy(), before)
