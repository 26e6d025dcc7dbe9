"""Load test of the Ray Serve deployment against the in-process model.

    python benchmarks/serve_load.py [--replicas 1] [--max-batch-size 4] [--clients 4]
                                    [--requests 3] [--config small|coco] [--weights PATH]

Steps, in one process:

1. Build the in-process model (the app's ``InProcessBackend``) with the same
   config and weights, run every test image through it once: those answers
   are each image's expected detections, and their rate is the in-process
   throughput (the app serialises calls to its one model).
2. Start Ray on 127.0.0.1 (``mrcnn.serve.start_local_ray``) and deploy the
   service (or use ``--url`` for a running one; no replica is killed then).
3. Steady run: ``--clients`` concurrent clients (asyncio + httpx, bounded by the
   number of clients) send ``--requests`` requests each, every client its own
   images; every answer is compared with its image's expected detections
   (``mrcnn.testing.compare.detections_difference``), so an answer meant for
   another request counts as an error.
4. Kill run: the same load, and when half of it is answered one replica is
   killed (``ray.kill``); clients retry with the app client's backoff policy.
   Serve replaces the replica; the time until it serves again is reported.

The last line printed is one JSON object: ``replicas``, ``max_batch_size``,
``batch_wait_ms``, ``clients``, ``requests`` (per run), ``errors`` and ``lost``
(both runs: wrong answers and requests that never got one), ``p50_ms``,
``p95_ms`` and ``throughput_rps`` (steady run), ``in_process_rps``, and the
details of each run under ``steady`` and ``kill``. The exit status is 1 when
any request was lost or wrong.

``--config small`` (default) is the tests' small ResNet-50 network with
generated weights, sized for a CPU; ``--config coco`` is the real network
(``--weights`` or ``$MRCNN_WEIGHTS``; ``--synthetic`` generates a file in the
published layout).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mrcnn.classes import class_names_for
from mrcnn.config import config_overrides_of
from mrcnn.retry import RetryPolicy, parse_retry_after
from mrcnn.serve.deployment import make_app, start_local_ray, wait_until_healthy
from mrcnn.serve.protocol import encode_png, read_token, token_digest, worth_retrying
from mrcnn.testing.compare import detections_difference


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--num-cpus", type=float,
                        help="CPUs per replica (default: this machine's cores / replicas)")
    parser.add_argument("--num-gpus", type=float, default=0.0)
    parser.add_argument("--max-batch-size", type=int, default=4)
    parser.add_argument("--batch-wait-ms", type=float, default=50.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=3, help="requests per client and run")
    parser.add_argument("--images", type=int, default=8, help="distinct test images (at most)")
    parser.add_argument("--config", choices=("small", "coco"), default="small")
    parser.add_argument("--weights", help="weights file (coco: default $MRCNN_WEIGHTS)")
    parser.add_argument("--synthetic", action="store_true",
                        help="coco: generate a weights file in the published layout")
    parser.add_argument("--url", help="use this running service instead of deploying one")
    parser.add_argument("--no-kill", action="store_true", help="skip the run that kills a replica")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- model side

def build_model(args, scratch: Path):
    """(in-process model, weights path, config import path, config overrides)."""
    from mrcnn.model import MaskRCNN
    from mrcnn.testing.configs import small_config
    from mrcnn.testing.synthetic_weights import generate_coco_weights, generate_model_weights
    from mrcnn.weights import check_weights_file, default_weights_path
    if args.config == "small":
        config = small_config()
        model = MaskRCNN(config)
        weights = Path(args.weights) if args.weights else generate_model_weights(
            model.keras_model, scratch / "small.h5")
        overrides = config_overrides_of(config)
        return model.load_weights(weights), weights, "mrcnn.config:Config", overrides
    from mrcnn.config import CocoConfig
    if args.synthetic:
        weights = generate_coco_weights(scratch / "coco_synthetic.h5")
    else:
        weights = Path(args.weights) if args.weights else default_weights_path()
        check_weights_file(weights)
    return MaskRCNN(CocoConfig()).load_weights(weights), weights, "mrcnn.config:CocoConfig", {}


def test_images(count: int) -> list[np.ndarray]:
    """Distinct crops of scikit-image's photos, so no two expected answers agree."""
    import skimage.data
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]
    images = []
    for i in range(count):
        photo = photos[i % len(photos)]
        shift = i // len(photos)
        images.append(np.ascontiguousarray(photo[9 * shift:9 * shift + 240 + 7 * i,
                                                 13 * shift:13 * shift + 280]))
    return images


