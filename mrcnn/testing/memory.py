"""Measuring the memory an upload's decoding needs, in a fresh process."""
from __future__ import annotations

import subprocess
import sys

__all__ = ["decode_extra_memory"]

_MEASURE = """
import sys
data = open(sys.argv[1], "rb").read()
from mrcnn.inputs.uploads import decode_image
def status(field):   # bytes; VmHWM is this process's own peak (ru_maxrss survives exec)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
before = status("VmRSS")
assert status("VmHWM") - before < 8e6, "the peak so far must be now"
image = decode_image(data, max_pixels=10**9)
print((status("VmHWM") - before - image.nbytes) / image.nbytes)
"""


def decode_extra_memory(path) -> float:
    """Peak memory ``decode_image`` needs for the file at ``path`` beyond its RGB result,
    as a multiple of that result's size (Linux; the file's bytes are read before)."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return float(done.stdout)
