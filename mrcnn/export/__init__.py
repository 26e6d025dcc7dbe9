"""Detections in the files people take away.

- :mod:`mrcnn.export.coco`: COCO RLE masks and the COCO results list.
- :mod:`mrcnn.export.bundle`: ZIP downloads (cut-outs, masks) and their file names.
- :mod:`mrcnn.export.annotations`: the ZIP of annotation formats labelling tools open,
  built from :mod:`~mrcnn.export.polygons` (mask outlines) and one module per format:
  :mod:`~mrcnn.export.coco_instances`, :mod:`~mrcnn.export.yolo`,
  :mod:`~mrcnn.export.labelme`, :mod:`~mrcnn.export.voc`.
"""
