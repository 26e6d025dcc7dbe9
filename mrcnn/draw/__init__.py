"""Pictures of detections, apart from the model.

- :mod:`mrcnn.draw.overlay`: masks, boxes and labels over the image; cut-outs; PNG bytes.
- :mod:`mrcnn.draw.figures`: the teaching page's heat maps, boxes and charts.
- :mod:`mrcnn.draw.fonts`: the one font loader.
"""
