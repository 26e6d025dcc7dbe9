"""Image molding (network input) and unmolding (detections back to image pixels).

numpy and scikit-image only, matching matterport's ``resize_image``,
``mold_image``, ``compose_image_meta``, ``unmold_mask`` and
``unmold_detections``. Masks are stretched over their boxes by
:func:`mask_in_box`, the same bilinear resize as the reference's
``skimage.transform.resize(order=1, mode="constant")`` computed as two small
matrix products (about 10x faster; ``tests/test_stages_detection.py`` checks
it pixel for pixel against scikit-image).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import skimage.transform

from mrcnn.anchors import denorm_boxes, norm_boxes
from mrcnn.results import CompactMasks


def sk_resize(image, output_shape, order=1, mode="constant", cval=0, clip=True,
              preserve_range=False):
    """scikit-image resize with the reference's fixed arguments (no anti-aliasing)."""
    return skimage.transform.resize(
        image, output_shape, order=order, mode=mode, cval=cval, clip=clip,
        preserve_range=preserve_range, anti_aliasing=False, anti_aliasing_sigma=None)


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square"):
    """Resize and pad as the reference does.

    Returns (image uint8, window (y1, x1, y2, x2) of the image inside the padded
    frame, scale, padding). Modes: "none", "square" (pad to max_dim x max_dim) and
    "pad64" (pad each side up to a multiple of 64); ``mrcnn.config.RESIZE_MODES``.
    """
    image_dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    if mode == "none":
        return image, window, scale, padding
    if mode not in ("square", "pad64"):
        raise ValueError(f"IMAGE_RESIZE_MODE {mode!r} is not supported; "
                         "use 'square', 'pad64' or 'none'.")
    if min_dim:
        scale = max(1, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = min_scale
    if max_dim and mode == "square":
        image_max = max(h, w)
        if round(image_max * scale) > max_dim:
            scale = max_dim / image_max
    if scale != 1:
        image = sk_resize(image, (round(h * scale), round(w * scale)), preserve_range=True)
    h, w = image.shape[:2]
    if mode == "square":
        top_pad = (max_dim - h) // 2
        bottom_pad = max_dim - h - top_pad
        left_pad = (max_dim - w) // 2
        right_pad = max_dim - w - left_pad
    else:
        if min_dim % 64 != 0:
            raise ValueError("IMAGE_MIN_DIM must be a multiple of 64 in pad64 mode.")
        top_pad, bottom_pad = _pad_to_64(h)
        left_pad, right_pad = _pad_to_64(w)
    padding = [(top_pad, bottom_pad), (left_pad, right_pad), (0, 0)]
    image = np.pad(image, padding, mode="constant", constant_values=0)
    window = (top_pad, left_pad, h + top_pad, w + left_pad)
    return image.astype(image_dtype), window, scale, padding


def _pad_to_64(size):
    if size % 64 == 0:
        return 0, 0
    total = size - (size % 64) + 64 - size
    return total // 2, total - total // 2


def mold_image(image, config) -> np.ndarray:
    """uint8 RGB -> float (image - MEAN_PIXEL); the subtraction happens in float64."""
    return image.astype(np.float32) - config.MEAN_PIXEL


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale,
                       active_class_ids) -> np.ndarray:
    return np.array([image_id] + list(original_image_shape) + list(image_shape)
                    + list(window) + [scale] + list(active_class_ids))


@dataclass
class MoldedImage:
    """One image prepared for the network, plus what unmolding needs."""
    image: np.ndarray          # (H', W', 3) float64, mean subtracted
    meta: np.ndarray           # (IMAGE_META_SIZE,)
    window: tuple              # (y1, x1, y2, x2) in molded pixels
    scale: float
    original_shape: tuple      # (h, w, 3)


def mold(image, config) -> MoldedImage:
    resized, window, scale, _ = resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
    molded = mold_image(resized, config)
    meta = compose_image_meta(0, image.shape, molded.shape, window, scale,
                              np.zeros([config.NUM_CLASSES], dtype=np.int32))
    return MoldedImage(molded, meta, window, scale, tuple(image.shape))


@lru_cache(maxsize=512)
def _bilinear_weights(out_size: int, in_size: int) -> np.ndarray:
    """(out_size, in_size) float64 weights of scipy's grid-mode linear zoom, zeros outside.

    Output sample i reads input position (i + 0.5) * in / out - 0.5, interpolated
    between its two neighbours; a neighbour outside the input counts as 0
    (``mode="grid-constant"``, what scikit-image's ``mode="constant"`` uses).
    """
    position = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    left = np.floor(position).astype(np.int64)
    fraction = position - left
    weights = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    for index, weight in ((left, 1.0 - fraction), (left + 1, fraction)):
        inside = (index >= 0) & (index < in_size)
        weights[rows[inside], index[inside]] += weight[inside]
    weights.setflags(write=False)
    return weights


