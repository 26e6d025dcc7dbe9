"""export: RLE round-trip, COCO results, detections JSON, ZIP of cut-outs."""
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from mrcnn import COCO_CATEGORY_IDS, COCO_CLASS_NAMES
from mrcnn.draw.overlay import cutout
from mrcnn.export.bundle import cutouts_zip
from mrcnn.export.coco import coco_results, decode_mask, encode_mask
from mrcnn.serve.protocol import encode_detections as detections_json

H, W = 48, 64

# pycocotools' decode trips a NumPy 2 DeprecationWarning inside its own code.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def make_result():
    masks = np.zeros((H, W, 3), bool)
    masks[5:20, 4:30, 0] = True
    masks[25:40, 30:60, 1] = True
    masks[30:45, 10:20, 2] = True
    return {
        "rois": np.array([[5, 4, 20, 30], [25, 30, 40, 60], [30, 10, 45, 20]], np.int32),
        "class_ids": np.array([12, 80, 1], np.int32),
        "scores": np.array([0.9876543, 0.61, 0.5], np.float32),
        "masks": masks,
    }


# ---------------------------------------------------------------------- RLE

def test_rle_roundtrip_random_empty_full():
    rng = np.random.default_rng(0)
    cases = [rng.random((H, W)) > p for p in (0.1, 0.5, 0.9)]
    cases += [np.zeros((H, W), bool), np.ones((H, W), bool),
              np.ones((1, 1), bool), rng.random((7, 300)) > 0.5]
    for mask in cases:
        rle = encode_mask(mask)
        assert rle["size"] == list(mask.shape)
        assert isinstance(rle["counts"], str)
        json.dumps(rle)  # JSON-able
        np.testing.assert_array_equal(decode_mask(rle), mask)
        # and pycocotools itself reads it back identically
        coco = {"size": rle["size"], "counts": rle["counts"].encode()}
        np.testing.assert_array_equal(mask_utils.decode(coco).astype(bool), mask)
        assert int(mask_utils.area(coco)) == int(mask.sum())


def test_rle_is_column_major_like_coco():
    mask = np.zeros((3, 4), bool)
    mask[0, 1] = True  # Fortran order: index 3
    rle = encode_mask(mask)
    uncompressed = mask_utils.frPyObjects({"size": [3, 4], "counts": [3, 1, 8]}, 3, 4)
    assert rle["counts"] == uncompressed["counts"].decode()
    np.testing.assert_array_equal(decode_mask({"size": [3, 4], "counts": [3, 1, 8]}), mask)


def test_decode_mask_accepts_bytes_counts():
    mask = np.eye(5, dtype=bool)
    rle = encode_mask(mask)
    np.testing.assert_array_equal(decode_mask({**rle, "counts": rle["counts"].encode()}), mask)


# ------------------------------------------------------------- COCO results

def test_category_mapping():
    assert COCO_CLASS_NAMES[12] == "stop sign" and COCO_CLASS_NAMES[80] == "toothbrush"
    out = coco_results(make_result(), image_id=42)
    assert [d["category_id"] for d in out] == [13, 90, 1]
    assert all(d["image_id"] == 42 for d in out)


def test_bbox_is_xywh_floats_and_score_full_precision():
    result = make_result()
    out = coco_results(result)
    assert out[0]["bbox"] == [4.0, 5.0, 26.0, 15.0]
    assert out[1]["bbox"] == [30.0, 25.0, 30.0, 15.0]
    assert all(isinstance(v, float) for d in out for v in d["bbox"])
    assert out[0]["score"] == float(np.float32(0.9876543))
    assert isinstance(out[0]["score"], float)
    np.testing.assert_array_equal(decode_mask(out[2]["segmentation"]), result["masks"][..., 2])
    json.dumps(out)


