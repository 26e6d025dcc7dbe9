"""studio.video_run without Streamlit: a clip's frames go through the fair queue one at a
time as its visitor's jobs, so another visitor's photo waits for one frame at most; Cancel
stops it; the outputs are made from the kept answers."""
from __future__ import annotations

import threading
import time

import numpy as np

from mrcnn.results import CompactMasks
from mrcnn.serve.backends import DetectionReport
from mrcnn.video.decode import probe
from mrcnn.video.samples import moving_shapes, write_clip
from studio.fair_queue import FairQueue
from studio.jobs import JobRequest
from studio.video_run import VideoJob


class Network:
    """The queue's runner: answers each image with one square where the image is
    brightest, and records whose job ran when (``seconds`` per call)."""

    def __init__(self, seconds: float = 0.05):
        self.seconds = seconds
        self.ran: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, jobs):
        time.sleep(self.seconds)
        answers = []
        for job in jobs:
            with self.lock:
                self.ran.append(job.owner)
            image = job.payload["image"]
            height, width = image.shape[:2]
            mask = np.zeros((height, width), bool)
            mask[10:40, 10:40] = True
            answers.append(DetectionReport({
                "rois": np.array([[10, 10, 40, 40]], np.int32),
                "class_ids": np.array([1], np.int32), "scores": np.array([0.9], np.float32),
                "masks": CompactMasks.from_masks((height, width), [mask])}, {}))
        return answers


def clip(tmp_path, seconds=2.0):
    path = tmp_path / "clip.mp4"
    write_clip(path, (image for image, _ in moving_shapes(seconds, 10, 96, 2, seed=0)), 10)
    return path


def video_job(queue, path, tmp_path, fps=10.0, session="a"):
    info = probe(path)
    total = int(round(info.duration_s * fps))

    def request(sample):
        return JobRequest("detect", f"video:{sample.index}", {"image": sample.image})
    return VideoJob(queue, session, f"address-{session}", path, info, fps, 0.0, info.duration_s,
                    total, request, ["BG", "square", "circle", "triangle"], tmp_path / "job")


def wait_frames(job, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while len(job.frames) < count:
        assert time.monotonic() < deadline, f"{len(job.frames)} of {count} frames came"
        time.sleep(0.01)


def wait_ended(job, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while job.running and time.monotonic() < deadline:
        time.sleep(0.02)


def test_another_visitors_photo_waits_for_one_frame_at_most(tmp_path):
    network = Network(seconds=0.05)
    queue = FairQueue(network)
    job = video_job(queue, clip(tmp_path), tmp_path).start()
    wait_frames(job, 3)
    ran_before = len(network.ran)
    photo = queue.submit("b", "photo", "detect", {"image": np.zeros((96, 96, 3), np.uint8)},
                         address="address-b")
    photo.future.result(timeout=30)
    ran = network.ran[ran_before:]
    assert ran.index("b") <= 1, ran          # the frame in the network, then the photo
    wait_ended(job, 60)
    assert job.state == "done" and len(job.frames) == job.total == 20
    assert network.ran.count("a") == 20


def test_only_one_frame_of_a_clip_waits_in_the_queue_at_a_time(tmp_path):
    network = Network(seconds=0.02)
    queue = FairQueue(network)
    job = video_job(queue, clip(tmp_path), tmp_path).start()
    most = 0
    while job.running:
        most = max(most, queue.waiting("a"))
        time.sleep(0.005)
    assert most <= 1


def test_cancel_stops_after_the_frame_in_the_network_and_keeps_the_rest(tmp_path):
    network = Network(seconds=0.1)
    queue = FairQueue(network)
    job = video_job(queue, clip(tmp_path), tmp_path).start()
    wait_frames(job, 2)
    job.cancel()
    wait_ended(job, 30)
    assert job.state == "cancelled" and 2 <= len(job.frames) < job.total
    done = len(job.frames)
    time.sleep(0.5)
    assert network.ran.count("a") <= done + 1 and len(job.frames) == done
    outputs = job.outputs(0.5)
    assert len(outputs.times) == done and len(outputs.tracks) == 1
    assert outputs.mot.count("\n") == done and outputs.video[4:8] == b"ftyp"
    assert job.outputs(0.95).tracks == []          # every answer scored 0.9