def stretch_mask(mask, height: int, width: int) -> np.ndarray:
    """A soft mask (e.g. 28x28 float32) stretched to ``(height, width)``, float32.

    The reference's ``resize(mask, (height, width), order=1, mode="constant")``:
    bilinear with zeros outside, float32 result clipped to the mask's own
    min..max (which matters only when every value is >= 0.5).

    The result is column-major (Fortran order): COCO's RLE reads masks column by
    column, so a crop encodes without a copy. The two products are BLAS calls too
    small to share out: run them under :func:`one_blas_thread`.
    """
    mask = np.asarray(mask, np.float32)
    rows = _bilinear_weights(int(height), mask.shape[0])
    cols = _bilinear_weights(int(width), mask.shape[1])
    # (cols @ (rows @ M).T).T: the same dot products as rows @ M @ cols.T, transposed.
    stretched = (cols @ (rows @ mask.astype(np.float64)).T).T.astype(np.float32, order="K")
    return np.clip(stretched, mask.min(), mask.max())


def one_blas_thread():
    """Context in which numpy's BLAS uses one thread.

    Unmolding makes a hundred (h x 28) @ (28 x w) products; split across threads
    that also run TensorFlow, they took 10x longer than on one thread.
    """
    from threadpoolctl import threadpool_limits
    return threadpool_limits(1, user_api="blas")


def mask_in_box(mask, height: int, width: int) -> np.ndarray:
    """A soft mask stretched to ``(height, width)`` (:func:`stretch_mask`) and cut at ``>= 0.5``."""
    return stretch_mask(mask, height, width) >= 0.5


def unmold_mask(mask, bbox, image_shape) -> np.ndarray:
    """Paste a soft mask (e.g. 28x28) into a full-image bool mask at ``bbox``.

    The mask is resized bilinearly to the box and thresholded with ``>= 0.5``.
    """
    y1, x1, y2, x2 = bbox
    full_mask = np.zeros(image_shape[:2], dtype=bool)
    full_mask[y1:y2, x1:x2] = mask_in_box(mask, y2 - y1, x2 - x1)
    return full_mask


def unmold_boxes(detections, original_image_shape, image_shape, window):
    """The detection rows in the original image's pixels.

    detections: (DETECTION_MAX_INSTANCES, 6) [y1, x1, y2, x2, class_id, score]
        normalised in the molded frame, zero-padded at the end.
    Returns (rows kept (K,) int64 indices into ``detections``, rois int32 (K, 4),
    class_ids int32 (K,), scores float32 (K,)): the rows before the first zero
    class id whose box is not empty once rounded (``np.around``, half to even).
    """
    zero_ix = np.where(detections[:, 4] == 0)[0]
    count = zero_ix[0] if zero_ix.shape[0] > 0 else detections.shape[0]
    boxes = detections[:count, :4]
    wy1, wx1, wy2, wx2 = norm_boxes(window, image_shape[:2])
    shift = np.array([wy1, wx1, wy1, wx1])
    wh, ww = wy2 - wy1, wx2 - wx1
    scale = np.array([wh, ww, wh, ww])
    boxes = denorm_boxes(np.divide(boxes - shift, scale), original_image_shape[:2])
    rows = np.flatnonzero((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)
    return (rows, boxes[rows], detections[rows, 4].astype(np.int32),
            detections[rows, 5].astype(np.float32))


def compact_masks(masks, rows, boxes, original_image_shape) -> CompactMasks:
    """The soft masks of detection ``rows`` stretched over their unmolded ``boxes``
    and cut at 0.5, each kept inside its box (what :func:`unmold_detections_compact` returns)."""
    with one_blas_thread():
        crops = [mask_in_box(masks[row], y2 - y1, x2 - x1)
                 for row, (y1, x1, y2, x2) in zip(rows, boxes)]
    return CompactMasks.from_crops(original_image_shape[:2], boxes, crops)


def unmold_detections_compact(detections, masks, original_image_shape, image_shape, window):
    """:func:`unmold_detections` with each mask kept inside its box (:class:`CompactMasks`).

    Returns (rois int32 (N,4), class_ids int32 (N,), scores float32 (N,),
    CompactMasks of N masks whose windows are the rois).
    """
    rows, boxes, class_ids, scores = unmold_boxes(
        detections, original_image_shape, image_shape, window)
    return (boxes, class_ids, scores,
            compact_masks(masks, rows, boxes, original_image_shape))


def unmold_detections(detections, masks, original_image_shape, image_shape, window):
    """Detections of one image from normalised molded coordinates to image pixels.

    detections: (DETECTION_MAX_INSTANCES, 6) [y1, x1, y2, x2, class_id, score],
        zero-padded at the end.
    masks: (n, mh, mw) the soft mask of each detection's own class, n >= the
        number of real detections.
    Returns (rois int32 (N,4), class_ids int32 (N,), scores float32 (N,),
    masks bool (H, W, N)).
    """
    rows, boxes, class_ids, scores = unmold_boxes(
        detections, original_image_shape, image_shape, window)
    full_masks = np.zeros(tuple(original_image_shape[:2]) + (len(boxes),), dtype=bool)
    with one_blas_thread():
        for i, (row, (y1, x1, y2, x2)) in enumerate(zip(rows, boxes)):
            full_masks[y1:y2, x1:x2, i] = mask_in_box(masks[row], y2 - y1, x2 - x1)
    return boxes, class_ids, scores, full_masks
