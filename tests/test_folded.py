"""The folded-BatchNorm inference path computes what the Keras reference graph computes."""
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
    net = model.folded
    folded_c = net.backbone(tf.constant(batch))
    folded_p = net.pyramid(*folded_c)
    for name, ours, ref in zip(names, folded_c + folded_p, keras_maps):
        ref = ref.numpy()
        np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max(),
                                   err_msg=name)

    outputs = km([batch, metas, anchors], training=False)
    ref_probs, ref_deltas, ref_rois = outputs[1].numpy(), outputs[2].numpy(), outputs[4].numpy()
    rpn_probs, rpn_deltas = net.rpn(folded_p)
    np.testing.assert_allclose(rpn_probs.numpy(), outputs[5].numpy(), atol=1e-4)
    np.testing.assert_allclose(rpn_deltas.numpy(), outputs[6].numpy(), atol=1e-4)
    # Same proposals in, same class probabilities and deltas out.
    probs, deltas = net.classifier(tf.constant(ref_rois), tf.constant(metas), folded_p[:4])
    np.testing.assert_allclose(probs.numpy(), ref_probs, atol=1e-4)
    np.testing.assert_allclose(deltas.numpy(), ref_deltas, atol=1e-4)
    # Same boxes in, same 28x28 masks out (the reference runs all padded slots).
    boxes = outputs[0].numpy()[:, :, :4]
    masks = net.masks(tf.constant(boxes), boxes.shape[1], tf.constant(metas), folded_p[:4]).numpy()
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
