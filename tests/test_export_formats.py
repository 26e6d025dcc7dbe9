"""Annotation exports, each read back by a third-party reader where one exists.

pycocotools for COCO instances, Roboflow's supervision for YOLO, LabelMe and the VOC
XML, Pillow for VOC's palette PNGs (supervision reads VOC XML only, not the PNGs),
checked against VOC's documented colour map and index convention. The masks are built
by hand (no TensorFlow): an object with a hole, one in two parts touching the border,
objects touching the image's edges, an empty result, and a non-COCO model's classes.
"""
import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from references import mask_iou
from skimage.draw import disk, ellipse
from skimage.draw import polygon as fill_polygon

from mrcnn.classes import COCO_CATEGORY_IDS, COCO_CLASS_NAMES
from mrcnn.export import polygons as polygons_module
from mrcnn.export.annotations import FORMATS, IMAGES_DIR, annotations_zip
from mrcnn.export.polygons import DEFAULT_TOLERANCE, POLYGON_RULE, mask_outline
from mrcnn.results import CompactMasks

with warnings.catch_warnings():  # supervision warns once that OpenCV is absent
    warnings.simplefilter("ignore")
    import supervision as sv

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",
    "ignore::UserWarning:supervision.*")

H, W = 120, 160
SHAPES_NAMES = ["BG", "square", "circle", "triangle"]


def scene_masks() -> np.ndarray:
    """(H, W, 4) bool: a ring, two parts on the right border, an ellipse on the left
    border, a triangle in the bottom-left corner. No two overlap."""
    masks = np.zeros((H, W, 4), bool)
    rr, cc = disk((55, 60), 30)
    masks[rr, cc, 0] = True
    rr, cc = disk((55, 60), 11)
    masks[rr, cc, 0] = False                                      # the hole
    masks[0:30, 125:160, 1] = True                                # top-right corner
    masks[85:120, 135:160, 1] = True                              # bottom-right corner
    rr, cc = ellipse(60, 5, 18, 14, shape=(H, W))
    masks[rr, cc, 2] = True
    rr, cc = fill_polygon([92, 119, 119], [20, 20, 70], shape=(H, W))
    masks[rr, cc, 3] = True
    masks[:, :, 2] &= ~masks[:, :, 0]
    return masks


def make_result(masks: np.ndarray, class_ids, compact: bool = True) -> dict:
    """A result with boxes a few pixels larger than the masks (as the engine's are)."""
    rois = []
    for i in range(masks.shape[2]):
        rows, cols = np.flatnonzero(masks[..., i].any(1)), np.flatnonzero(masks[..., i].any(0))
        rois.append([max(rows[0] - 3, 0), max(cols[0] - 3, 0),
                     min(rows[-1] + 4, H), min(cols[-1] + 4, W)])
    rois = np.array(rois, np.int32).reshape(-1, 4)
    if compact:
        crops = [masks[y1:y2, x1:x2, i] for i, (y1, x1, y2, x2) in enumerate(rois)]
        stored = CompactMasks.from_crops((H, W), rois, crops)
    else:
        stored = masks
    return {"rois": rois, "class_ids": np.asarray(class_ids, np.int32),
            "scores": np.linspace(0.95, 0.6, len(class_ids)).astype(np.float32),
            "masks": stored}


