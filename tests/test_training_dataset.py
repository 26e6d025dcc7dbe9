"""Datasets for training: matterport's Dataset API, the COCO-JSON reader, generated
shapes, and the batches the trainer reads."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn.training.data import TrainingBatches, load_image_gt
from mrcnn.training.dataset import CocoDataset, Dataset
from mrcnn.training.shapes import CLASS_NAMES, ShapesConfig, ShapesDataset, draw_shapes


# --------------------------------------------------------------------------- Dataset API
def test_dataset_numbers_classes_and_images_like_matterport():
    dataset = Dataset()
    dataset.add_class("balloons", 1, "balloon")
    dataset.add_class("balloons", 1, "balloon")              # a repeat is ignored
    dataset.add_class("coco", 18, "dog")
    dataset.add_class("coco", 3, "car")
    dataset.add_image("balloons", "b.jpg", "/data/b.jpg", width=10)
    dataset.add_image("coco", 42, "/data/42.jpg")
    dataset.prepare()
    assert dataset.class_names == ["BG", "balloon", "dog", "car"]
    assert dataset.num_classes == 4 and list(dataset.image_ids) == [0, 1]
    assert dataset.map_source_class_id("coco.3") == 3
    assert dataset.get_source_class_id(2, "coco") == 18
    assert dataset.source_class_ids == {"": [0], "balloons": [0, 1], "coco": [0, 2, 3]}
    np.testing.assert_array_equal(dataset.active_class_ids(1), [1, 0, 1, 1])
    assert dataset.image_info[0]["width"] == 10
    assert dataset.image_reference(1) == "/data/42.jpg"
    with pytest.raises(ValueError, match="dot"):
        dataset.add_class("co.co", 1, "x")
    with pytest.raises(NotImplementedError, match="load_mask"):
        dataset.load_mask(0)


# --------------------------------------------------------------------------- COCO JSON
def write_coco(tmp_path):
    """Two images annotated in every segmentation form COCO files use."""
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(images / "a.png")
    Image.fromarray(rng.integers(0, 255, (50, 40), dtype=np.uint8)).save(images / "b.png")  # grey

    blob = np.zeros((60, 80), np.uint8)
    blob[30:50, 5:25] = 1
    blob[35:40, 10:15] = 0                                      # a hole: RLE keeps it
    compressed = mask_utils.encode(np.asfortranarray(blob))
    compressed["counts"] = compressed["counts"].decode("ascii")
    column = np.zeros((50, 40), np.uint8)
    column[5:45, 12:20] = 1
    runs, previous, count = [], 0, 0
    for value in column.flatten(order="F"):                  # uncompressed RLE, column-major
        if value != previous:
            runs.append(count)
            previous, count = value, 0
        count += 1
    runs.append(count)
    data = {
        "images": [{"id": 7, "file_name": "a.png", "width": 80, "height": 60},
                   {"id": 9, "file_name": "b.png", "width": 40, "height": 50}],
        "categories": [{"id": 3, "name": "car"}, {"id": 18, "name": "dog"},
                       {"id": 44, "name": "bottle"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 18, "iscrowd": 0,
             "segmentation": [[10, 5, 40, 5, 40, 25, 10, 25], [50, 5, 70, 20, 50, 20]]},
            {"id": 2, "image_id": 7, "category_id": 3, "iscrowd": 0,
             "segmentation": compressed},
            {"id": 3, "image_id": 9, "category_id": 3, "iscrowd": 1,
             "segmentation": {"size": [50, 40], "counts": runs}},
            {"id": 4, "image_id": 9, "category_id": 18, "iscrowd": 0,
             "segmentation": [[1, 1, 1, 1, 1, 1]]},            # zero area: skipped
        ]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path, images, blob, column


def test_coco_dataset_reads_polygons_and_both_rles(tmp_path):
    path, folder, blob, column = write_coco(tmp_path)
    dataset = CocoDataset()
    dataset.load_coco(path, folder)
    dataset.prepare()
    assert dataset.class_names == ["BG", "car", "dog", "bottle"]
    reference = COCO(str(path))                                 # pycocotools' own reading
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (60, 80, 2) and masks.dtype == bool
    np.testing.assert_array_equal(class_ids, [2, 1])            # dog, car
    np.testing.assert_array_equal(masks[:, :, 0], reference.annToMask(reference.anns[1]) > 0)
    np.testing.assert_array_equal(masks[:, :, 1], blob > 0)
    assert masks[:, :, 0][10, 20] and masks[:, :, 0][15, 60]   # both polygons of one object
    masks, class_ids = dataset.load_mask(1)
    np.testing.assert_array_equal(class_ids, [-1])              # the crowd, negative
    np.testing.assert_array_equal(masks[:, :, 0], column > 0)
    assert dataset.load_image(1).shape == (50, 40, 3)           # grey expanded to RGB
    assert "a.png" in dataset.image_reference(0)


def test_coco_dataset_trains_from_its_masks(tmp_path):
    path, folder, _, _ = write_coco(tmp_path)
    dataset = CocoDataset()
    dataset.load_coco(path, folder, class_ids=[3])              # only cars
    dataset.prepare()
    assert dataset.class_names == ["BG", "car"] and dataset.num_images == 2
    config = type("C", (ShapesConfig,), {"NUM_CLASSES": 2, "IMAGES_PER_GPU": 1})()
    targets = load_image_gt(dataset, config, 0)
    assert targets.image.shape == (128, 128, 3)
    np.testing.assert_array_equal(targets.class_ids, [1])
    y1, x1, y2, x2 = targets.boxes[0]                       # 80 px wide -> 128: scale 1.6
    assert (y1, x1, y2, x2) == (round(30 * 1.6) + 16, round(5 * 1.6), round(50 * 1.6) + 16,
                                round(25 * 1.6))
    batch = next(TrainingBatches(dataset, config, seed=0))  # image 1 has only a crowd: skipped
    assert batch["gt_class_ids"][0, 0] == 1


def test_coco_dataset_refuses_files_that_do_not_fit(tmp_path):
    path, folder, _, _ = write_coco(tmp_path)
    data = json.loads(path.read_text())
    data["images"][0]["width"] = 81
    path.write_text(json.dumps(data))
    dataset = CocoDataset()
    dataset.load_coco(path, folder)
    dataset.prepare()
    with pytest.raises(ValueError, match="80x60 pixels but the annotations say 81x60"):
        dataset.load_image(0)
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 7, "category_id": 3, "score": 0.9}]))
    with pytest.raises(ValueError, match="not a COCO instances file"):
        CocoDataset().load_coco(results, folder)


# --------------------------------------------------------------------------- shapes
def test_shapes_are_seeded_non_touching_and_classed_in_order():
    assert CLASS_NAMES == ["BG", "square", "circle", "triangle"]
    assert ShapesConfig.CLASS_NAMES == CLASS_NAMES and ShapesConfig().NUM_CLASSES == 4
    first = draw_shapes(np.random.default_rng([5, 1]))
    again = draw_shapes(np.random.default_rng([5, 1]))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    seen = set()
    for seed in range(40):
        image, masks, class_ids = draw_shapes(np.random.default_rng(seed))
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert 1 <= len(class_ids) <= 4 and masks.shape[2] == len(class_ids)
        assert not (masks.sum(axis=2) > 1).any()
        background = image[~masks.any(axis=2)]
        assert (background == background[0]).all()
        for i, class_id in enumerate(class_ids):
            region = masks[:, :, i]
            rows, cols = np.nonzero(region)
            fill = region.sum() / (np.ptp(rows) + 1) / (np.ptp(cols) + 1)
            expected = {1: (0.95, 1.0), 2: (0.72, 0.85), 3: (0.42, 0.62)}[int(class_id)]
            assert expected[0] <= fill <= expected[1], (seed, class_id, fill)
            assert (image[region] == image[region][0]).all()
            seen.add(int(class_id))
    assert seen == {1, 2, 3}


def test_occluded_shapes_are_visible_parts_in_their_own_colours():
    """``occlusion``: shapes overlap (as in the video benchmark's clip); each mask is the
    visible part, in one colour of its own, and no shape is hidden past MIN_VISIBLE of the
    smallest shape drawn (a triangle of half-height 10 px: 4 * 10**2 / sqrt(3) px)."""
    from scipy import ndimage

    from mrcnn.training.shapes import MIN_VISIBLE, shapes_dataset
    smallest = 4 * 10**2 / np.sqrt(3)
    touching = 0
    for seed in range(60):
        image, masks, class_ids = draw_shapes(np.random.default_rng([1, seed]), occlusion=True)
        assert 1 <= len(class_ids) <= 4 and masks.shape[2] == len(class_ids)
        assert not (masks.sum(axis=2) > 1).any()
        colours = []
        for i in range(len(class_ids)):
            region = masks[:, :, i]
            assert region.sum() >= MIN_VISIBLE * smallest - 8     # 8: rasterising
            assert (image[region] == image[region][0]).all()
            colours.append(tuple(image[region][0]))
            near = ndimage.binary_dilation(region) & masks.any(axis=2) & ~region
            touching += int(near.any())
            for j in range(len(class_ids)):
                if j != i and (near & masks[:, :, j]).any():
                    assert tuple(image[masks[:, :, j]][0]) != colours[i]
        # The last shape drawn is whole: its visible part is the full shape.
        last = masks[:, :, -1]
        rows, cols = np.nonzero(last)
        fill = last.sum() / (np.ptp(rows) + 1) / (np.ptp(cols) + 1)
        assert fill >= {1: 0.95, 2: 0.72, 3: 0.42}[int(class_ids[-1])]
    assert touching >= 10, "shapes overlap in a good share of the pictures"
    dataset = shapes_dataset(3, seed=1, pictures="overlapping")
    np.testing.assert_array_equal(
        dataset.load_image(2), draw_shapes(np.random.default_rng([1, 2]), occlusion=True)[0])


def test_clip_frames_are_seeded_frames_of_crossing_shapes_with_their_visible_masks():
    """``pictures="clips"``: each picture is one frame of a generated clip (3 to 5 shapes,
    the video benchmark's generator), labelled with the shapes' visible masks."""
    from mrcnn.training.shapes import ClipFramesDataset, shapes_dataset
    dataset = shapes_dataset(12, seed=4, size=96, pictures="clips")
    assert isinstance(dataset, ClipFramesDataset) and dataset.num_classes == 4
    again = shapes_dataset(12, seed=4, size=96, pictures="clips")
    counts = set()
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        masks, class_ids = dataset.load_mask(image_id)
        np.testing.assert_array_equal(image, again.load_image(image_id))
        assert image.shape == (96, 96, 3) and masks.shape[:2] == (96, 96)
        assert masks.shape[2] == len(class_ids) <= 5 and set(class_ids) <= {1, 2, 3}
        assert not (masks.sum(axis=2) > 1).any()
        for i in range(len(class_ids)):
            region = masks[:, :, i]
            assert region.sum() >= 16 and (image[region] == image[region][0]).all()
        counts.add(len(class_ids))
    assert max(counts) >= 4, counts
    assert not (shapes_dataset(1, seed=5, size=96, pictures="clips").load_image(0)
                == dataset.load_image(0)).all()
    with pytest.raises(ValueError, match="pictures must be one of"):
        shapes_dataset(1, seed=0, pictures="stills")
    # A frame is drawn alone: moving_shapes(first=k) starts with the clip's k-th frame.
    from mrcnn.video.samples import moving_shapes
    whole = list(moving_shapes(1.0, 10, 64, 4, seed=9))
    tail = list(moving_shapes(1.0, 10, 64, 4, seed=9, first=7))
    assert len(tail) == 3
    for (image, truth), (same, again) in zip(whole[7:], tail, strict=True):
        np.testing.assert_array_equal(image, same)
        assert [(g.id, g.class_id) for g in truth] == [(g.id, g.class_id) for g in again]
        for g, h in zip(truth, again, strict=True):
            np.testing.assert_array_equal(g.mask, h.mask)


def test_shapes_dataset_regenerates_each_image_from_its_seed():
    dataset = ShapesDataset()
    dataset.load_shapes(5, seed=3)
    dataset.prepare()
    image = dataset.load_image(2)
    masks, class_ids = dataset.load_mask(2)
    np.testing.assert_array_equal(image, draw_shapes(np.random.default_rng([3, 2]))[0])
    assert masks.shape[:2] == image.shape[:2] and len(class_ids) == masks.shape[2]


def test_batches_hold_what_the_training_step_reads():
    config = type("C", (ShapesConfig,), {"IMAGES_PER_GPU": 3, "MAX_GT_INSTANCES": 3})()
    dataset = ShapesDataset()
    dataset.load_shapes(10, seed=4)
    dataset.prepare()
    batch = next(TrainingBatches(dataset, config, seed=0))
    assert batch["images"].shape == (3, 128, 128, 3) and batch["images"].dtype == np.float32
    assert batch["image_meta"].shape == (3, config.IMAGE_META_SIZE)
    assert batch["rpn_match"].shape[1] == 3 * (32 ** 2 + 16 ** 2 + 8 ** 2 + 4 ** 2 + 2 ** 2)
    assert (np.abs(batch["rpn_match"]).sum(axis=1) <= config.RPN_TRAIN_ANCHORS_PER_IMAGE).all()
    assert batch["gt_masks"].shape == (3, 56, 56, 3)
    for b in range(3):
        n = int((batch["gt_class_ids"][b] > 0).sum())
        assert n >= 1 and not batch["gt_boxes"][b, n:].any()
        assert batch["gt_masks"][b, :, :, :n].any(axis=(0, 1)).all()
    image = dataset.load_image(int(batch["image_meta"][0, 0]))     # meta[0] is the image id
    np.testing.assert_allclose(batch["images"][0], image - config.MEAN_PIXEL, atol=1e-4)
