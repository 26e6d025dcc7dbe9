"""Training Mask R-CNN on your own data, with matterport's workflow.

One module per concern:

- ``dataset``: matterport's ``Dataset`` API and ``CocoDataset`` (COCO instances JSON);
- ``data``: resized images, boxes, mini masks and RPN targets in batches;
- ``targets``: RPN anchor labels (numpy) and the heads' RoI sampling (TensorFlow);
- ``losses``: the five losses and matterport's weight decay;
- ``graph``: the training forward pass and ``layers=`` selection;
- ``trainer``: ``Trainer(model).train()`` (matterport's ``model.train()``), checkpoints,
  logs;
- ``calibration``: BatchNorm statistics for a network trained from scratch;
- ``evaluate``: COCO mAP (pycocotools' COCOeval) of a model on a dataset;
- ``shapes``: the generated shapes dataset and ``ShapesConfig``.

Importing ``mrcnn.training`` does not load TensorFlow (``Trainer`` is imported on
first use).
"""
from mrcnn.training.dataset import CocoDataset, Dataset

__all__ = ["CocoDataset", "Dataset", "Trainer"]


def __getattr__(name):
    if name == "Trainer":
        from mrcnn.training.trainer import Trainer
        return Trainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