def in_process_reference(model, images):
    """Expected detections per image, and the in-process throughput (requests/s)."""
    from mrcnn.serve.backends import InProcessBackend
    from mrcnn.serve.protocol import encode_detections
    backend = InProcessBackend(model)
    backend.detect(images[:1])                                 # trace the graphs first
    names = class_names_for(model.config)
    start = time.perf_counter()
    expected = [encode_detections(backend.detect([image])[0].result, names, image.shape[:2])
                for image in images]
    return expected, len(images) / (time.perf_counter() - start)


# ---------------------------------------------------------------- load side

async def post_with_retries(client, url, body, policy: RetryPolicy):
    """(payload or None, attempts, last problem): the app client's retry rules, async."""
    import httpx
    attempts = policy.begin()
    while True:
        retry_after = None
        try:
            response = await client.post(url + "/detect", content=body,
                                         timeout=attempts.timeout(300.0))
            if response.status_code == 200:
                return response.json(), attempts.attempt, ""
            problem = f"HTTP {response.status_code}"
            if not worth_retrying(response.status_code, response.headers):
                return None, attempts.attempt, problem
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout) as exc:
            problem = type(exc).__name__
        except httpx.TimeoutException as exc:
            return None, attempts.attempt, type(exc).__name__
        pause = attempts.next_pause(retry_after)
        if pause is None:
            return None, attempts.attempt, problem
        await asyncio.sleep(pause)         # without blocking the other clients


async def run_load(url, token, bodies, expected, clients, per_client, on_progress=None):
    """Every client sends its own images in turn; returns per-request records."""
    import httpx
    policy = RetryPolicy()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    records = []
    done = 0

    async with httpx.AsyncClient(timeout=300.0, headers=headers, trust_env=False,
                                 limits=httpx.Limits(max_connections=clients)) as client:
        async def one_client(c):
            nonlocal done
            for r in range(per_client):
                index = (c * per_client + r) % len(bodies)
                start = time.perf_counter()
                payload, attempts, problem = await post_with_retries(client, url, bodies[index],
                                                                     policy)
                latency = time.perf_counter() - start
                wrong = payload is not None and detections_difference(
                    expected[index], payload["detections"])
                records.append({"latency": latency, "attempts": attempts, "lost": payload is None,
                                "wrong": bool(wrong), "problem": problem or wrong or "",
                                "replica": payload and payload["replica"],
                                "batch_size": payload and payload["batch_size"]})
                done += 1
                if on_progress:
                    await on_progress(done, payload)

        start = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in range(clients)))
    return records, time.perf_counter() - start


def summarise(records, wall_s):
    answered = [r for r in records if not r["lost"]]
    latencies = np.array([r["latency"] for r in answered]) * 1000.0
    return {
        "requests": len(records),
        "errors": sum(r["wrong"] for r in records),
        "lost": sum(r["lost"] for r in records),
        "retries": sum(r["attempts"] - 1 for r in records),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1) if len(answered) else None,
        "p95_ms": round(float(np.percentile(latencies, 95)), 1) if len(answered) else None,
        "throughput_rps": round((len(answered) - sum(r["wrong"] for r in records)) / wall_s, 3),
        "mean_batch_size": round(float(np.mean([r["batch_size"] for r in answered])), 2)
        if answered else None,
        "wall_s": round(wall_s, 2),
        "problems": sorted({r["problem"] for r in records if r["problem"]})[:5],
    }


def replica_names(ray, app: str) -> dict:
    return {a["name"].rsplit("#", 1)[1]: a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"SERVE_REPLICA::{app}#")}


