"""Deploying the Mask R-CNN replica on Ray Serve, and ``python -m mrcnn.serve``.

``make_app()`` builds the Serve application (the :class:`~mrcnn.serve.server.MaskRCNNServer`
deployment with its resources and limits); ``build_app`` is what a Serve config
file imports (``serve_config.yaml``: ``import_path: mrcnn.serve:build_app``). The
command line starts a local Ray on 127.0.0.1 (or joins a cluster with ``--address`` /
``$RAY_ADDRESS``), deploys, waits for ``/healthz`` and serves until Ctrl-C::

    python -m mrcnn.serve [--replicas N | --min-replicas A --max-replicas B]
                          [--host 127.0.0.1] [--port 8000] [--weights PATH] ...

Ray is imported inside functions, never at module level: a local service must
ask Ray for loopback-only addresses *before* Ray is first imported (see
:func:`start_local_ray`).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

from mrcnn.serve.protocol import APP_NAME, DEPLOYMENT_NAME, TOKEN_ENV, read_token, token_digest
from mrcnn.serve.server import DEFAULT_BATCHING, DEFAULT_CONFIG, MaskRCNNServer, ServiceSettings

__all__ = ["LOCAL_RAY_ENV", "build_app", "main", "make_app", "make_deployment",
           "start_local_ray", "wait_until_healthy"]

# Environment for a Ray that lives on this machine only: Ray's single-machine mode
# (its default on macOS and Windows) advertises and binds 127.0.0.1 instead of
# the address of the default route; and no usage statistics are sent. Both are
# read when Ray is first imported.
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def make_deployment(*, replicas: int = 1, min_replicas: int | None = None,
                    max_replicas: int | None = None, num_cpus: float = 1.0,
                    num_gpus: float = 0.0, max_batch_size: int = DEFAULT_BATCHING["max_batch_size"],
                    batch_wait_timeout_s: float = DEFAULT_BATCHING["batch_wait_timeout_s"],
                    max_queued_requests: int = ServiceSettings.max_queued_requests,
                    env_vars: dict | None = None):
    """The Serve deployment of :class:`MaskRCNNServer` with these resources.

    ``min_replicas``/``max_replicas`` switch on autoscaling (target: one full
    batch in flight per replica) instead of a fixed ``replicas``. ``env_vars``
    reach the replicas' processes (e.g. ``MRCNN_WEIGHTS`` on a cluster; never
    the token, which travels as its digest in the settings).

    Serve lets up to ``max_queued_requests`` plus two batches into a replica, so
    the replica itself answers a flood with its JSON 503 (it counts its waiting
    requests against ``max_queued_requests``); as many again may wait in Serve's
    router before Serve's own 503.
    """
    from ray import serve
    actor_options: dict = {"num_cpus": num_cpus}
    if num_gpus:
        actor_options["num_gpus"] = num_gpus
    if env_vars:
        actor_options["runtime_env"] = {"env_vars": {k: str(v) for k, v in env_vars.items()}}
    options = {
        "name": DEPLOYMENT_NAME,
        "ray_actor_options": actor_options,
        "user_config": {"max_batch_size": int(max_batch_size),
                        "batch_wait_timeout_s": float(batch_wait_timeout_s)},
        "max_ongoing_requests": int(max_queued_requests) + 2 * int(max_batch_size),
        "max_queued_requests": int(max_queued_requests) + 2 * int(max_batch_size),
        "health_check_period_s": 10,
        "graceful_shutdown_timeout_s": 30,
    }
    if min_replicas is not None or max_replicas is not None:
        low = min_replicas if min_replicas is not None else 1
        options["autoscaling_config"] = {
            "min_replicas": low, "initial_replicas": low,
            "max_replicas": max_replicas if max_replicas is not None else max(low, 1),
            "target_ongoing_requests": int(max_batch_size)}
    else:
        options["num_replicas"] = int(replicas)
    return serve.deployment(MaskRCNNServer, **options)


def make_app(args: dict | None = None, **deployment_options):
    """The Serve application: ``args`` are :class:`ServiceSettings` fields,
    ``deployment_options`` go to :func:`make_deployment`."""
    settings = ServiceSettings.from_args(args)
    deployment_options.setdefault("max_queued_requests", settings.max_queued_requests)
    return make_deployment(**deployment_options).bind(asdict(settings))


def build_app(args: dict):
    """``import_path: mrcnn.serve:build_app`` in a Serve config (Serve passes ``args:``).

    A Serve config sets replicas, resources and batching under ``deployments:``.
    """
    return make_app(args)


# ------------------------------------------------------------------- local Ray

def start_local_ray(num_cpus: float | None = None, namespace: str = APP_NAME, **init_kwargs):
    """Start Ray on this machine only: 127.0.0.1, no dashboard, no usage statistics.

    Must run before anything else in the process imports Ray (the address
    choice is read then); otherwise it stops and says so rather than listen on
    the machine's network address.
    """
    already_imported = "ray" in sys.modules
    os.environ.update(LOCAL_RAY_ENV)
    import ray
    # address="local": a new Ray here even when `ray start` left a cluster running.
    ray.init(address="local", num_cpus=num_cpus, namespace=namespace, include_dashboard=False,
             **init_kwargs)
    node_ip = ray.util.get_node_ip_address()
    if node_ip not in ("127.0.0.1", "::1", "localhost"):
        ray.shutdown()
        hint = (" (Ray was imported before mrcnn.serve.start_local_ray ran)"
                if already_imported else "")
        raise RuntimeError(
            f"Ray would listen on {node_ip}, not only on 127.0.0.1{hint}; set "
            + " ".join(f"{k}={v}" for k, v in LOCAL_RAY_ENV.items())
            + " in the environment before starting Python.")
    return ray


def wait_until_healthy(url: str, timeout_s: float = 600.0, token: str | None = None,
                       interval_s: float = 0.5) -> dict:
    """Poll ``GET {url}/healthz`` until it answers 200; return its JSON."""
    import httpx
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            try:
                response = client.get(f"{url.rstrip('/')}/healthz", headers=headers)
                if response.status_code == 200:
                    return response.json()
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(interval_s)
    raise TimeoutError(f"{url}/healthz did not answer 200 within {timeout_s:.0f} s ({last}).")


# ------------------------------------------------------------------------- CLI

def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m mrcnn.serve",
        description="Serve Mask R-CNN over HTTP with Ray Serve (POST /detect, GET /healthz).")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or None,
                        help="Ray cluster to join (default $RAY_ADDRESS; none: start Ray here)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP host to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    scaling = parser.add_mutually_exclusive_group()
    scaling.add_argument("--replicas", type=int, default=1, help="fixed number of replicas")
    scaling.add_argument("--min-replicas", type=int, help="autoscaling lower bound")
    parser.add_argument("--max-replicas", type=int, help="autoscaling upper bound")
    parser.add_argument("--num-cpus", type=float,
                        help="CPUs per replica (default: this machine's cores / replicas)")
    parser.add_argument("--num-gpus", type=float,
                        help="GPUs per replica (default: 1 where Ray sees enough GPUs, "
                             "a share of them when replicas outnumber them, else 0)")
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_BATCHING["max_batch_size"])
    parser.add_argument("--batch-wait-ms", type=float,
                        default=DEFAULT_BATCHING["batch_wait_timeout_s"] * 1000.0)
    parser.add_argument("--weights", help="weights file (default $MRCNN_WEIGHTS, "
                                          "else weights/mask_rcnn_coco.h5)")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="config class, module:Class")
    parser.add_argument("--config-overrides", type=json.loads, default={},
                        help='JSON object of config attributes, e.g. \'{"IMAGE_MAX_DIM": 640}\'')
    parser.add_argument("--max-body-mb", type=float, default=ServiceSettings.max_body_bytes / 2**20)
    parser.add_argument("--max-pixels", type=int, default=ServiceSettings.max_pixels)
    parser.add_argument("--max-queued", type=int, default=ServiceSettings.max_queued_requests,
                        help="requests waiting in a replica before it answers 503 "
                             f"(default {ServiceSettings.max_queued_requests})")
    parser.add_argument("--request-timeout-s", type=float,
                        default=ServiceSettings.request_timeout_s,
                        help="longest a request may take, queue included, before a 503")
    parser.add_argument("--name", default=APP_NAME, help="Serve application name")
    args = parser.parse_args(argv)
    if args.max_replicas is not None and args.min_replicas is None:
        args.min_replicas = 1
    return args


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = _parse_args(argv)
    from mrcnn.weights import WeightsError, check_weights_file, default_weights_path
    token = read_token()
    local = not args.address
    if args.host not in ("127.0.0.1", "localhost", "::1") and not token:
        print(f"warning: serving on {args.host} without a token: anyone who can reach this "
              f"port can use the service. Set {TOKEN_ENV} (e.g. "
              f"`export {TOKEN_ENV}=$(openssl rand -hex 24)`) and give the same value to the "
              "app.", file=sys.stderr, flush=True)
    weights = args.weights
    if local:
        weights = str(Path(weights or default_weights_path()).expanduser().resolve())
        try:
            check_weights_file(weights)
        except WeightsError as exc:
            print(exc, file=sys.stderr)
            return 1
    settings = ServiceSettings.from_args({
        "config": args.config, "config_overrides": args.config_overrides, "weights": weights,
        "max_body_bytes": int(args.max_body_mb * 2**20), "max_pixels": args.max_pixels,
        "max_queued_requests": args.max_queued, "request_timeout_s": args.request_timeout_s,
        # The replicas compare digests: the token itself is in no argument or
        # runtime environment that Ray shows (dashboard, `serve status`).
        "token_sha256": token_digest(token) if token else None})

    if local:
        ray = start_local_ray(log_to_driver=False)
    else:
        import ray
        ray.init(address=args.address, namespace=APP_NAME, log_to_driver=False)
    from ray import serve

    replicas = args.min_replicas or args.replicas
    num_gpus = args.num_gpus
    if num_gpus is None:    # a GPU each; replicas share when there are more of them than GPUs
        gpus = ray.cluster_resources().get("GPU", 0.0)
        num_gpus = min(1.0, gpus / max(1, args.max_replicas or replicas)) if gpus else 0.0
    num_cpus = args.num_cpus
    if num_cpus is None:
        num_cpus = max(0.5, (os.cpu_count() or 1) // max(1, replicas)) if local else 2.0
    env_vars = {} if local or not os.environ.get("MRCNN_WEIGHTS") else {
        "MRCNN_WEIGHTS": os.environ["MRCNN_WEIGHTS"]}
    app = make_app(asdict(settings), replicas=args.replicas, min_replicas=args.min_replicas,
                    max_replicas=args.max_replicas, num_cpus=num_cpus, num_gpus=num_gpus,
                    max_batch_size=args.max_batch_size,
                    batch_wait_timeout_s=args.batch_wait_ms / 1000.0, env_vars=env_vars)

    signal.signal(signal.SIGTERM, _interrupt)         # stop cleanly while starting, too
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(app, name=args.name, route_prefix="/")
        probe_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        health = wait_until_healthy(f"http://{probe_host}:{args.port}", token=token)
        print(f"Mask R-CNN service ready at http://{probe_host}:{args.port} "
              f"({health.get('replicas')} replica(s), {health.get('device')}); "
              "Ctrl-C stops it.",
              flush=True)
        stopping = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda received, _frame: stopping.append(received))
        while not stopping:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("Stopping the service ...", flush=True)
        if local:
            serve.shutdown()
        else:
            serve.delete(args.name)
        ray.shutdown()
    return 0
