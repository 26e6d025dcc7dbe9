"""``python -m mrcnn.video IN.mp4 OUT_DIR [--fps 2] [--max-seconds 20]``: the annotated
clip and its exports (see :func:`mrcnn.video.pipeline.output_paths`), with a progress bar.

The model is picked as the app picks it: the Ray Serve deployment at ``MRCNN_SERVE_URL``
if one is set, else the weights at ``MRCNN_WEIGHTS`` (default ``weights/mask_rcnn_coco.h5``)
in the network that ``MRCNN_CONFIG`` names (``module:Class``, default COCO's).
"""
from __future__ import annotations

import argparse
import os
import sys

from mrcnn.config import DEFAULT_CONFIG_PATH, config_from_path
from mrcnn.video.decode import DEFAULT_FPS, ClipError, probe

CONFIG_ENV = "MRCNN_CONFIG"


def _bar(stream=sys.stderr, width: int = 30):
    def draw(done: int, total: int, seconds: float) -> None:
        filled = int(width * done / max(total, 1))
        per_frame = seconds / max(done, 1)
        left = per_frame * (total - done)
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} frames, "
                     f"{per_frame:.2f} s/frame, {left:.0f} s left ")
        if done >= total:
            stream.write("\n")
        stream.flush()
    return draw


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mrcnn.video", description=(
        "Segment and track the objects of a clip: writes <name>_tracked.mp4, "
        "<name>_mot.csv (MOTChallenge), <name>_coco.json (COCO instances with track ids) "
        "and <name>_frames.zip (frames + annotations) into OUT_DIR."))
    parser.add_argument("input", help="a video clip (MP4, MOV, WebM, GIF)")
    parser.add_argument("out_dir", help="folder for the outputs (made if missing)")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS,
                        help="frames analysed per second (the clip's own rate: every frame)")
    parser.add_argument("--start", type=float, default=0.0, help="span start, seconds")
    parser.add_argument("--end", type=float, default=None, help="span end, seconds")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="analyse at most this many seconds from --start")
    parser.add_argument("--min-score", type=float, default=None,
                        help="confidence threshold (default: the config's "
                             "DETECTION_MIN_CONFIDENCE)")
    args = parser.parse_args(argv)
    if args.fps <= 0:
        parser.error("--fps must be positive")
    try:
        info = probe(args.input)
    except ClipError as exc:
        print(f"{args.input}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{args.input}: {exc.strerror or exc}", file=sys.stderr)
        return 2

    from mrcnn.classes import class_names_for
    from mrcnn.serve.backends import make_backend
    from mrcnn.video.pipeline import analyse_clip
    from mrcnn.weights.check import default_weights_path
    config = config_from_path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    min_score = config.DETECTION_MIN_CONFIDENCE if args.min_score is None else args.min_score

    def load():
        from mrcnn.model import load_model
        return load_model(default_weights_path(), config)

    backend = make_backend(model_loader=load)

    def detect(images):
        return [report.result for report in
                backend.detect(images, DETECTION_MIN_CONFIDENCE=min_score)]

    try:
        report = analyse_clip(args.input, args.out_dir, detect, class_names_for(config),
                              fps=args.fps, start_s=args.start, end_s=args.end,
                              max_seconds=args.max_seconds, min_score=min_score,
                              progress=_bar(), info=info)
    except ClipError as exc:
        print(f"{args.input}: {exc}", file=sys.stderr)
        return 2
    print(f"{len(report.tracked)} frames at {report.fps:g} fps, {report.track_count} tracks:")
    for path in report.paths.values():
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
