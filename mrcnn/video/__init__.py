"""Video: a clip in, every object segmented and tracked under one id, a clip and
annotations out. No Streamlit here; the app's page and ``python -m mrcnn.video`` use it.

- :mod:`mrcnn.video.decode`: reading a clip with PyAV (metadata checks before decoding,
  rotation applied, frames sampled at a rate over a span);
- :mod:`mrcnn.video.track`: the tracker (class-aware optimal assignment on mask and box
  IoU, tracks kept through missed frames) and ``track_results`` for a whole clip;
- :mod:`mrcnn.video.render`: a tracked frame drawn, one colour and ``person #3 0.92`` per track;
- :mod:`mrcnn.video.encode`: the H.264 (yuv420p, even size) MP4 writer;
- :mod:`mrcnn.video.export`: MOTChallenge CSV, COCO instances with track ids, the frames ZIP;
- :mod:`mrcnn.video.pipeline`: decode -> detect -> track -> draw -> encode in one pass;
- :mod:`mrcnn.video.samples`: generated clips (moving shapes with known ids, a panning photo).
"""
