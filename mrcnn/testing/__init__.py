"""Helpers for tests, benchmarks and offline demos; nothing at run time imports this.

- :mod:`mrcnn.testing.synthetic_weights`: weights files in the published
  ``mask_rcnn_coco.h5`` layout (from ``coco_h5_manifest.json``, package data
  here) or any model's layout, with seeded values.
- :mod:`mrcnn.testing.configs`: a small network configuration.
- :mod:`mrcnn.testing.compare`: two detection answers equal up to float32 rounding.
- :mod:`mrcnn.testing.browser`: a real ``streamlit run`` and Chromium, for browser tests.
- :mod:`mrcnn.testing.memory`: peak memory of a child process, for benchmarks.
- :mod:`mrcnn.testing.machine`: the CPU's name, printed beside every figure, and
  the timed runs whose median a benchmark quotes.
- :mod:`mrcnn.testing.mot`: tracking scores (IDF1, MOTA, ID switches) read by TrackEval.
"""