def image_of(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def unpack(tmp_path: Path, data: bytes) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(tmp_path)
    return tmp_path


MASKS = scene_masks()
COCO_IDS = [1, 3, 17, 62]          # person, car, dog, chair


@pytest.fixture(scope="module")
def coco_export(tmp_path_factory):
    result = make_result(MASKS, COCO_IDS)
    data = annotations_zip([(7, "street scene.jpg", image_of(), result)], COCO_CLASS_NAMES,
                           list(FORMATS))
    return unpack(tmp_path_factory.mktemp("coco_export"), data), result


# ------------------------------------------------------------------ polygons

def test_rule_is_the_module_docstring_sentence():
    assert POLYGON_RULE in " ".join(polygons_module.__doc__.split())
    assert "RLE" in POLYGON_RULE and "slit" in POLYGON_RULE and "tolerance" in POLYGON_RULE


def test_outline_parts_holes_and_fallback():
    outline = mask_outline(MASKS[..., 0])
    assert len(outline.parts) == 1 and len(outline.holes[0]) == 1 and outline.has_holes
    two = mask_outline(MASKS[..., 1])
    assert len(two.parts) == 2 and not two.has_holes
    # One pixel is below any tolerance: kept unsimplified rather than dropped.
    assert len(mask_outline(np.ones((1, 1), bool), (5, 9), tolerance=3.0).parts) == 1
    assert mask_outline(np.zeros((4, 4), bool)).parts == ()
    # Points stay within half a pixel of the image.
    for ring in two.parts:
        assert ring.min() >= -0.5 and ring[:, 0].max() <= W - 0.5 and ring[:, 1].max() <= H - 0.5


# ---------------------------------------------------------------------- COCO

def test_coco_instances_read_by_pycocotools(coco_export):
    root, result = coco_export
    coco = COCO(str(root / "annotations/instances_default.json"))
    (image,) = coco.loadImgs(coco.getImgIds())
    assert image == {"id": 7, "file_name": "street scene.jpg", "height": H, "width": W}
    assert (root / IMAGES_DIR / image["file_name"]).is_file()
    cats = coco.loadCats(coco.getCatIds())
    assert len(cats) == 80 and {c["id"] for c in cats} == set(COCO_CATEGORY_IDS[1:])
    assert coco.loadCats(18)[0]["name"] == "dog" and coco.loadCats(62)[0]["name"] == "chair"
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[7]))
    assert [a["category_id"] for a in anns] == [COCO_CATEGORY_IDS[c] for c in COCO_IDS]
    assert len({a["id"] for a in anns}) == len(anns)
    for i, ann in enumerate(anns):
        mask = MASKS[..., i]
        decoded = coco.annToMask(ann).astype(bool)
        assert ann["iscrowd"] == 0 and ann["area"] == mask.sum()
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert ann["bbox"] == [cols[0], rows[0], cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]]
        if isinstance(ann["segmentation"], dict):
            np.testing.assert_array_equal(decoded, mask)            # RLE: exact
        else:
            assert mask_iou(decoded, mask) >= 0.9, (i, mask_iou(decoded, mask))
    assert isinstance(anns[0]["segmentation"], dict)                 # the ring: RLE
    assert isinstance(anns[1]["segmentation"], list) and len(anns[1]["segmentation"]) == 2
    assert all(isinstance(a["segmentation"], list) for a in anns[1:])


def test_coco_polygons_at_zero_tolerance_rasterise_to_the_mask(tmp_path):
    """Half-pixel convention: the unsimplified outline is pycocotools' exact mask."""
    masks = MASKS[..., 1:]
    result = make_result(masks, [1, 2, 3])
    root = unpack(tmp_path, annotations_zip([(1, "a.png", image_of(), result)], SHAPES_NAMES,
                                            ["coco"], tolerance=0.0))
    coco = COCO(str(root / "annotations/instances_default.json"))
    for i, ann in enumerate(coco.loadAnns(coco.getAnnIds())):
        assert isinstance(ann["segmentation"], list)
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), masks[..., i])


def test_coco_tolerance_trades_points_for_fidelity(tmp_path):
    result = make_result(MASKS[..., 2:3], [1])
    counts, ious = [], []
    for tolerance in (0.0, DEFAULT_TOLERANCE, 4.0):
        data = annotations_zip([(1, "a.png", image_of(), result)], SHAPES_NAMES, ["coco"],
                               tolerance=tolerance)
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            (ann,) = json.loads(zf.read("annotations/instances_default.json"))["annotations"]
        rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], H, W))
        counts.append(sum(len(p) for p in ann["segmentation"]))
        ious.append(mask_iou(mask_utils.decode(rle).astype(bool), MASKS[..., 2]))
    assert counts[0] > counts[1] > counts[2]
    assert ious[0] == 1.0 and ious[1] >= 0.9 and ious[2] >= 0.75


