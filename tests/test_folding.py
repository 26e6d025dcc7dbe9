"""Inference (the network's own layers, BatchNorm folded by ``mrcnn.folding``) computes
what the Keras reference graph computes, and follows every change of weights."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from mrcnn.anchors import get_anchors
from mrcnn.molding import unmold_detections


def _inputs(model, image):
    batch, metas, molded = model.mold_inputs([image])
    anchors = get_anchors(model.config, batch.shape[1:3])[None]
    return batch, metas, anchors, molded


def test_every_stage_matches_the_keras_layers(small_model, photos):
    model = small_model
    batch, metas, anchors, _ = _inputs(model, photos["chelsea"])
    km = model.keras_model
    names = ["C2", "C3", "C4", "C5", "P2", "P3", "P4", "P5", "P6"]
    keras_maps = keras.Model(km.inputs[0], [model.feature_maps[n] for n in names])(batch)
    features = model.network.features(tf.constant(batch))
    folded_p = [features[n] for n in ("P2", "P3", "P4", "P5")]
    for name, ref in zip(names, keras_maps):
        ref = ref.numpy()
        np.testing.assert_allclose(features[name].numpy(), ref, rtol=1e-3,
                                   atol=1e-3 * np.abs(ref).max(), err_msg=name)

    outputs = km([batch, metas, anchors], training=False)
    ref_probs, ref_deltas, ref_rois = outputs[1].numpy(), outputs[2].numpy(), outputs[4].numpy()
    np.testing.assert_allclose(features["rpn_probs"].numpy(), outputs[5].numpy(), atol=1e-4)
    np.testing.assert_allclose(features["rpn_deltas"].numpy(), outputs[6].numpy(), atol=1e-4)
    # Same proposals in, same class probabilities and deltas out.
    probs, deltas = model.network.classifier(tf.constant(ref_rois), tf.constant(metas),
                                           folded_p)
    np.testing.assert_allclose(probs.numpy(), ref_probs, atol=1e-4)
    np.testing.assert_allclose(deltas.numpy(), ref_deltas, atol=1e-4)
    # Same boxes in, same 28x28 masks out (the reference runs all padded slots).
    boxes = outputs[0].numpy()[:, :, :4]
    masks = model.network.masks(tf.constant(boxes), boxes.shape[1], tf.constant(metas),
                                folded_p).numpy()
    np.testing.assert_allclose(masks, outputs[3].numpy(), atol=1e-4)


def test_detect_matches_the_reference_graph_on_the_coco_model(coco_model, photos):
    """detect() (folded, masks on real detections only) against keras_model + unmolding."""
    for name in ("astronaut", "coffee"):
        image = photos[name]
        result = coco_model.detect([image])[0]
        batch, metas, anchors, molded = _inputs(coco_model, image)
        outputs = coco_model.keras_model([batch, metas, anchors], training=False)
        detections, masks = outputs[0].numpy()[0], outputs[3].numpy()[0]
        count = int((detections[:, 4] > 0).sum())
        own_class = masks[np.arange(count), :, :, detections[:count, 4].astype(int)]
        rois, class_ids, scores, full = unmold_detections(
            detections, own_class, molded[0].original_shape, molded[0].image.shape,
            molded[0].window)
        assert len(scores) == len(result["scores"]) > 0, name
        np.testing.assert_array_equal(result["class_ids"], class_ids)
        assert np.abs(result["rois"] - rois).max() <= 1
        np.testing.assert_allclose(result["scores"], scores, atol=1e-4)
        differing = (result["masks"] != full).sum(axis=(0, 1))
        assert differing.max() <= 0.01 * max(1, full.sum(axis=(0, 1)).max()), name


def test_every_batchnorm_is_folded_into_its_convolution(small_model):
    """The backbone's and heads' BatchNorm layers all fold; nothing else is rewritten."""
    from mrcnn.folding import FoldedGraph
    network = small_model.network
    bns = {layer.name for layer in small_model.feature_model.layers
           if isinstance(layer, keras.layers.BatchNormalization)}
    folded = {layer.name for layer in small_model.feature_model.layers
              if id(layer) in network.features_graph.folded_bns}
    assert folded == bns and len(bns) > 30
    assert len(network.classifier_graph.folded_bns) == 2
    assert len(network.mask_graph.folded_bns) == 4
    # A convolution whose output is also read elsewhere is not folded.
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, padding="same")(x)
    z = keras.layers.BatchNormalization()(y)
    assert not FoldedGraph(keras.Model(x, [y, z])).folds


def _reference_detect(model, image):
    batch, metas, anchors, molded = _inputs(model, image)
    detections = model.keras_model([batch, metas, anchors], training=False)[0].numpy()[0]
    count = int((detections[:, 4] > 0).sum())
    return detections[:count]


def test_detect_follows_weights_changed_through_the_raw_keras_api(small_model, photos):
    """set_weights, a variable's assign and an optimiser step all reach detect() at once:
    there is no copy of the weights to refresh."""
    model = small_model
    image = photos["chelsea"]
    original = model.keras_model.get_weights()
    try:
        before = model.detect([image])[0]
        rng = np.random.default_rng(1)
        # 1. keras_model.set_weights: every weight scaled (BatchNorm statistics too).
        model.keras_model.set_weights(
            [w * rng.uniform(0.8, 1.2, size=w.shape).astype(w.dtype) if w.ndim else w
             for w in original])
        after = model.detect([image])[0]
        reference = _reference_detect(model, image)
        assert len(after["scores"]) == len(reference) > 0
        np.testing.assert_allclose(np.sort(after["scores"]), np.sort(reference[:, 5]),
                                   atol=1e-4)
        assert not (len(after["scores"]) == len(before["scores"])
                    and np.allclose(after["scores"], before["scores"]))
        # 2. One BatchNorm's moving variance assigned: the backbone's output follows.
        bn = model.keras_model.get_layer("bn_conv1")
        bn.moving_variance.assign(bn.moving_variance.numpy() * 4.0)
        batch = tf.constant(_inputs(model, image)[0])
        ours = model.network.features(batch)["C2"].numpy()
        names = ["C2"]
        ref = keras.Model(model.keras_model.inputs[0],
                          [model.feature_maps[n] for n in names])(batch).numpy()
        np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())
        # 3. An optimiser step on the mask head's last layer: the masks follow.
        layer = model.keras_model.get_layer("mrcnn_mask").layer
        masks_before = model.forward([image]).masks
        optimizer = keras.optimizers.SGD(learning_rate=10.0)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer.bias) + tf.reduce_sum(layer.kernel)
        optimizer.apply(tape.gradient(loss, [layer.kernel, layer.bias]),
                        [layer.kernel, layer.bias])
        masks_after = model.forward([image]).masks
        assert masks_before.shape == masks_after.shape and masks_before.size
        assert np.abs(masks_after - masks_before).max() > 0.05
    finally:
        model.keras_model.set_weights(original)
    np.testing.assert_array_equal(model.detect([image])[0]["class_ids"], before["class_ids"])
