"""studio.jobs: one factory per job kind (key, payload, batch group built once) and one
table from kind to runner. The runners themselves run in the page tests."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from studio.jobs import (
    DETECT_THRESHOLD,
    RUNNERS,
    RunSettings,
    detect_job,
    heads_rerun_job,
    intermediates_job,
    run_batch,
    sample_digest,
)

SERVICES = SimpleNamespace(model_key="weights.h5|mrcnn.config:CocoConfig")


def test_equal_requests_have_equal_keys_and_share_a_batch_only_with_equal_settings():
    image = np.zeros((4, 4, 3), np.uint8)
    fast, slow = RunSettings(512, 0.3, 100), RunSettings(1024, 0.3, 100)
    a = detect_job(SERVICES, "digest-a", image, fast)
    assert a.kind == "detect" and a.payload["image"] is image
    assert a.payload["overrides"]["DETECTION_MIN_CONFIDENCE"] == DETECT_THRESHOLD
    assert a.key == detect_job(SERVICES, "digest-a", None, RunSettings(512, 0.3, 100)).key
    assert a.key != detect_job(SERVICES, "digest-b", image, fast).key
    assert a.key != detect_job(SERVICES, "digest-a", image, slow).key
    assert a.batch_group == detect_job(SERVICES, "digest-b", image, fast).batch_group
    assert a.batch_group != detect_job(SERVICES, "digest-b", image, slow).batch_group
    other_model = SimpleNamespace(model_key="other.h5|mrcnn.config:CocoConfig")
    assert a.key != detect_job(other_model, "digest-a", image, fast).key


def test_each_kind_has_its_own_keys_and_a_runner():
    image = np.zeros((4, 4, 3), np.uint8)
    jobs = [detect_job(SERVICES, "d", image, RunSettings(512, 0.3, 100)),
            intermediates_job(SERVICES, "d", image),
            heads_rerun_job(SERVICES, "d", object(), 0.7, 1000)]
    assert len({job.key for job in jobs}) == 3
    assert {job.kind for job in jobs} == set(RUNNERS)
    rerun = jobs[2]
    assert rerun.key == heads_rerun_job(SERVICES, "d", object(), 0.70000001, 1000.0).key
    assert rerun.payload["proposal_count"] == 1000


def test_a_sample_digest_names_the_config_and_the_sample():
    assert sample_digest("mrcnn.config:CocoConfig", "coffee") == \
        "sample:mrcnn.config:CocoConfig:coffee"


def test_run_batch_dispatches_by_kind_and_refuses_an_unknown_one():
    calls = []
    backend = SimpleNamespace(detect=lambda images, **overrides: calls.append(
        (len(images), overrides)) or ["r"] * len(images))
    services = SimpleNamespace(model_key="m", backend=backend)
    image = np.zeros((4, 4, 3), np.uint8)
    jobs = [detect_job(services, d, image, RunSettings(512, 0.3, 100)) for d in "ab"]
    assert run_batch(services, jobs) == ["r", "r"]
    assert calls == [(2, jobs[0].payload["overrides"])]
    with pytest.raises(ValueError, match="unknown job kind"):
        run_batch(services, [SimpleNamespace(kind="video")])
