"""Detections in the files people take away.

- :mod:`mrcnn.export.coco`: COCO RLE masks and the COCO results list.
- :mod:`mrcnn.export.bundle`: ZIP downloads (cut-outs, masks) and their file names.
"""