def test_non_coco_model_uses_its_own_names_and_ids(tmp_path):
    result = make_result(MASKS[..., 1:4], [3, 1, 2])
    root = unpack(tmp_path, annotations_zip([(1, "s.png", image_of(), result)], SHAPES_NAMES,
                                            ["coco", "yolo"]))
    coco = COCO(str(root / "annotations/instances_default.json"))
    assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] == [
        (1, "square"), (2, "circle"), (3, "triangle")]
    assert [a["category_id"] for a in coco.loadAnns(coco.getAnnIds())] == [3, 1, 2]
    ds = sv.DetectionDataset.from_yolo(str(root / IMAGES_DIR), str(root / "labels/default"),
                                       str(root / "data.yaml"), force_masks=True)
    assert ds.classes == ["square", "circle", "triangle"]
    (detections,) = [ds.annotations[p] for p in ds.image_paths]
    assert detections.class_id.tolist() == [2, 0, 1]


# ---------------------------------------------------------------------- YOLO

def test_yolo_read_by_supervision(coco_export):
    root, result = coco_export
    ds = sv.DetectionDataset.from_yolo(str(root / IMAGES_DIR), str(root / "labels/default"),
                                       str(root / "data.yaml"), force_masks=True)
    assert ds.classes == COCO_CLASS_NAMES[1:]
    (path,) = ds.image_paths
    assert Path(path).name == "street scene.jpg"
    detections = ds.annotations[path]
    assert len(detections) == MASKS.shape[2]                        # one line per object
    assert detections.class_id.tolist() == [c - 1 for c in COCO_IDS]
    for i in range(MASKS.shape[2]):                                 # holes and parts too
        assert mask_iou(detections.mask[i], MASKS[..., i]) >= 0.9, (i, mask_iou(detections.mask[i],
                                                                       MASKS[..., i]))
    assert not detections.mask[0][55, 60]                           # the hole stays a hole
    values = [float(v) for line in (root / "labels/default/street scene.txt").read_text()
              .splitlines() for v in line.split()[1:]]
    assert min(values) >= 0.0 and max(values) <= 1.0                # Ultralytics' range


# ------------------------------------------------------------------- LabelMe

def test_labelme_documented_structure(coco_export):
    root, result = coco_export
    document = json.loads((root / "labelme/street scene.json").read_text())
    assert set(document) == {"version", "flags", "shapes", "imagePath", "imageData",
                             "imageHeight", "imageWidth"}
    assert isinstance(document["version"], str) and document["flags"] == {}
    assert document["imageData"] is None
    assert (document["imageHeight"], document["imageWidth"]) == (H, W)
    with Image.open(root / "labelme" / document["imagePath"]) as picture:  # relative path
        assert picture.size == (W, H)
    groups = {}
    for shape in document["shapes"]:
        assert set(shape) >= {"label", "points", "group_id", "shape_type", "flags"}
        assert shape["shape_type"] == "polygon" and shape["flags"] == {}
        assert isinstance(shape["group_id"], int) and shape["label"] in COCO_CLASS_NAMES
        points = np.asarray(shape["points"], float)
        assert points.ndim == 2 and points.shape[1] == 2 and len(points) >= 3
        assert points.min() >= 0 and points[:, 0].max() <= W - 1 and points[:, 1].max() <= H - 1
        groups.setdefault(shape["group_id"], []).append(shape["label"])
    assert sorted(groups) == [1, 2, 3, 4] and len(groups[2]) == 2   # two parts, one group
    assert [labels[0] for _, labels in sorted(groups.items())] == [
        COCO_CLASS_NAMES[c] for c in COCO_IDS]


def test_labelme_read_by_supervision(coco_export):
    root, result = coco_export
    ds = sv.DetectionDataset.from_labelme(str(root / IMAGES_DIR), str(root / "labelme"),
                                          force_masks=True)
    (path,) = ds.image_paths
    detections = ds.annotations[path]
    names = [ds.classes[c] for c in detections.class_id]
    assert names == [COCO_CLASS_NAMES[c] for c in COCO_IDS]         # parts grouped back
    for i in range(MASKS.shape[2]):
        assert mask_iou(detections.mask[i], MASKS[..., i]) >= 0.9


# ----------------------------------------------------------------------- VOC

def voc_colormap_reference(count: int) -> np.ndarray:
    """VOC devkit's labelcolormap, written bit by bit."""
    out = np.zeros((count, 3), np.uint8)
    for index in range(count):
        r = g = b = 0
        c = index
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[index] = (r, g, b)
    return out


