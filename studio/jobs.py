"""Network jobs, by kind: one factory per kind builds a job's key, payload and batch
group, and one table gives each kind its runner (no Streamlit here).

Pages ask for work with a factory (:func:`detect_job`, :func:`intermediates_job`,
:func:`heads_rerun_job`) and hand the :class:`JobRequest` to the fair queue
(``studio.queue_ui.run_through_queue``, or Run all's own submits); the queue's worker
runs each batch, all of one kind, with :func:`run_batch`.

Keys: ``<kind>|<image digest>|<settings>|<model>``. Equal keys are equal work, so
visitors who ask for the same picture with the same settings share one run and one
stored result. A sample's digest is :func:`sample_digest` (no bytes to hash).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DETECT_THRESHOLD", "RUNNERS", "JobRequest", "RunSettings", "detect_job",
           "heads_rerun_job", "intermediates_job", "run_batch", "run_key", "sample_digest"]

#: The network runs at this confidence; the page's slider filters above it.
DETECT_THRESHOLD = 0.1


@dataclass(frozen=True)
class RunSettings:
    """The settings that change what the network computes (each change reruns it)."""
    image_max_dim: int
    nms_threshold: float
    max_instances: int
    precision: str | None = None     # None: the server's (MRCNN_PRECISION); "fp32": exact

    def overrides(self) -> dict:
        overrides = {"DETECTION_MIN_CONFIDENCE": DETECT_THRESHOLD,
                     "IMAGE_MAX_DIM": self.image_max_dim,
                     "DETECTION_NMS_THRESHOLD": self.nms_threshold,
                     "DETECTION_MAX_INSTANCES": self.max_instances}
        if self.precision:
            overrides["precision"] = self.precision
        return overrides

    def key(self) -> tuple:
        key = (self.image_max_dim, self.nms_threshold, self.max_instances)
        return key + (self.precision,) if self.precision else key


@dataclass(frozen=True)
class JobRequest:
    """What a page asks the queue for."""
    kind: str
    key: str
    payload: dict
    batch_group: Any = None


def run_key(kind: str, digest: str, settings, services) -> str:
    """The key of ``kind`` work on the picture ``digest`` with ``settings`` (a repr-able
    value) on ``services``' model."""
    return f"{kind}|{digest}|{settings!r}|{services.model_key}"


def sample_digest(config_path: str, name: str) -> str:
    """The digest that stands for the bundled sample ``name`` of a model's config."""
    return f"sample:{config_path}:{name}"


def detect_job(services, digest: str, image, settings: RunSettings) -> JobRequest:
    """Detection at ``settings``; jobs with equal run settings may share a call."""
    overrides = settings.overrides()
    return JobRequest("detect", run_key("detect", digest, settings.key(), services),
                      {"image": image, "overrides": overrides},
                      batch_group=tuple(sorted(overrides.items())))


def intermediates_job(services, digest: str, image) -> JobRequest:
    """The teaching page's stage-by-stage run of one picture."""
    return JobRequest("intermediates", run_key("intermediates", digest, (), services),
                      {"image": image})


def heads_rerun_job(services, digest: str, record, rpn_nms_threshold: float,
                    proposal_count: int) -> JobRequest:
    """The proposal layer and the heads again on a teaching record's feature maps."""
    settings = (round(float(rpn_nms_threshold), 4), int(proposal_count))
    return JobRequest("heads_rerun", run_key("heads_rerun", digest, settings, services),
                      {"record": record, "rpn_nms_threshold": float(rpn_nms_threshold),
                       "proposal_count": int(proposal_count)})


# ------------------------------------------------------------------ runners

def _detect(services, jobs) -> list:
    """One backend call for the batch (the jobs share their overrides)."""
    return services.backend.detect([job.payload["image"] for job in jobs],
                                   **jobs[0].payload["overrides"])


def _intermediates(services, jobs) -> list:
    from mrcnn.intermediates import compute_intermediates
    model = services.local_model()
    return [compute_intermediates(model, job.payload["image"]) for job in jobs]


def _heads_rerun(services, jobs) -> list:
    from mrcnn.what_if import rerun_heads
    model = services.local_model()
    return [rerun_heads(model, job.payload["record"], job.payload["rpn_nms_threshold"],
                        job.payload["proposal_count"]) for job in jobs]


#: Job kind -> runner(services, jobs of that kind) -> one result per job.
RUNNERS = {"detect": _detect, "intermediates": _intermediates, "heads_rerun": _heads_rerun}


def run_batch(services, jobs: list) -> list:
    """Run a batch of queued jobs (all of one kind) with its kind's runner."""
    kind = jobs[0].kind
    if kind not in RUNNERS:
        raise ValueError(f"unknown job kind {kind!r}")
    return RUNNERS[kind](services, jobs)
