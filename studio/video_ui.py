"""The Video page's parts: the clip (upload or generated sample), the controls, the run
while it goes (progress, latest frame, Cancel) and what comes out (clip, tracks, cut-outs,
chart, downloads). The work itself is :class:`studio.video_run.VideoJob`'s.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from mrcnn.classes import class_name
from mrcnn.video.decode import DEFAULT_FPS, ClipError, ClipInfo, probe
from mrcnn.video.pipeline import planned_samples
from mrcnn.video.samples import SHAPE_CLASS_NAMES, moving_shapes, panning_photo, write_clip
from studio.jobs import RunSettings, detect_job
from studio.public import client_address
from studio.results_ui import DEFAULT_THRESHOLD, IMAGE_SIZES
from studio.services import Services
from studio.session_keys import KEY_VIDEO_JOB, KEY_VIDEO_UPLOADS
from studio.sessions import session_alive, session_id
from studio.video_run import VideoJob

__all__ = ["Clip", "choose_clip", "clip_controls", "confidence_slider", "progress_panel",
           "results_panel", "start_analysis"]

CLIP_TYPES = ["mp4", "mov", "m4v", "webm", "mkv", "gif", "avi"]
SAMPLE_SHAPES = "Moving shapes (generated, 8 s)"
SAMPLE_PAN = "Panning over a photo (generated, 6 s)"


@dataclass
class Clip:
    """The clip the visitor picked: where it is, what it is, and its digest."""
    label: str
    path: Path
    info: ClipInfo
    digest: str


@st.cache_resource(show_spinner="Making the sample clip…")
def _sample_clip(name: str) -> Path:
    """Generated once per server process, in a temporary folder of its own."""
    folder = VideoJob.new_folder()
    if name == SAMPLE_SHAPES:
        # slow enough (10-25 % of the frame per second) to be tracked at 2 frames a second
        frames = (image for image, _ in moving_shapes(seconds=8, fps=10, size=256, count=4,
                                                      seed=1, speed=(0.1, 0.25)))
        path = folder / "moving_shapes.mp4"
        write_clip(path, frames, 10)
    else:
        import skimage.data
        path = folder / "panning_photo.mp4"
        write_clip(path, panning_photo(skimage.data.astronaut(), seconds=6, fps=10,
                                       window=(360, 480)), 10)
    return path


def _samples_for(class_names) -> list[str]:
    """The sample that suits the model first."""
    if list(class_names) == SHAPE_CLASS_NAMES:
        return [SAMPLE_SHAPES, SAMPLE_PAN]
    return [SAMPLE_PAN, SAMPLE_SHAPES]


def _saved_upload(upload) -> tuple[Path, str]:
    """The upload written once into a private temporary folder (never shown), by digest."""
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    saved = st.session_state.setdefault(KEY_VIDEO_UPLOADS, {})
    path = saved.get(digest)
    if path is None or not Path(path).exists():
        suffix = Path(upload.name).suffix.lower()
        suffix = suffix if suffix.lstrip(".") in CLIP_TYPES else ".bin"
        path = VideoJob.new_folder() / f"upload{suffix}"
        path.write_bytes(data)
        saved.clear()                        # one upload kept per visitor
        saved[digest] = path
    return Path(path), digest


def choose_clip(services: Services) -> Clip | None:
    """The upload or sample clip, probed; None (with one sentence) when there is none."""
    limits = services.limits
    source = st.radio("Clip", ["Upload a clip", "Sample clip"], horizontal=True,
                      key="video_source", label_visibility="collapsed")
    if source == "Upload a clip":
        # the server refuses any upload over its own server.maxUploadSize, whatever a
        # widget says: the smaller of the two is the real limit
        most = min(int(limits.video_mb), int(st.get_option("server.maxUploadSize")))
        upload = st.file_uploader(
            f"Upload a clip (MP4, MOV, WebM, GIF; up to {most} MB)",
            type=CLIP_TYPES, key="video_upload", max_upload_size=most)
        if upload is None:
            st.info("Upload a short clip, or pick a sample clip.",
                    icon=":material/movie:")
            return None
        path, digest = _saved_upload(upload)
        label = upload.name
    else:
        label = st.selectbox("Sample clip", _samples_for(services.class_names),
                             key="video_sample")
        path, digest = _sample_clip(label), f"sample-clip:{label}"
    try:
        info = probe(path, max_frame_pixels=limits.image_pixels)
    except ClipError as exc:
        st.error(str(exc), icon=":material/videocam_off:")
        return None
    except OSError:
        st.error("The clip could not be read on the server; upload it again.",
                 icon=":material/videocam_off:")
        return None
    return Clip(label, path, info, digest)


@dataclass(frozen=True)
class Plan:
    """What one run analyses and with what network settings."""
    fps: float
    start_s: float
    end_s: float
    frames: int
    settings: RunSettings
    problem: str | None          # why it can't run (a limit), or None


def clip_controls(services: Services, clip: Clip) -> Plan:
    """Frames per second, span and network size; the limits said in one sentence."""
    info, limits = clip.info, services.limits
    st.caption(f"{info.duration_s:.1f} s · {info.width} x {info.height} px · "
               f"{info.fps:.3g} frames per second · {info.codec}"
               + (f" · turned {info.rotation}°" if info.rotation else ""))
    top = max(info.fps or DEFAULT_FPS, 0.5)
    left, middle, right = st.columns(3)
    fps = left.number_input("Frames analysed per second", 0.5, float(top),
                            float(min(DEFAULT_FPS, top)), 0.5, key="video_fps",
                            help="The clip's own rate analyses every frame.")
    duration = max(info.duration_s, 0.1)
    span = middle.slider("Span (seconds)", 0.0, float(round(duration, 1)),
                         (0.0, float(round(min(duration, limits.video_seconds), 1))), 0.1,
                         key="video_span")
    largest = int(services.config.IMAGE_MAX_DIM)
    sizes = {size: text for size, text in IMAGE_SIZES.items() if size <= largest}
    sizes.setdefault(largest, f"{largest} px: this model's own size (default)")
    size = right.selectbox("Network input size (IMAGE_MAX_DIM)", list(sizes),
                           index=list(sizes).index(largest), format_func=sizes.get,
                           key="video_size", help="Smaller is faster but less accurate.")
    start, end = span
    frames = planned_samples(info, fps, start, end) if end > start else 0
    problem = None
    if end <= start:
        problem = "Choose a span of some length."
    elif end - start > limits.video_seconds + 1e-6:
        problem = (f"That span is {end - start:.1f} s; this server analyses at most "
                   f"{limits.video_seconds} s of a clip at a time. Shorten the span.")
    elif frames > limits.video_frames:
        problem = (f"That is {frames} frames; this server analyses at most "
                   f"{limits.video_frames} frames at a time. Lower the frames per second "
                   "or shorten the span.")
    config = services.config
    settings = RunSettings(int(size), float(config.DETECTION_NMS_THRESHOLD),
                           int(config.DETECTION_MAX_INSTANCES))
    return Plan(float(fps), float(start), float(end), frames, settings, problem)


def start_analysis(services: Services, clip: Clip, plan: Plan, min_score: float) -> VideoJob:
    """A new :class:`VideoJob` for this visitor (any earlier one is cancelled)."""
    previous = st.session_state.get(KEY_VIDEO_JOB)
    if previous is not None:
        previous.cancel()

    def request(sample):
        digest = f"video:{clip.digest}:{sample.index}:{sample.source_time_s:.4f}"
        return detect_job(services, digest, sample.image, plan.settings)

    job = VideoJob(services.queue, session_id(), client_address(), clip.path, clip.info,
                   plan.fps, plan.start_s, plan.end_s, plan.frames, request,
                   services.class_names, VideoJob.new_folder(), preview_score=min_score,
                   is_alive=session_alive)
    st.session_state[KEY_VIDEO_JOB] = job
    return job.start()


def _progress_text(job: VideoJob) -> str:
    done, total = len(job.frames), max(job.total, 1)
    per_frame = job.seconds_per_frame()
    if per_frame is None:
        return f"0 / {total} frames · starting"
    return (f"{done} / {total} frames · {per_frame:.1f} s per frame · about "
            f"{per_frame * (total - done):.0f} s left")


def progress_panel(job: VideoJob) -> None:
    """While the job runs: progress, its place in the queue, the latest frame, Cancel.
    Redrawn every second on its own (a fragment); the whole page reruns when it ends."""
    @st.fragment(run_every=1.0)
    def panel():
        if not job.running:
            st.rerun()
        st.progress(min(len(job.frames) / max(job.total, 1), 1.0), text=_progress_text(job))
        standing = job.standing()
        if standing is not None and not standing.running and standing.ahead > 0:
            frames = "frame" if standing.ahead == 1 else "frames"
            st.caption(f"{standing.ahead} {frames} ahead of this clip's next frame in the "
                       "shared queue; visitors take turns, one frame each.")
        latest = job.latest
        if latest is not None:
            st.image(latest, width=min(640, latest.shape[1]),
                     caption=f"Frame {len(job.frames)} of {job.total}",
                     alt=f"The latest analysed frame ({len(job.frames)} of {job.total}) "
                         "with each object found outlined in its track's colour.")
        st.button("Cancel", key="video_cancel", on_click=job.cancel, icon=":material/stop:")
    panel()


def results_panel(job: VideoJob, min_score: float, mask_alpha: float) -> None:
    """The clip, the track table, the cut-outs, the chart and the downloads."""
    done = len(job.frames)
    if job.state == "cancelled":
        st.warning(f"Cancelled after {done} of {job.total} frames; what follows covers "
                   "those.", icon=":material/stop_circle:")
    elif job.state == "failed":
        st.error(job.error or "The analysis stopped.", icon=":material/error:")
    if done == 0:
        return
    out = job.outputs(min_score, mask_alpha)
    names = job.class_names
    st.subheader(f"Tracks ({len(out.tracks)})")
    clip_column, table_column = st.columns([3, 2], gap="medium")
    clip_column.video(out.video, format="video/mp4")
    table_column.dataframe(
        [{"Track": f"#{t.id}", "Class": class_name(names, t.class_id),
          "First (s)": round(t.first_s, 2), "Last (s)": round(t.last_s, 2),
          "Frames seen": t.frames, "Best score": round(t.best_score, 3)} for t in out.tracks],
        hide_index=True, key="video_tracks")
    if out.tracks:
        st.markdown("**Each track's best view**")
        shown = out.tracks[:24]
        columns = st.columns(min(len(shown), 8))
        for k, track in enumerate(shown):
            label = f"{class_name(names, track.class_id)} #{track.id} {track.best_score:.2f}"
            columns[k % len(columns)].image(
                out.cutouts[track.id], caption=label, width="stretch",
                alt=f"Cut-out of track {track.id}, a {class_name(names, track.class_id)}, "
                    f"from its best-scored frame.")
        classes = sorted({c for counts in out.counts for c in counts})
        st.markdown("**Objects per class over time**")
        st.line_chart({"time (s)": out.times,
                       **{c: [counts.get(c, 0) for counts in out.counts] for c in classes}},
                      x="time (s)", y=classes)
    stem = Path(job.clip.name).stem if not job.clip.name.startswith("upload") else "clip"
    a, b, c, d = st.columns(4)
    a.download_button("Annotated clip (MP4)", out.video, f"{stem}_tracked.mp4", "video/mp4",
                      on_click="ignore", key="video_dl_mp4")
    b.download_button("Tracks (MOT CSV)", out.mot, f"{stem}_mot.csv", "text/csv",
                      on_click="ignore", key="video_dl_mot")
    c.download_button("COCO JSON (with track ids)", json.dumps(out.coco), f"{stem}_coco.json",
                      "application/json", on_click="ignore", key="video_dl_coco")
    d.download_button("Frames + annotations (ZIP)", out.zip_bytes, f"{stem}_frames.zip",
                      "application/zip", on_click="ignore", key="video_dl_zip")


def confidence_slider() -> float:
    """The main page's confidence slider (same key, range and default)."""
    from studio.jobs import DETECT_THRESHOLD
    return float(st.slider(
        "Confidence threshold", min_value=DETECT_THRESHOLD, max_value=1.0,
        value=DEFAULT_THRESHOLD, step=0.01, key="min_score",
        help=f"Hide objects the model is less sure of. The network ran once at "
             f"{DETECT_THRESHOLD:.2f}; this re-tracks and redraws without running it again."))