def test_voc_pngs_follow_voc_convention(coco_export):
    root, result = coco_export
    with Image.open(root / "SegmentationClass/street scene.png") as image:
        assert image.mode == "P" and image.size == (W, H)
        classes = np.asarray(image)
        palette = np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)
    with Image.open(root / "SegmentationObject/street scene.png") as image:
        assert image.mode == "P"
        objects = np.asarray(image)
    reference = voc_colormap_reference(256)
    np.testing.assert_array_equal(palette[:256], reference)
    assert tuple(reference[15]) == (192, 128, 128)                  # VOC's "person" colour
    assert 255 not in classes and 255 not in objects
    everything = MASKS.any(axis=2)
    assert (classes[~everything] == 0).all() and (objects[~everything] == 0).all()
    for i, class_id in enumerate(COCO_IDS):
        np.testing.assert_array_equal(objects == i + 1, MASKS[..., i])
        assert (classes[MASKS[..., i]] == class_id).all()


def test_voc_xml_read_by_supervision_matches_the_pngs(coco_export):
    root, result = coco_export
    ds = sv.DetectionDataset.from_pascal_voc(str(root / IMAGES_DIR), str(root / "Annotations"))
    (path,) = ds.image_paths
    detections = ds.annotations[path]
    assert [ds.classes[c] for c in detections.class_id] == [COCO_CLASS_NAMES[c]
                                                            for c in COCO_IDS]
    with Image.open(root / "SegmentationObject/street scene.png") as image:
        objects = np.asarray(image)
    for k, box in enumerate(detections.xyxy, start=1):               # object k <-> k-th XML
        rows, cols = np.flatnonzero((objects == k).any(1)), np.flatnonzero((objects == k).any(0))
        assert box.tolist() == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
    labelmap = (root / "labelmap.txt").read_text().splitlines()
    assert labelmap[1].startswith("background:0,0,0") and len(labelmap) == 1 + 81
    assert labelmap[1 + 15] == "bird:192,128,128::"                 # class 15, VOC colour 15
    assert (root / "ImageSets/Segmentation/default.txt").read_text() == "street scene\n"


def test_voc_overlap_goes_to_the_higher_score(tmp_path):
    masks = np.zeros((H, W, 2), bool)
    masks[10:60, 10:60, 0] = True
    masks[40:90, 40:90, 1] = True
    result = make_result(masks, [2, 3])                              # object 0 scores higher
    root = unpack(tmp_path, annotations_zip([(1, "o.png", image_of(), result)], SHAPES_NAMES,
                                            ["voc"]))
    objects = np.asarray(Image.open(root / "SegmentationObject/o.png"))
    classes = np.asarray(Image.open(root / "SegmentationClass/o.png"))
    assert objects[50, 50] == 1 and classes[50, 50] == 2
    assert objects[80, 80] == 2 and classes[80, 80] == 3


# ------------------------------------------------------------- the archive

def test_run_all_items_empty_results_and_repeated_names(tmp_path):
    result = make_result(MASKS, COCO_IDS)
    empty = make_result(np.zeros((H, W, 0), bool), [])
    items = [(1, "cat.jpg", image_of(1), result), (2, "uploads/cat.png", image_of(2), empty),
             (3, "scan.webp", image_of(3), result)]
    data = annotations_zip(items, COCO_CLASS_NAMES, list(FORMATS))
    root = unpack(tmp_path, data)
    assert sorted(p.name for p in (root / IMAGES_DIR).iterdir()) == [
        "cat.jpg", "cat_2.png", "scan.png"]
    with Image.open(root / IMAGES_DIR / "scan.png") as picture:          # lossless where PNG
        np.testing.assert_array_equal(np.asarray(picture), image_of(3))
    coco = COCO(str(root / "annotations/instances_default.json"))
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    assert coco.getAnnIds(imgIds=[2]) == [] and len(coco.getAnnIds(imgIds=[3])) == 4
    assert len(set(coco.getAnnIds())) == 8
    assert (root / "labels/default/cat_2.txt").read_text() == ""
    ds = sv.DetectionDataset.from_yolo(str(root / IMAGES_DIR), str(root / "labels/default"),
                                       str(root / "data.yaml"), force_masks=True)
    assert sorted(len(d) for d in ds.annotations.values()) == [0, 4, 4]
    assert json.loads((root / "labelme/cat_2.json").read_text())["shapes"] == []
    assert not np.asarray(Image.open(root / "SegmentationObject/cat_2.png")).any()
    assert (root / "ImageSets/Segmentation/default.txt").read_text().split() == [
        "cat", "cat_2", "scan"]