def test_coco_results_loadable_by_pycocotools():
    from pycocotools.coco import COCO
    result = make_result()
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 0, "height": H, "width": W}],
        "categories": [{"id": c} for c in (1, 13, 90)],
        "annotations": [],
    }
    gt.createIndex()
    dt = gt.loadRes(coco_results(result))
    assert len(dt.anns) == 3
    ann = dt.anns[1]
    assert ann["category_id"] == 13 and ann["area"] == float(result["masks"][..., 0].sum())


def test_coco_results_custom_mapping_and_errors():
    result = make_result()
    mapping = {12: 7, 80: 8, 1: 9}
    results = coco_results(result, class_ids_to_category=mapping)
    assert [d["category_id"] for d in results] == [7, 8, 9]
    result["class_ids"] = np.array([0, 80, 1], np.int32)  # background has no category
    with pytest.raises(ValueError):
        coco_results(result)


def test_coco_results_empty():
    result = make_result()
    empty = {"rois": result["rois"][:0], "class_ids": result["class_ids"][:0],
             "scores": result["scores"][:0], "masks": result["masks"][..., :0]}
    assert coco_results(empty) == []
    assert detections_json(empty, COCO_CLASS_NAMES, (H, W)) == []


# ----------------------------------------------------------- detections JSON

def test_detections_json_shape_and_order():
    result = make_result()
    # shuffle so that order-by-score is actually exercised
    perm = [2, 0, 1]
    shuffled = {k: (v[..., perm] if k == "masks" else v[perm]) for k, v in result.items()}
    out = detections_json(shuffled, COCO_CLASS_NAMES, (H, W))
    assert [d["class_name"] for d in out] == ["stop sign", "toothbrush", "person"]
    first = out[0]
    assert set(first) == {"class_id", "class_name", "score", "box", "mask"}
    assert first["class_id"] == 12 and first["box"] == [5, 4, 20, 30]
    assert all(isinstance(v, int) for v in first["box"])
    assert isinstance(first["score"], float)
    np.testing.assert_array_equal(decode_mask(first["mask"]), result["masks"][..., 0])
    assert json.loads(json.dumps(out)) == out


def test_detections_json_rejects_wrong_image_size():
    with pytest.raises(ValueError):
        detections_json(make_result(), COCO_CLASS_NAMES, (H + 1, W))


# ---------------------------------------------------------------------- ZIP

def test_cutouts_zip_contents():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    result = make_result()
    data = cutouts_zip(image, result, COCO_CLASS_NAMES)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        names = sorted(zf.namelist())
        assert names == sorted([
            "cutouts/00_stop-sign_0.99.png", "cutouts/01_toothbrush_0.61.png",
            "cutouts/02_person_0.50.png",
            "masks/00_stop-sign.png", "masks/01_toothbrush.png", "masks/02_person.png",
            "detections.json",
        ])
        cut = np.asarray(Image.open(io.BytesIO(zf.read("cutouts/00_stop-sign_0.99.png"))))
        np.testing.assert_array_equal(cut, cutout(image, result["masks"][..., 0]))
        assert cut.shape == (15, 26, 4)

        mask_im = Image.open(io.BytesIO(zf.read("masks/01_toothbrush.png")))
        assert mask_im.size == (W, H) and mask_im.mode == "L"
        mask_arr = np.asarray(mask_im)
        assert set(np.unique(mask_arr)) == {0, 255}
        np.testing.assert_array_equal(mask_arr == 255, result["masks"][..., 1])

        coco = json.loads(zf.read("detections.json"))
        assert coco == json.loads(json.dumps(coco_results(result)))
        assert [d["category_id"] for d in coco] == [13, 90, 1]


def test_cutouts_zip_empty_result():
    result = make_result()
    empty = {"rois": result["rois"][:0], "class_ids": result["class_ids"][:0],
             "scores": result["scores"][:0], "masks": result["masks"][..., :0]}
    data = cutouts_zip(np.zeros((H, W, 3), np.uint8), empty, COCO_CLASS_NAMES)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == ["detections.json"]
        assert json.loads(zf.read("detections.json")) == []


def test_category_table_is_consistent():
    assert COCO_CATEGORY_IDS[12] == 13 and COCO_CATEGORY_IDS[80] == 90
