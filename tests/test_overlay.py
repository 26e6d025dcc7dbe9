"""render: palette, labels, overlay blend, outlines, boxes, cut-outs, PNG; results filters."""
import io

import numpy as np
import pytest
from PIL import Image
from skimage.segmentation import find_boundaries

from mrcnn import COCO_CLASS_NAMES
from mrcnn.draw.overlay import (
    cutout,
    draw_detections,
    inner_boundary,
    label_text,
    palette,
    to_png_bytes,
)
from mrcnn.results import filter_detections, mask_areas

H, W = 60, 80


def make_result():
    """Two detections with separate masks; masks sit strictly inside their boxes."""
    masks = np.zeros((H, W, 2), bool)
    masks[12:28, 10:30, 0] = True          # rectangle
    yy, xx = np.mgrid[:H, :W]
    masks[..., 1] = (yy - 40) ** 2 + (xx - 60) ** 2 <= 8 ** 2  # disc
    return {
        "rois": np.array([[10, 8, 30, 32], [30, 50, 50, 70]], np.int32),
        "class_ids": np.array([1, 12], np.int32),
        "scores": np.array([0.98, 0.75], np.float32),
        "masks": masks,
    }


def make_image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


# ------------------------------------------------------------------ palette

def test_palette_deterministic_distinct_saturated():
    p = palette(30)
    assert p.shape == (30, 3) and p.dtype == np.uint8
    np.testing.assert_array_equal(p, palette(30))
    np.testing.assert_array_equal(palette(5), p[:5])  # colour i independent of n
    assert len({tuple(c) for c in p}) == 30
    rgb = p.astype(int)
    assert (rgb.max(1) - rgb.min(1)).min() >= 100  # saturated, not grey
    # neighbours are far apart
    assert np.abs(np.diff(rgb, axis=0)).sum(1).min() >= 60
    assert palette(0).shape == (0, 3)


def test_label_text():
    assert label_text("person", 0.9812) == "person 0.98"
    assert label_text("stop sign", np.float32(0.5)) == "stop sign 0.50"
    assert label_text("cat") == "cat"


# ------------------------------------------------------------------ overlay

def test_mask_blend_exact_inside_and_unchanged_outside():
    image, result = make_image(), make_result()
    colors = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    alpha = 0.4
    out = draw_detections(image, result, COCO_CLASS_NAMES, colors=colors,
                          mask_alpha=alpha, show_labels=False)
    assert out.dtype == np.uint8 and out.shape == image.shape

    interior = result["masks"] & ~np.dstack(
        [find_boundaries(result["masks"][..., i], mode="inner") for i in range(2)])
    for i in range(2):
        ys, xs = np.nonzero(interior[..., i])
        expected = np.rint((1 - alpha) * image[ys, xs].astype(np.float64)
                           + alpha * colors[i].astype(np.float64))
        np.testing.assert_array_equal(out[ys, xs], expected)
    # one explicit pixel
    y, x = 20, 20
    np.testing.assert_array_equal(
        out[y, x], np.rint(0.6 * image[y, x].astype(float) + 0.4 * np.array([255, 0, 0])))

    # outside every mask and every box nothing changes
    untouched = np.ones((H, W), bool)
    untouched &= ~result["masks"].any(-1)
    for y1, x1, y2, x2 in result["rois"]:
        untouched[y1:y2, x1:x2] = False
    np.testing.assert_array_equal(out[untouched], image[untouched])


def test_outline_is_the_mask_border():
    image, result = make_image(1), make_result()
    colors = np.array([[255, 0, 255], [0, 255, 255]], np.uint8)
    out = draw_detections(image, result, COCO_CLASS_NAMES, colors=colors,
                          show_masks=False, show_boxes=False, show_labels=False)
    changed = np.zeros((H, W), bool)
    for i in range(2):
        border = find_boundaries(result["masks"][..., i], mode="inner")
        assert border.sum() > 10
        assert (out[border] == colors[i]).all()
        changed |= border
    np.testing.assert_array_equal(out[~changed], image[~changed])


