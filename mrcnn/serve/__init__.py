"""Mask R-CNN over HTTP: a Ray Serve deployment and the app's client of it.

- :mod:`mrcnn.serve.protocol`: names, the token variable, settings and the JSON
  codec that client and server share.
- :mod:`mrcnn.serve.client`: the HTTP client (retries, deadline).
- :mod:`mrcnn.serve.backends`: the in-process model or the service behind one
  interface (what the app calls).
- :mod:`mrcnn.serve.server`: one replica (model, batching, limits, HTTP).
- :mod:`mrcnn.serve.deployment`: the Serve application and ``python -m mrcnn.serve``.

Imports flow one way: deployment -> server -> protocol; backends -> client ->
protocol. Nothing here imports Ray or TensorFlow at module level.

``mrcnn.serve:build_app`` (what ``serve_config.yaml`` imports) is
``mrcnn.serve.deployment.build_app``, loaded on first use.
"""


def __getattr__(name):
    if name == "build_app":
        from mrcnn.serve.deployment import build_app
        return build_app
    raise AttributeError(f"module 'mrcnn.serve' has no attribute {name!r}")