async def kill_run(ray, app, url, token, bodies, expected, clients, per_client, replicas):
    """The load again; one replica is killed when half of it is answered."""
    total = clients * per_client
    state = {"victim": None, "killed_at": None}

    async def on_progress(done, payload):
        if state["victim"] is None and done >= max(1, total // 2):
            names = replica_names(ray, app)
            # The replica that just answered has likely emptied its batch; another
            # one is more likely to hold requests in flight.
            answered = payload and payload["replica"]
            victim = next((name for name in sorted(names) if name != answered), answered)
            state["victim"], state["killed_at"] = victim, time.monotonic()
            ray.kill(ray.get_actor(names[victim], namespace="serve"), no_restart=True)
            print(f"  killed replica {victim} after {done} of {total} answers", flush=True)

    records, wall_s = await run_load(url, token, bodies, expected, clients, per_client,
                                     on_progress)
    replaced_after = None
    deadline = time.monotonic() + 300
    while state["victim"] and time.monotonic() < deadline:
        names = replica_names(ray, app)
        if state["victim"] not in names and len(names) >= replicas:
            wait_until_healthy(url, timeout_s=300, token=token)
            replaced_after = round(time.monotonic() - state["killed_at"], 1)
            break
        await asyncio.sleep(0.5)
    summary = summarise(records, wall_s)
    summary.update(killed_replica=state["victim"], replaced_after_s=replaced_after)
    return summary


# ---------------------------------------------------------------------- main

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="serve_load_") as scratch:
        return measure(args, Path(scratch))


def measure(args, scratch: Path) -> int:
    """Everything in the module docstring; ``scratch`` holds generated weights."""
    token = read_token()
    total = args.clients * args.requests
    print(f"Building the in-process model ({args.config}) ...", flush=True)
    model, weights, config_path, overrides = build_model(args, scratch)
    images = test_images(max(1, min(args.images, total)))
    expected, in_process_rps = in_process_reference(model, images)
    print(f"  in-process: {in_process_rps:.2f} requests/s over {len(images)} images on "
          f"{model.device}", flush=True)
    bodies = [encode_png(image) for image in images]

    ray, app, url = None, "mrcnn-load", args.url
    try:
        if url is None:
            ray = start_local_ray(namespace=f"mrcnn-load-{os.getpid()}", log_to_driver=False)
            from ray import serve
            port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            num_cpus = args.num_cpus or max(0.5, (os.cpu_count() or 1) / args.replicas)
            serve.run(make_app({"config": config_path, "config_overrides": overrides,
                                 "weights": str(weights),
                                 "token_sha256": token_digest(token) if token else None},
                                replicas=args.replicas, num_cpus=num_cpus, num_gpus=args.num_gpus,
                                max_batch_size=args.max_batch_size,
                                batch_wait_timeout_s=args.batch_wait_ms / 1000.0),
                      name=app, route_prefix="/")
            url = f"http://127.0.0.1:{port}"
        health = wait_until_healthy(url, timeout_s=600, token=token)
        print(f"Service at {url}: {health['replicas']} replica(s) on {health['device']}, "
              f"batches up to {health['max_batch_size']}", flush=True)

        print(f"Steady run: {args.clients} clients x {args.requests} requests ...", flush=True)
        records, wall_s = asyncio.run(run_load(url, token, bodies, expected, args.clients,
                                               args.requests))
        steady = summarise(records, wall_s)
        print(f"  {steady}", flush=True)
        kill = None
        if ray is not None and not args.no_kill:
            print("Kill run: the same load, one replica killed midway ...", flush=True)
            kill = asyncio.run(kill_run(ray, app, url, token, bodies, expected, args.clients,
                                        args.requests, args.replicas))
            print(f"  {kill}", flush=True)
    finally:
        if ray is not None:
            from ray import serve
            serve.shutdown()
            ray.shutdown()

    runs = [steady] + ([kill] if kill else [])
    line = {
        "replicas": health["replicas"], "max_batch_size": health["max_batch_size"],
        "batch_wait_ms": round(health["batch_wait_timeout_s"] * 1000.0, 1),
        "clients": args.clients, "requests": total,
        "errors": sum(r["errors"] for r in runs), "lost": sum(r["lost"] for r in runs),
        "p50_ms": steady["p50_ms"], "p95_ms": steady["p95_ms"],
        "throughput_rps": steady["throughput_rps"], "in_process_rps": round(in_process_rps, 3),
        "device": health["device"], "config": args.config,
        "steady": steady, "kill": kill,
    }
    print(json.dumps(line), flush=True)
    return 1 if line["errors"] or line["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