def test_inner_boundary_matches_skimage_including_image_edges():
    rng = np.random.default_rng(5)
    for _ in range(20):
        mask = rng.random((17, 23)) > 0.4
        np.testing.assert_array_equal(inner_boundary(mask),
                                      find_boundaries(mask, mode="inner"))
    # a mask touching the image edge, drawn through draw_detections
    masks = np.zeros((H, W, 1), bool)
    masks[:20, 50:, 0] = True
    result = {"rois": np.array([[0, 50, 20, 80]], np.int32),
              "class_ids": np.array([3], np.int32),
              "scores": np.array([0.9], np.float32), "masks": masks}
    image = np.zeros((H, W, 3), np.uint8)
    out = draw_detections(image, result, COCO_CLASS_NAMES, colors=[[255, 255, 255]],
                          show_masks=False, show_boxes=False, show_labels=False)
    np.testing.assert_array_equal(out[..., 0] == 255,
                                  find_boundaries(masks[..., 0], mode="inner"))


def test_boxes_are_two_pixel_rectangles():
    image, result = make_image(2), make_result()
    colors = np.array([[10, 20, 30], [40, 50, 60]], np.uint8)
    out = draw_detections(image, result, COCO_CLASS_NAMES, colors=colors,
                          show_masks=False, show_outlines=False, show_labels=False)
    y1, x1, y2, x2 = result["rois"][0]
    frame = np.zeros((H, W), bool)
    frame[y1:y2, x1:x2] = True
    frame[y1 + 2:y2 - 2, x1 + 2:x2 - 2] = False
    assert (out[frame] == colors[0]).all()
    inside = np.zeros((H, W), bool)
    inside[y1 + 2:y2 - 2, x1 + 2:x2 - 2] = True
    np.testing.assert_array_equal(out[inside], image[inside])
    # pixels just outside the exclusive y2/x2 edges are untouched
    np.testing.assert_array_equal(out[y2, x1:x2], image[y2, x1:x2])
    np.testing.assert_array_equal(out[y1:y2, x2], image[y1:y2, x2])


def test_labels_drawn_in_tag_above_box():
    image = np.zeros((H, W, 3), np.uint8)
    result = make_result()
    colors = np.array([[250, 0, 0], [0, 0, 250]], np.uint8)
    out = draw_detections(image, result, COCO_CLASS_NAMES, colors=colors,
                          show_masks=False, show_outlines=False, show_boxes=False)
    # detection 1 (box top y=30): its tag is the colour and sits above y=30
    above = out[:30, 50:]
    assert (above == colors[1]).all(-1).sum() > 20
    assert not (out[30:, :] == colors[1]).all(-1).any()
    # text pixels differ from the tag colour inside the tag
    assert (np.abs(above.astype(int) - colors[1]).sum(-1) > 100).sum() > 5


def test_label_moves_inside_image_at_top_edge():
    image = np.zeros((H, W, 3), np.uint8)
    result = make_result()
    result["rois"][0] = [0, 70, 20, 80]  # at the top-right corner
    out = draw_detections(image, result, COCO_CLASS_NAMES,
                          colors=[[250, 0, 0], [0, 0, 250]],
                          show_masks=False, show_outlines=False, show_boxes=False)
    assert (out == [250, 0, 0]).all(-1).any()


def test_input_not_modified():
    image, result = make_image(3), make_result()
    image_copy = image.copy()
    result_copy = {k: v.copy() for k, v in result.items()}
    out = draw_detections(image, result, COCO_CLASS_NAMES)
    assert not np.shares_memory(out, image)
    np.testing.assert_array_equal(image, image_copy)
    for key in result:
        np.testing.assert_array_equal(result[key], result_copy[key])
    assert not np.array_equal(out, image)


def test_default_colours_are_the_palette():
    image, result = make_image(4), make_result()
    a = draw_detections(image, result, COCO_CLASS_NAMES)
    b = draw_detections(image, result, COCO_CLASS_NAMES, colors=palette(2))
    np.testing.assert_array_equal(a, b)


def test_no_detections_returns_copy():
    image = make_image(5)
    result = filter_detections(make_result(), min_score=1.0)
    out = draw_detections(image, result, COCO_CLASS_NAMES)
    np.testing.assert_array_equal(out, image)
    assert not np.shares_memory(out, image)


# ------------------------------------------------------------------- cutout

def test_cutout_alpha_equals_mask_and_crop_is_mask_bbox():
    image = make_image(6)
    mask = np.zeros((H, W), bool)
    mask[15:25, 30:33] = True
    mask[22, 40] = True  # extends the bbox to x=40, y=15..24
    rgba = cutout(image, mask)
    assert rgba.dtype == np.uint8 and rgba.shape == (10, 11, 4)
    crop = mask[15:25, 30:41]
    np.testing.assert_array_equal(rgba[..., 3], crop * 255)
    np.testing.assert_array_equal(rgba[..., :3][crop], image[15:25, 30:41][crop])
    assert (rgba[..., :3][~crop] == 0).all()


