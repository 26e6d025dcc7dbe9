"""The "How it works" page states the sizes of the network it shows, not COCO's: a
shapes model (ResNet-50, 128 pyramid channels, 5x5 classifier crops here, 7x7 mask
crops, 14x14 masks, FC layers of 256, 4 classes) gets its own numbers in every
section's text. The page itself renders with the COCO model in
``test_page_how_it_works.py``; here the sections' text functions run on a record."""
from __future__ import annotations

import numpy as np
import pytest

from mrcnn.training.shapes import ShapesConfig, draw_shapes
from studio.lesson_follow_ui import trail_mask_text, trail_steps_text
from studio.lesson_heads_ui import (
    heads_text,
    masks_shapes,
    masks_text,
    roi_align_shapes,
    roi_align_text,
)
from studio.lesson_network_ui import NetworkSizes, backbone_shapes, backbone_text, by, sizes
from studio.lesson_what_if_ui import mask_cut_caption


class LessonShapesConfig(ShapesConfig):
    """ShapesConfig's sizes at 64 px (a quick run), with POOL_SIZE 5 so that no crop
    size coincides with COCO's 7x7, and every RoI a candidate (random weights)."""
    NAME = "lesson_shapes"
    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    POOL_SIZE = 5
    DETECTION_MIN_CONFIDENCE = 0.0


@pytest.fixture(scope="module")
def shapes_run():
    from mrcnn.intermediates import compute_intermediates
    from mrcnn.model import MaskRCNN

    config = LessonShapesConfig()
    image, _, _ = draw_shapes(np.random.default_rng(0), 64, 64)
    record = compute_intermediates(MaskRCNN(config), image)
    assert len(record.class_ids) > 0
    return config, record


def test_sizes_come_from_the_shapes_models_config_and_tensors(shapes_run):
    config, insp = shapes_run
    assert sizes(insp) == NetworkSizes(
        backbone="ResNet-50", stage_channels=(256, 512, 1024, 2048),
        pyramid_channels=config.TOP_DOWN_PYRAMID_SIZE,
        pool=(config.POOL_SIZE,) * 2, mask_pool=(config.MASK_POOL_SIZE,) * 2,
        mask=tuple(config.MASK_SHAPE), fc=config.FPN_CLASSIF_FC_LAYERS_SIZE,
        classes=config.NUM_CLASSES)
    assert (config.TOP_DOWN_PYRAMID_SIZE, config.POOL_SIZE, config.MASK_POOL_SIZE,
            tuple(config.MASK_SHAPE), config.FPN_CLASSIF_FC_LAYERS_SIZE,
            config.NUM_CLASSES) == (128, 5, 7, (14, 14), 256, 4)
    assert by((7, 7), 256) == "7×7×256" and by((14, 14)) == "14×14"


def test_every_section_states_the_shapes_models_sizes_and_none_of_cocos(shapes_run):
    from mrcnn.follow import follow_detection

    config, insp = shapes_run
    trail = follow_detection(insp, 0)
    name = insp.class_name(insp.class_ids[0])
    slots = config.POST_NMS_ROIS_INFERENCE
    sections = {
        "backbone": (backbone_text(insp) + " " + " ".join(backbone_shapes(insp)),
                     ["A ResNet-50 ", "P6 with 128 channels each",
                      "C2..C5 channels 256, 512, 1024, 2048", "P2..P6 channels 128"],
                     ["ResNet-101", "256 channels each", "P2..P6 channels 256"]),
        "roi_align": (roi_align_text(insp) + " " + " ".join(roi_align_shapes(insp)),
                      ["5×5 for the classifier", "7×7 for the mask head",
                       f"classifier input ({slots}, 5, 5, 128)",
                       "mask-head input (detections, 7, 7, 128)"],
                      ["7×7 for the classifier", "14×14", "256)"]),
        "heads": (heads_text(insp),
                  ["5×5×128 crop", "fully connected layers of 256", "each of the 4 classes"],
                  ["7×7×256", "of 1024", "81 classes"]),
        "masks": (masks_text(insp) + " " + " ".join(masks_shapes(insp)),
                  ["a 7×7×128 crop", "giving a 14×14 probability map",
                   f"mask head output (1, {config.DETECTION_MAX_INSTANCES}, 14, 14, 4)"],
                  ["14×14×256", "28×28", "28, 28", "81)"]),
        "follow": (trail_steps_text(insp, trail, name) + " "
                   + trail_mask_text(insp, trail, 0, name),
                   ["(5×5 for the classifier)", f"**P{trail.mask_level}** (7×7)",
                    "a 14×14 probability map"],
                   ["7×7 for the classifier", "(14×14)", "28×28"]),
        "what_if": (mask_cut_caption(insp), ["stretched 14×14 mask"], ["28×28"]),
    }
    for section, (text, present, absent) in sections.items():
        for phrase in present:
            assert phrase in text, (section, phrase, text)
        for phrase in absent:
            assert phrase not in text, (section, phrase, text)
