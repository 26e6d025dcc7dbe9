"""Which number format the network computes in: float32, or bfloat16 where it pays.

``MRCNN_PRECISION`` (environment; the app also reads Streamlit secrets) or
``MaskRCNN(precision=...)`` / ``load_model(precision=...)``, per call
``detect(..., precision=...)``:

- ``fp32``: float32 throughout: matterport's answers (the parity tests run in it).
- ``bf16``: the convolutions and matrix products in bfloat16 (8-bit mantissa,
  float32's range), their weights rounded from the float32 variables at each call;
  softmax, sigmoid, the small final dense layers, the proposal and detection layers,
  RoI Align and unmolding stay float32 (``mrcnn.folding``). On a CPU with AVX512_BF16
  or AMX, oneDNN runs these convolutions about twice as fast (``detect()`` at 1024 px:
  1.89 s against 3.80 s on 2 Zen 4 cores).
- ``fp16``: the same with float16; offered for GPUs only, never picked by ``auto``.
- ``auto`` (default): ``bf16`` on a CPU with AVX512_BF16 or AMX when the network's
  input has at least ``BF16_MIN_PIXELS`` pixels (the smallest size measured to pay:
  ``benchmarks/precision.py --crossover``), with oneDNN on; ``fp32``
  everywhere else, GPUs included (no reduced GPU precision has been measured to keep
  the answers here).

The choice is made per call from the input's size, so one model serves both.
"""
from __future__ import annotations

import os

__all__ = ["BF16_MIN_PIXELS", "DTYPES", "LABELS", "PRECISIONS", "PRECISION_ENV",
           "check_precision", "cpu_flags", "cpu_has_bf16", "default_precision",
           "resolve_precision"]

PRECISION_ENV = "MRCNN_PRECISION"
#: What may be asked for.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: What a run computes in, by resolved precision (TensorFlow's dtype names; this module
#: imports no TensorFlow, so the service's protocol can check names with it).
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: How the app names each.
LABELS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: ``auto`` runs bfloat16 from this many input pixels (the molded square's) up.
#: Measured on 2 cores of an AMD EPYC Zen 4 (``benchmarks/precision.py --crossover``,
#: COCO model): bfloat16 was faster at every size tried, 1.38x at 128 px (0.265 s
#: against 0.365 s) up to 1.87x at 1024 px; the ResNet-50 shapes model at 128 px too.
#: Below the smallest size measured, float32.
BF16_MIN_PIXELS = 128 * 128


def check_precision(value: str) -> str:
    """``value`` lower-cased if it is one of ``PRECISIONS``; else a ValueError that lists them."""
    text = str(value).strip().lower()
    if text not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {value!r}.")
    return text


def default_precision(environ=None) -> str:
    """``$MRCNN_PRECISION`` (checked), else ``auto``."""
    value = (os.environ if environ is None else environ).get(PRECISION_ENV) or "auto"
    return check_precision(value)


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset:
    """The CPU's feature flags as Linux reports them (empty where it doesn't)."""
    try:
        with open(path) as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def onednn_enabled(environ=None) -> bool:
    """TensorFlow's oneDNN kernels are on (the default on x86 Linux) unless
    ``TF_ENABLE_ONEDNN_OPTS=0``; without them bfloat16 runs on slow generic kernels."""
    value = (os.environ if environ is None else environ).get("TF_ENABLE_ONEDNN_OPTS", "1")
    return value.strip().lower() not in ("0", "false", "off")


def cpu_has_bf16(flags=None, environ=None) -> bool:
    """The CPU computes bfloat16 natively (AVX512_BF16 or AMX-BF16) and oneDNN is on."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & set(flags)) and onednn_enabled(environ)


def resolve_precision(requested: str, device: str, input_pixels: int, flags=None,
                      environ=None) -> str:
    """What a run of ``input_pixels`` (the network's input, h * w) computes in.

    ``requested`` is one of ``PRECISIONS``; ``device`` is ``configure_devices()``'s
    description ("CPU (2 cores)", "GPU (...)"). ``flags`` (the CPU's feature flags,
    default ``/proc/cpuinfo``'s) lets a test stand in for another processor.
    """
    requested = check_precision(requested)
    on_gpu = device.startswith("GPU")
    if requested == "fp16" and not on_gpu:
        raise ValueError("precision fp16 is for GPUs; on a CPU use bf16 or fp32.")
    if requested != "auto":
        return requested
    if not on_gpu and input_pixels >= BF16_MIN_PIXELS and cpu_has_bf16(flags, environ):
        return "bf16"
    return "fp32"
