"""COCO mAP of a model on a dataset, with pycocotools' ``COCOeval`` (box and mask)."""
from __future__ import annotations

import contextlib
import io

import numpy as np


def _rle(mask) -> dict:
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _xywh(box) -> list:
    y1, x1, y2, x2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def ground_truth(dataset, image_ids) -> dict:
    """A COCO instances dict of the dataset's images (crowds marked ``iscrowd``)."""
    from mrcnn.training.targets import extract_bboxes
    images, annotations = [], []
    for image_id in image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        h, w = masks.shape[:2]
        images.append({"id": int(image_id), "height": h, "width": w})
        for box, class_id, i in zip(extract_bboxes(masks), class_ids, range(len(class_ids))):
            annotations.append({
                "id": len(annotations) + 1, "image_id": int(image_id),
                "category_id": int(abs(class_id)), "iscrowd": int(class_id < 0),
                "segmentation": _rle(masks[:, :, i]), "area": float(masks[:, :, i].sum()),
                "bbox": _xywh(box)})
    categories = [{"id": i, "name": name}
                  for i, name in enumerate(dataset.class_names) if i > 0]
    return {"images": images, "annotations": annotations, "categories": categories}


def detections(model, dataset, image_ids, batch_size=8) -> list:
    """``model.detect`` on every image, as COCO results (RLE masks)."""
    results = []
    ids = list(image_ids)
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        found = model.detect([dataset.load_image(i) for i in chunk])
        for image_id, r in zip(chunk, found):
            for k in range(len(r["class_ids"])):
                results.append({"image_id": int(image_id), "category_id": int(r["class_ids"][k]),
                                "score": float(r["scores"][k]), "bbox": _xywh(r["rois"][k]),
                                "segmentation": _rle(r["masks"][:, :, k])})
    return results


def coco_map(model, dataset, image_ids=None, batch_size=8) -> dict:
    """{"map50_segm", "map_segm", "map50_bbox", "map_bbox", "detections"}.

    ``map`` is COCO's AP averaged over IoU 0.50:0.95, ``map50`` AP at IoU 0.5, both
    over all classes at up to 100 detections per image. A model that finds nothing
    scores 0.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    image_ids = list(dataset.image_ids if image_ids is None else image_ids)
    gt = COCO()
    gt.dataset = ground_truth(dataset, image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    found = detections(model, dataset, image_ids, batch_size)
    scores = {"detections": len(found)}
    for kind in ("segm", "bbox"):
        if not found:
            scores[f"map50_{kind}"] = scores[f"map_{kind}"] = 0.0
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation = COCOeval(gt, gt.loadRes(found), kind)
            evaluation.params.imgIds = image_ids
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        scores[f"map_{kind}"] = float(max(evaluation.stats[0], 0.0))
        scores[f"map50_{kind}"] = float(max(evaluation.stats[1], 0.0))
    return scores