def test_cutout_uses_mask_not_roi_and_empty_mask():
    image, result = make_image(7), make_result()
    rgba = cutout(image, result["masks"][..., 1])
    assert rgba.shape[:2] == (17, 17)  # the disc, not the 20x20 roi
    empty = cutout(image, np.zeros((H, W), bool))
    assert empty.shape == (1, 1, 4) and (empty == 0).all()


def test_to_png_bytes_roundtrip():
    rgb, rgba = make_image(8), cutout(make_image(8), make_result()["masks"][..., 0])
    for arr, mode in ((rgb, "RGB"), (rgba, "RGBA")):
        data = to_png_bytes(arr)
        assert data.startswith(b"\x89PNG")
        im = Image.open(io.BytesIO(data))
        assert im.mode == mode
        np.testing.assert_array_equal(np.asarray(im), arr)


# ------------------------------------------------------------------ results

def test_filter_detections_threshold_inclusive_and_classes():
    result = make_result()
    result["scores"] = np.array([0.7, 0.3], np.float32)
    kept = filter_detections(result, min_score=0.7)  # exactly equal is kept
    assert kept["class_ids"].tolist() == [1]
    assert kept["masks"].shape == (H, W, 1)
    np.testing.assert_array_equal(kept["masks"][..., 0], result["masks"][..., 0])
    for key in result:
        assert kept[key].dtype == result[key].dtype

    assert filter_detections(result, min_score=0.70001)["class_ids"].size == 0
    assert filter_detections(result)["class_ids"].tolist() == [1, 12]
    by_class = filter_detections(result, class_ids=[12])
    assert by_class["class_ids"].tolist() == [12]
    assert by_class["rois"].tolist() == [[30, 50, 50, 70]]
    np.testing.assert_array_equal(by_class["masks"][..., 0], result["masks"][..., 1])
    assert filter_detections(result, min_score=0.5, class_ids={12})["scores"].size == 0
    assert filter_detections(result, class_ids=[])["scores"].size == 0


def test_filter_detections_keeps_order_and_does_not_alias():
    result = make_result()
    result["scores"] = np.array([0.9, 0.8], np.float32)
    kept = filter_detections(result, class_ids=[12, 1])
    assert kept["class_ids"].tolist() == [1, 12]  # original order
    kept["masks"][:] = False
    assert result["masks"].any()


def test_filter_detections_empty():
    result = filter_detections(make_result(), min_score=0.99)
    assert result["rois"].shape == (0, 4) and result["rois"].dtype == np.int32
    assert result["masks"].shape == (H, W, 0)
    again = filter_detections(result, min_score=0.0, class_ids=[1])
    assert again["scores"].shape == (0,)
    assert mask_areas(again).shape == (0,)


def test_mask_areas():
    areas = mask_areas(make_result())
    assert areas.dtype == np.int64
    assert areas.tolist() == [16 * 20, int(make_result()["masks"][..., 1].sum())]


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_alpha_extremes(alpha):
    image, result = make_image(9), make_result()
    out = draw_detections(image, result, COCO_CLASS_NAMES, colors=[[1, 2, 3], [4, 5, 6]],
                          mask_alpha=alpha, show_boxes=False, show_labels=False,
                          show_outlines=False)
    m = result["masks"][..., 0]
    expected = image[m] if alpha == 0.0 else np.broadcast_to([1, 2, 3], image[m].shape)
    np.testing.assert_array_equal(out[m], expected)


def test_take_masks_is_the_same_for_both_memory_layouts():
    from mrcnn.results import kept_indices, take_masks
    rng = np.random.default_rng(3)
    planes = rng.random((7, 20, 30)) > 0.5                   # one plane per object
    stacked = np.ascontiguousarray(np.moveaxis(planes, 0, -1))  # (H, W, N) C-order
    view = np.moveaxis(planes, 0, -1)                          # (H, W, N) view of planes
    index = kept_indices({"scores": np.linspace(1, 0.4, 7).astype(np.float32),
                          "class_ids": np.array([1, 2, 1, 3, 1, 2, 1], np.int32)},
                         min_score=0.5, class_ids=[1, 2])
    np.testing.assert_array_equal(index, [0, 1, 2, 4, 5])
    expected = stacked[..., index]
    for masks in (stacked, view):
        taken = take_masks(masks, index)
        np.testing.assert_array_equal(taken, expected)
        assert not np.shares_memory(taken, masks)
