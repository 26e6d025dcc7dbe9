"""An analysed clip's files, each read back by a reader that isn't ours: TrackEval for the
MOTChallenge file, pycocotools for COCO, zipfile + Pillow for the ZIP, PyAV for the MP4;
and ``python -m mrcnn.video`` end to end with a small generated network."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn.results import CompactMasks
from mrcnn.testing.mot import ground_truth_row, mot_scores
from mrcnn.video.export import COCO_PATH, IMAGES_DIR, MOT_PATH
from mrcnn.video.pipeline import analyse_clip
from mrcnn.video.samples import SHAPE_CLASS_NAMES, moving_shapes, write_clip

ROOT = Path(__file__).resolve().parent.parent
FPS = 25


@pytest.fixture(scope="module")
def shapes_clip(tmp_path_factory):
    """3 s of four moving shapes (some crossing) at 25 fps, 128 px, and its truth."""
    folder = tmp_path_factory.mktemp("clip")
    frames = list(moving_shapes(seconds=3, fps=FPS, size=128, count=4, seed=3))
    path = folder / "shapes.mp4"
    write_clip(path, (image for image, _ in frames), FPS)
    return path, [truth for _, truth in frames]


def truth_detector(truths, frames=None):
    """A detector that answers the generated truth of frame ``frames[k]`` (default k) at
    the k-th call: what a perfect network would find (the network is tested elsewhere)."""
    calls = iter(frames if frames is not None else range(len(truths)))

    def detect(images):
        frame = [g for g in truths[next(calls)] if g.mask.any()]
        height, width = images[0].shape[:2]
        return [{"rois": np.array([g.box for g in frame], np.int32).reshape(-1, 4),
                 "class_ids": np.array([g.class_id for g in frame], np.int32),
                 "scores": np.linspace(0.99, 0.9, len(frame)).astype(np.float32),
                 "masks": CompactMasks.from_masks((height, width), [g.mask for g in frame])}]
    return detect


@pytest.fixture(scope="module")
def analysed(shapes_clip, tmp_path_factory):
    path, truths = shapes_clip
    out = tmp_path_factory.mktemp("out")
    seen = []
    report = analyse_clip(path, out, truth_detector(truths), SHAPE_CLASS_NAMES, fps=FPS,
                          progress=lambda done, total, s: seen.append((done, total)))
    return report, truths, seen


def test_every_frame_is_analysed_with_progress_and_the_mot_name_says_mot(analysed):
    report, truths, seen = analysed
    assert len(report.tracked) == len(truths) == 75
    assert seen[-1] == (75, 75) and seen[0] == (1, 75)
    assert "mot" in report.paths["mot"].name
    assert report.track_count == 4


def test_the_mot_file_read_by_trackeval_scores_perfect_tracking(analysed):
    report, truths, _ = analysed
    ground_truth = "".join(ground_truth_row(k + 1, g.id, g.box)
                           for k, frame in enumerate(truths) for g in frame if g.mask.any())
    text = report.paths["mot"].read_text()
    assert text.splitlines()[0].count(",") == 9 and text.splitlines()[0].endswith(",-1,-1,-1")
    scores = mot_scores(ground_truth, text, len(truths))
    assert scores["IDSW"] == 0 and scores["IDF1"] == 1.0 and scores["MOTA"] == 1.0
    assert scores["GT_IDs"] == scores["IDs"] == 4


def test_the_coco_file_read_by_pycocotools_has_every_frame_and_each_tracks_id(analysed):
    report, truths, _ = analysed
    coco = COCO(str(report.paths["coco"]))
    assert len(coco.getImgIds()) == len(truths)
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == set(SHAPE_CLASS_NAMES[1:])
    mot = {}
    for line in report.paths["mot"].read_text().splitlines():
        frame, track, x, y, w, h = (int(float(v)) for v in line.split(",")[:6])
        mot[(frame, track)] = [x, y, w, h]
    for image_id in (1, 30, 75):
        image = coco.loadImgs(image_id)[0]
        assert image["file_name"] == f"frame_{image_id:06d}.jpg"
        truth = {g.id: g.mask for g in truths[image_id - 1] if g.mask.any()}
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert len(annotations) == len(truth)
        for annotation in annotations:
            track = annotation["attributes"]["track_id"]
            assert annotation["bbox"] == mot[(image_id, track)]
            mask = coco.annToMask(annotation).astype(bool)
            iou = (mask & truth[track]).sum() / (mask | truth[track]).sum()
            assert iou > 0.85, (image_id, track, iou)


def test_the_zip_opens_as_it_is(analysed):
    report, truths, _ = analysed
    with zipfile.ZipFile(report.paths["zip"]) as archive:
        names = set(archive.namelist())
        document = json.loads(archive.read(COCO_PATH))
        assert document == json.loads(report.paths["coco"].read_text())
        for image in document["images"]:
            member = f"{IMAGES_DIR}/{image['file_name']}"
            assert member in names
        with archive.open(f"{IMAGES_DIR}/frame_000010.jpg") as handle:
            picture = np.asarray(Image.open(handle).convert("RGB"))
        assert picture.shape == (128, 128, 3)
        assert archive.read(MOT_PATH).decode() == report.paths["mot"].read_text()


def test_the_annotated_clip_plays_back_at_the_sampled_rate(analysed):
    report, truths, _ = analysed
    with av.open(str(report.paths["video"])) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert float(stream.average_rate) == FPS
    assert len(frames) == len(truths)
    assert frames[0].shape == (128, 128, 3)


def test_two_frames_a_second_still_keep_most_ids(shapes_clip, tmp_path):
    """At 2 fps a shape moves up to 40 % of the frame between samples (and bounces off
    its edges): matched on its predicted position, class and size, the four keep their
    ids but for at most two switches in 24 objects (both squares look alike)."""
    path, truths = shapes_clip
    shown = [0, 12, 25, 37, 50, 62]         # the frames on screen at 0, 0.5, ... 2.5 s
    report = analyse_clip(path, tmp_path, truth_detector(truths, shown), SHAPE_CLASS_NAMES,
                          fps=2)
    assert [round(f.time_s, 2) for f in report.tracked] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    ground_truth = "".join(ground_truth_row(k + 1, g.id, g.box)
                           for k, t in enumerate(shown) for g in truths[t] if g.mask.any())
    scores = mot_scores(ground_truth, report.paths["mot"].read_text(), 6)
    assert scores["CLR_FN"] == scores["CLR_FP"] == 0 and scores["IDSW"] <= 2


@pytest.mark.slow
def test_the_command_line_writes_the_clip_and_exports_with_a_progress_bar(small_model,
                                                                         shapes_clip,
                                                                         tmp_path):
    path, _ = shapes_clip
    env = {**os.environ, "MRCNN_WEIGHTS": str(small_model.weights_path),
           "MRCNN_CONFIG": "mrcnn.testing.configs:SmallConfig", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MRCNN_SERVE_URL", None)
    done = subprocess.run([sys.executable, "-m", "mrcnn.video", str(path), str(tmp_path / "o"),
                           "--fps", "4", "--max-seconds", "2", "--min-score", "0.3"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "8/8 frames" in done.stderr and "s/frame" in done.stderr
    files = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert files == ["shapes_coco.json", "shapes_frames.zip", "shapes_mot.csv",
                     "shapes_tracked.mp4"]
    with av.open(str(tmp_path / "o" / "shapes_tracked.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 8
    COCO(str(tmp_path / "o" / "shapes_coco.json"))
    bad = subprocess.run([sys.executable, "-m", "mrcnn.video", str(ROOT / "README.md"),
                          str(tmp_path / "bad")], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "not a video" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_pycocotools_reads_the_rle_of_an_object_with_a_hole(tmp_path):
    """An annotation kept as RLE (a ring) carries its track id too."""
    from mrcnn.video.export import coco_video_document
    from mrcnn.video.track import TrackedFrame
    ring = np.zeros((40, 40), bool)
    ring[5:35, 5:35] = True
    ring[15:25, 15:25] = False
    frame = TrackedFrame(0, 0.0, {"rois": np.array([[5, 5, 35, 35]]),
                                  "class_ids": np.array([2]), "scores": np.array([0.9]),
                                  "masks": CompactMasks.from_masks((40, 40), [ring])},
                         np.array([7]))
    document = coco_video_document([frame], SHAPE_CLASS_NAMES, (40, 40))
    (tmp_path / "c.json").write_text(json.dumps(document))
    annotation = COCO(str(tmp_path / "c.json")).loadAnns([1])[0]
    assert annotation["attributes"]["track_id"] == 7
    assert (mask_utils.decode(annotation["segmentation"]).astype(bool) == ring).all()


def test_ids_survive_a_detector_that_misses_one_object_in_four(shapes_clip, tmp_path):
    """A quarter of the true objects dropped at random, every frame: tracks outlive their
    gaps (half a second at 25 fps), so the ids hold (TrackEval counts the switches)."""
    path, truths = shapes_clip
    rng = np.random.default_rng(0)
    lossy = [[g for g in frame if rng.random() >= 0.25] for frame in truths]
    report = analyse_clip(path, tmp_path, truth_detector(lossy), SHAPE_CLASS_NAMES, fps=FPS)
    ground_truth = "".join(ground_truth_row(k + 1, g.id, g.box)
                           for k, frame in enumerate(truths) for g in frame if g.mask.any())
    scores = mot_scores(ground_truth, report.paths["mot"].read_text(), len(truths))
    assert scores["IDSW"] <= 2 and scores["IDF1"] >= 0.8, scores
