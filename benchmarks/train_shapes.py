"""Train Mask R-CNN on generated shapes on this machine's CPU and measure its COCO mAP.

Trains ``ShapesConfig`` (ResNet-50 FPN, 128 px) from scratch (Keras' initialisers,
then BatchNorm statistics calibrated on training images) or from a generated
weights file, with matterport's ``model.train()`` (``Trainer(model).train()`` here):
``--epochs`` epochs of ``--steps`` steps, the learning rate divided by 10 for the last
``--low-lr-epochs``.
Then it evaluates on 200 held-out generated images with pycocotools' COCOeval
(mask and box) and prints, last, one JSON line:

    {"map50_segm", "map_segm", "map50_bbox", "map_bbox", "train_minutes", "steps",
     "weights", "config", ...}

``train_minutes`` counts calibration and training (checkpoints included), not the
model build or the evaluation. ``--curve`` also evaluates every epoch's checkpoint
afterwards (outside the timed part) and adds mAP against training minutes.

    python benchmarks/train_shapes.py [--epochs 30] [--steps 50] [--curve]

``--pictures overlapping`` draws shapes that overlap and hide each other, and
``--pictures clips`` takes frames of generated clips of crossing shapes (the video
benchmark's generator, other seeds), for training, validation and evaluation; the JSON
then also has the mAP on the usual pictures. ``--weights FILE`` starts from a trained
shapes file (fine-tuning):

    python benchmarks/train_shapes.py --pictures clips --weights shapes.h5 --epochs 20
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONFIG = "mrcnn.training.shapes:ShapesConfig"
VAL_SEED, EVAL_SEED = 2, 3        # training images: seed 1 (train_shapes_from_scratch)


def main():
    from mrcnn.training.shapes import PICTURES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=CONFIG, help="module:Class (a ShapesConfig)")
    parser.add_argument("--init", choices=["scratch", "generated"], default="scratch")
    parser.add_argument("--weights", default=None,
                        help="start from this trained shapes file instead (fine-tuning)")
    parser.add_argument("--pictures", choices=PICTURES, default=PICTURES[0],
                        help="shapes apart (default), overlapping, or frames of generated "
                             "clips: training, validation and evaluation pictures")
    parser.add_argument("--layers", default="all")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=50, help="steps per epoch")
    parser.add_argument("--images-per-step", type=int, default=None,
                        help="IMAGES_PER_GPU (default: ShapesConfig's)")
    parser.add_argument("--lr", type=float, default=None, help="default: ShapesConfig's")
    parser.add_argument("--low-lr-epochs", type=int, default=5,
                        help="last epochs trained at lr / 10")
    parser.add_argument("--train-images", type=int, default=10000)
    parser.add_argument("--eval-images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--curve", action="store_true",
                        help="evaluate every epoch's checkpoint too (after training)")
    parser.add_argument("--out", default=None, help="log folder (default: a temporary one)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a ShapesConfig setting, e.g. --set TRAIN_ROIS_PER_IMAGE=64")
    args = parser.parse_args()

    from mrcnn.config import config_from_path
    from mrcnn.model import MaskRCNN
    from mrcnn.testing.machine import cpu_name
    from mrcnn.training.evaluate import coco_map
    from mrcnn.training.shapes import shapes_dataset, train_shapes_from_scratch

    overrides = {"STEPS_PER_EPOCH": args.steps}
    for item in args.set:
        name, _, text = item.partition("=")
        overrides[name] = ast.literal_eval(text)
    if args.images_per_step:
        overrides["IMAGES_PER_GPU"] = args.images_per_step
    if args.lr:
        overrides["LEARNING_RATE"] = args.lr
    config = config_from_path(args.config, overrides)
    out = Path(args.out or tempfile.mkdtemp(prefix="train_shapes_"))
    size = config.IMAGE_MAX_DIM
    val_set = shapes_dataset(50, VAL_SEED, size, args.pictures)
    eval_set = shapes_dataset(args.eval_images, EVAL_SEED, size, args.pictures)
    weights = args.weights
    if args.init == "generated" and not weights:
        from mrcnn.testing.synthetic_weights import generate_model_weights
        builder = MaskRCNN(mode="training", config=config, model_dir=out)
        weights = generate_model_weights(builder.keras_model, out / "generated.h5", seed=args.seed)
        del builder
    load = os.getloadavg()
    model, marks = train_shapes_from_scratch(
        config, out, args.epochs, args.low_lr_epochs, args.train_images, args.seed,
        val_dataset=val_set, weights=weights, pictures=args.pictures)
    train_minutes = marks[-1][1] / 60
    weights = marks[-1][0]

    evaluated = time.perf_counter()
    scores = coco_map(model, eval_set)
    evaluate_seconds = time.perf_counter() - evaluated
    result = {**{k: round(v, 4) for k, v in scores.items() if k.startswith("map")},
              "train_minutes": round(train_minutes, 2), "steps": args.epochs * args.steps,
              "images_seen": args.epochs * args.steps * config.BATCH_SIZE,
              "epochs": args.epochs, "layers": args.layers,
              "init": "weights" if args.weights else args.init,
              "learning_rate": config.LEARNING_RATE, "batch_size": config.BATCH_SIZE,
              "eval_images": args.eval_images, "detections": scores["detections"],
              "eval_seconds": round(evaluate_seconds, 1), "load_average_at_start": load,
              "cpu": cpu_name(), "cpus": os.cpu_count(), "overrides": args.set,
              "weights": str(weights), "config": args.config, "pictures": args.pictures,
              "started_from": args.weights}
    if args.pictures != "apart":      # and on the usual pictures, shapes apart
        plain = coco_map(model, shapes_dataset(args.eval_images, EVAL_SEED, size))
        result["on_apart_pictures"] = {k: round(v, 4) for k, v in plain.items()
                                       if k.startswith("map")}
    if args.curve:
        inference = MaskRCNN(config)
        curve = []
        for path, seconds in marks[1:]:
            inference.load_weights(path)
            point = coco_map(inference, eval_set)
            curve.append({"minutes": round(seconds / 60, 2),
                          "map50_segm": round(point["map50_segm"], 4),
                          "map50_bbox": round(point["map50_bbox"], 4)})
            print(json.dumps(curve[-1]), flush=True)
        result["curve"] = curve
    print(json.dumps(result))


if __name__ == "__main__":
    main()
