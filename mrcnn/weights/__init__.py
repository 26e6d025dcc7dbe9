"""The Mask R-CNN weights file: where it lives, checking it, downloading it.

- :mod:`mrcnn.weights.check`: the file on disk (``default_weights_path``,
  ``check_weights_file``, ``check_size_and_md5``); no TensorFlow, no network.
- :mod:`mrcnn.weights.download`: getting the published COCO file
  (``download_weights``, ``python -m mrcnn.weights``).
- :mod:`mrcnn.weights.keras_h5`: reading the Keras 2 HDF5 layout into a
  model, and writing it (checkpoints, generated test files).
"""
from mrcnn.weights.check import (
    ENV_VAR,
    WEIGHTS_FILENAME,
    WEIGHTS_MD5,
    WEIGHTS_SIZE,
    WEIGHTS_URL,
    WeightsDownloadError,
    WeightsError,
    WeightsFileError,
    check_size_and_md5,
    check_weights_file,
    default_weights_path,
    file_md5,
)
from mrcnn.weights.download import download_weights, ensure_weights

__all__ = ["ENV_VAR", "WEIGHTS_FILENAME", "WEIGHTS_MD5", "WEIGHTS_SIZE", "WEIGHTS_URL",
           "WeightsDownloadError", "WeightsError", "WeightsFileError", "check_size_and_md5",
           "check_weights_file", "default_weights_path", "download_weights", "ensure_weights",
           "file_md5"]