def test_export_names_never_collide(tmp_path):
    """a.png, a_3.png and a.jpg: the third can't take "a", nor "a_3" (the second's own)."""
    result = make_result(MASKS, COCO_IDS)
    items = [(1, "a.png", image_of(1), result), (2, "a_3.png", image_of(2), result),
             (3, "a.jpg", image_of(3), result)]
    root = unpack(tmp_path, annotations_zip(items, COCO_CLASS_NAMES, list(FORMATS)))
    assert sorted(p.name for p in (root / IMAGES_DIR).iterdir()) == ["a.png", "a_3.png",
                                                                     "a_4.jpg"]
    assert sorted(p.name for p in (root / "labels/default").iterdir()) == [
        "a.txt", "a_3.txt", "a_4.txt"]
    assert sorted(p.name for p in (root / "labelme").iterdir()) == [
        "a.json", "a_3.json", "a_4.json"]
    coco = COCO(str(root / "annotations/instances_default.json"))
    assert sorted(image["file_name"] for image in coco.dataset["images"]) == [
        "a.png", "a_3.png", "a_4.jpg"]


def test_dense_and_compact_masks_give_the_same_files():
    dense = annotations_zip([(1, "a.png", image_of(), make_result(MASKS, COCO_IDS, False))],
                            COCO_CLASS_NAMES, list(FORMATS))
    compact = annotations_zip([(1, "a.png", image_of(), make_result(MASKS, COCO_IDS))],
                              COCO_CLASS_NAMES, list(FORMATS))
    with zipfile.ZipFile(io.BytesIO(dense)) as a, zipfile.ZipFile(io.BytesIO(compact)) as b:
        assert a.namelist() == b.namelist()
        for name in a.namelist():
            assert a.read(name) == b.read(name), name


def test_only_ticked_formats_are_written():
    result = make_result(MASKS, COCO_IDS)
    with zipfile.ZipFile(io.BytesIO(annotations_zip([(1, "a.png", image_of(), result)],
                                                    COCO_CLASS_NAMES, ["yolo"]))) as zf:
        names = zf.namelist()
    assert "data.yaml" in names and "labels/default/a.txt" in names
    assert not [n for n in names if n.startswith(("annotations/", "labelme/", "Segmentation"))]
    with pytest.raises(ValueError, match="formats"):
        annotations_zip([(1, "a.png", image_of(), result)], COCO_CLASS_NAMES, ["tfrecord"])
    with pytest.raises(ValueError, match="formats"):
        annotations_zip([(1, "a.png", image_of(), result)], COCO_CLASS_NAMES, [])


# ------------------------------------------------------------------------ UI

def _exports_page():
    import numpy as np

    from mrcnn.classes import COCO_CLASS_NAMES
    from mrcnn.results import empty_result
    from studio.exports_ui import annotation_exports
    items = [(1, "photo.jpg", np.zeros((8, 8, 3), np.uint8), empty_result(8, 8))]
    annotation_exports(items, COCO_CLASS_NAMES, "one_", "photo")


def test_exports_ui_keys_and_download():
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_function(_exports_page).run(timeout=30)
    assert not at.exception
    assert {c.key for c in at.checkbox} == {f"one_fmt_{key}" for key in FORMATS}
    assert at.checkbox(key="one_fmt_coco").value is True
    assert at.slider(key="one_tolerance").value == DEFAULT_TOLERANCE
    assert POLYGON_RULE in at.slider(key="one_tolerance").help
    (button,) = [b for b in at.download_button if b.key == "one_download_annotations"]
    assert not button.disabled
    at.checkbox(key="one_fmt_coco").uncheck().run(timeout=30)
    (button,) = [b for b in at.download_button if b.key == "one_download_annotations"]
    assert button.disabled
