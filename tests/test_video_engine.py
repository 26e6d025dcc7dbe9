"""mrcnn.video without a network: decoding (formats, rotation, sampling, bad clips), the
encoder read back with PyAV, and the tracker on hand-made detection sequences."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from mrcnn.results import CompactMasks
from mrcnn.video.decode import ClipError, probe, sample_frames
from mrcnn.video.encode import H264Writer
from mrcnn.video.render import draw_tracked, track_colours, track_label
from mrcnn.video.track import TrackedFrame, Tracker


def numbered_frames(count, height=48, width=64):
    """Frames whose top-left pixel value is their index (x 8), so a decoded frame says
    which one it is."""
    for i in range(count):
        image = np.full((height, width, 3), 40, np.uint8)
        image[:16, :16] = 8 * i
        yield image


def frame_number(image) -> int:
    return int(round(float(image[4:12, 4:12].mean()) / 8))


def write(path, frames, rate=10, codec="libx264", pix_fmt="yuv420p", fmt=None, rotation=None,
          times=None):
    """A clip written with PyAV itself (``times``: pts in 1/1000 s, for odd rates)."""
    frames = list(frames)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = times[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ------------------------------------------------------------------ decoding

def write_gif(path, frames, rate=10):
    """An animated GIF written by Pillow (PyAV's GIF encoder wants a palette first)."""
    from PIL import Image
    pictures = [Image.fromarray(f) for f in frames]
    pictures[0].save(path, save_all=True, append_images=pictures[1:],
                     duration=int(1000 / rate), loop=0)
    return path


@pytest.mark.parametrize("suffix, codec", [(".mp4", "libx264"), (".mov", "libx264"),
                                           (".webm", "libvpx-vp9"), (".gif", None)])
def test_every_container_decodes_every_frame_at_its_own_rate(tmp_path, suffix, codec):
    if codec is None:
        path = write_gif(tmp_path / f"clip{suffix}", numbered_frames(12))
    else:
        path = write(tmp_path / f"clip{suffix}", numbered_frames(12), rate=10, codec=codec)
    info = probe(path)
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(10, rel=0.01)
    samples = list(sample_frames(path, fps=10, info=info))
    assert [frame_number(s.image) for s in samples] == list(range(12))
    assert [s.time_s for s in samples] == pytest.approx([i / 10 for i in range(12)])
    assert all(s.image.shape == (48, 64, 3) and s.image.dtype == np.uint8 for s in samples)


def test_sampling_takes_the_frame_on_screen_at_each_time_over_the_span(tmp_path):
    path = write(tmp_path / "clip.mp4", numbered_frames(30), rate=10)    # 3 s
    samples = list(sample_frames(path, fps=2, start_s=0.5, end_s=2.2))
    assert [s.time_s for s in samples] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert [frame_number(s.image) for s in samples] == [5, 10, 15, 20]
    assert [s.index for s in samples] == [0, 1, 2, 3]
    # fps above the clip's rate: every frame once; max_frames stops early
    assert len(list(sample_frames(path, fps=60))) == 30
    assert [frame_number(s.image) for s in sample_frames(path, fps=3, max_frames=4)] == \
        [0, 3, 6, 10]       # 0, 1/3, 2/3, 1 s: the frames shown then


def test_a_variable_frame_rate_is_sampled_by_time(tmp_path):
    times = [0, 100, 200, 500, 900, 1000, 1400, 1900]      # ms, irregular
    path = write(tmp_path / "vfr.mp4", numbered_frames(8), rate=10, times=times)
    samples = list(sample_frames(path, fps=2))
    shown = [max(i for i, t in enumerate(times) if t <= s.time_s * 1000 + 0.1) for s in samples]
    assert [frame_number(s.image) for s in samples] == shown
    assert shown[:4] == [0, 3, 5, 6]


def test_the_rotation_in_a_phones_metadata_is_applied(tmp_path):
    """A phone held upright stores landscape frames and asks players to turn them 90
    degrees clockwise (display matrix rotation -90): the frames come out portrait."""
    upright = np.zeros((64, 32, 3), np.uint8)
    upright[:16] = (255, 0, 0)              # red at the top of the portrait picture
    upright[-16:] = (0, 0, 255)             # blue at the bottom
    stored = np.ascontiguousarray(np.rot90(upright, 1))    # 32 x 64, as the sensor saw it
    path = write(tmp_path / "portrait.mp4", [stored] * 4, rotation=-90)
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (32, 64, 270)
    image = next(sample_frames(path, fps=10)).image
    assert image.shape == (64, 32, 3)
    assert image[4, 16, 0] > 200 and image[4, 16, 2] < 60        # red on top
    assert image[60, 16, 2] > 200 and image[60, 16, 0] < 60      # blue at the bottom


def test_bad_clips_each_get_one_sentence(tmp_path):
    def refusal(path, **limits):
        with pytest.raises(ClipError) as caught:
            info = probe(path, **limits)
            list(sample_frames(path, info=info))
        text = str(caught.value)
        assert text.endswith(".") and "\n" not in text and str(tmp_path) not in text
        return text

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all " * 100)
    assert "not a video" in refusal(junk)

    sound = tmp_path / "sound.wav"
    with av.open(str(sound), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert "no video stream" in refusal(sound)

    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height = 64, 48
        container.start_encoding()
    assert "empty" in refusal(empty)

    single = write(tmp_path / "single.mp4", numbered_frames(1))
    assert "single frame" in refusal(single)

    huge = write(tmp_path / "huge.mp4", numbered_frames(2, 400, 400))
    assert "400 x 400" in refusal(huge, max_frame_pixels=100_000)

    long = write(tmp_path / "long.mp4", numbered_frames(2), times=[0, 7_200_000])
    assert "minutes" in refusal(long)                     # two hours, from the metadata


def test_a_10000_pixel_square_frame_is_refused_from_the_metadata(tmp_path):
    path = write(tmp_path / "big.avi", [np.zeros((10000, 10000, 3), np.uint8)],
                 codec="mjpeg", pix_fmt="yuvj420p")
    with pytest.raises(ClipError, match="10000 x 10000"):
        probe(path)


# ------------------------------------------------------------------ encoding

@pytest.mark.parametrize("fps, size", [(2.0, (47, 63)), (25.0, (48, 64)), (2.5, (31, 45))])
def test_the_encoder_writes_h264_yuv420p_at_an_even_size_and_the_sampled_rate(tmp_path, fps,
                                                                            size):
    path = tmp_path / "out.mp4"
    frames = list(numbered_frames(9, *size))
    with H264Writer(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert float(stream.average_rate) == pytest.approx(fps)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 9
    assert decoded[0].shape == (size[0] + size[0] % 2, size[1] + size[1] % 2, 3)
    assert [frame_number(f) for f in decoded] == list(range(9))
    # the moov atom comes first (faststart): a browser starts playing before the end
    head = path.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and head.find(b"moov") < max(head.find(b"mdat"), 4096)


# ------------------------------------------------------------------ tracking

def box_at(cy, cx, r=10):
    return [cy - r, cx - r, cy + r, cx + r]


def run(tracker, frames):
    """Track ids of each frame's detections: ``frames`` are lists of (box, class_id)."""
    out = []
    for detections in frames:
        boxes = [b for b, _ in detections] or np.zeros((0, 4))
        out.append(tracker.update(boxes, [c for _, c in detections]).tolist())
    return out


def test_two_objects_of_one_class_crossing_keep_their_ids():
    """Left-to-right and right-to-left along the same row: at the crossing they overlap
    fully; their motion tells them apart."""
    frames = [[(box_at(50, 10 + 8 * t), 1), (box_at(50, 110 - 8 * t), 1)] for t in range(14)]
    ids = run(Tracker(), frames)
    assert all(frame == [1, 2] for frame in ids), ids


def test_crossing_objects_of_two_classes_never_swap():
    frames = [[(box_at(50, 10 + 8 * t), 2), (box_at(50, 110 - 8 * t), 3)] for t in range(14)]
    # the detector lists them in either order
    frames = [f if t % 2 else f[::-1] for t, f in enumerate(frames)]
    ids = run(Tracker(), frames)
    by_class = {}
    for f, i in zip(frames, ids):
        for (_, c), track in zip(f, i):
            by_class.setdefault(c, set()).add(track)
    assert all(len(tracks) == 1 for tracks in by_class.values()), by_class
    assert by_class[2] != by_class[3]


def test_a_missed_frame_keeps_the_id_and_a_new_object_gets_a_new_one():
    moving = [box_at(40, 10 + 5 * t) for t in range(8)]
    frames = [[(moving[t], 1)] for t in range(8)]
    frames[3] = []                                    # the detector missed it once
    frames[5] = frames[5] + [(box_at(80, 80), 2)]     # something new appears
    frames[6] = frames[6] + [(box_at(80, 82), 2)]
    ids = run(Tracker(max_missed=2), frames)
    assert ids == [[1], [1], [1], [], [1], [1, 2], [1, 2], [1]]


def test_tracks_outlive_half_a_second_of_misses_and_at_least_three_frames():
    from mrcnn.video.track import missed_frames
    assert [missed_frames(fps) for fps in (0.5, 2, 10, 25)] == [3, 3, 5, 12]


def test_a_track_lost_for_longer_than_max_missed_starts_again_under_a_new_id():
    frames = [[(box_at(40, 40), 1)]] * 3 + [[]] * 4 + [[(box_at(40, 40), 1)]]
    assert run(Tracker(max_missed=3), frames) == [[1], [1], [1], [], [], [], [], [2]]
    assert run(Tracker(max_missed=4), frames)[-1] == [1]


def test_masks_separate_two_boxes_that_overlap_alike():
    """Two L-shaped objects whose boxes overlap a third box equally: the mask decides."""
    def masks_of(*crops_at):
        full = []
        for y, x, crop in crops_at:
            mask = np.zeros((100, 100), bool)
            mask[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
            full.append(mask)
        return CompactMasks.from_masks((100, 100), full)
    left = np.zeros((40, 40), bool)
    left[:, :20] = True                 # columns 10-30 of the picture
    right = np.zeros((40, 40), bool)
    right[:, 20:] = True                # columns 50-70
    tracker = Tracker(max_jump=0.0)
    first = tracker.update([[10, 10, 50, 50], [10, 30, 50, 70]], [1, 1],
                           masks_of((10, 10, left), (10, 30, right)))
    # next frame: one object only, its box between the two, its mask where "right" was
    later = np.zeros((40, 40), bool)
    later[:, 30:] = True                # columns 50-60: inside "right" only
    second = tracker.update([[10, 20, 50, 60]], [1], masks_of((10, 20, later)))
    assert first.tolist() == [1, 2] and second.tolist() == [2]


def test_each_track_keeps_one_colour_and_its_label_names_class_id_and_score():
    assert track_label(["BG", "person"], 1, 3, 0.923) == "person #3 0.92"
    colours = track_colours([3, 1, 3])
    assert (colours[0] == colours[2]).all() and not (colours[0] == colours[1]).all()
    image = np.zeros((60, 80, 3), np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[20:40, 20:40] = True
    frame = TrackedFrame(0, 0.0, {"rois": np.array([[20, 20, 40, 40]]),
                                  "class_ids": np.array([1]), "scores": np.array([0.9]),
                                  "masks": CompactMasks.from_masks((60, 80), [mask])},
                         np.array([3]))
    drawn = draw_tracked(image, frame, ["BG", "person"], mask_alpha=1.0)
    assert (drawn[30, 30] == track_colours([3])[0]).all()


def test_a_class_flicker_keeps_the_track_and_its_majority_class():
    """The classifier calls a square a triangle for one frame: same place, same object."""
    frames = [[(box_at(50, 20 + 2 * t), 1)] for t in range(6)]
    frames[3] = [(box_at(50, 26), 3)]
    tracker = Tracker()
    assert run(tracker, frames) == [[1]] * 6
    assert tracker.tracks[0].class_id == 1


def test_one_object_detected_as_two_classes_is_tracked_once():
    from mrcnn.video.track import distinct_objects
    mask = np.zeros((60, 60), bool)
    mask[10:40, 10:40] = True
    other = np.zeros((60, 60), bool)
    other[12:40, 10:40] = True                   # the same object, a bit smaller
    apart = np.zeros((60, 60), bool)
    apart[45:55, 45:55] = True
    result = {"rois": np.array([[10, 10, 40, 40], [12, 10, 40, 40], [45, 45, 55, 55]]),
              "class_ids": np.array([1, 3, 1]), "scores": np.array([0.8, 0.9, 0.7]),
              "masks": CompactMasks.from_masks((60, 60), [mask, other, apart])}
    kept = distinct_objects(result)
    assert kept["class_ids"].tolist() == [3, 1] and kept["scores"].tolist() == [0.9, 0.7]
    assert len(kept["masks"]) == 2


def test_a_tracks_summary_gives_its_span_frames_best_score_and_majority_class():
    from mrcnn.video.track import summarise_tracks

    def frame(index, class_ids, scores, ids):
        return TrackedFrame(index, index / 2, {"rois": np.zeros((len(ids), 4)),
                                               "class_ids": np.array(class_ids),
                                               "scores": np.array(scores)}, np.array(ids))
    tracked = [frame(0, [3, 1], [0.8, 0.7], [1, 2]), frame(1, [1], [0.9], [2]),
               frame(2, [1, 1], [0.6, 0.95], [1, 2]), frame(3, [1], [0.5], [1])]
    first, second = summarise_tracks(tracked)
    assert (first.id, first.class_id, first.first_s, first.last_s, first.frames) == \
        (1, 1, 0.0, 1.5, 3)
    assert (first.best_score, first.best_frame, first.best_detection) == (0.8, 0, 0)
    assert (second.class_id, second.frames, second.best_frame, second.best_detection) == \
        (1, 3, 2, 1)
