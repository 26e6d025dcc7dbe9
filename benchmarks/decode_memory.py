"""Memory that decoding the largest accepted upload needs, per kind of image.

For each of RGBA PNG, palette PNG with transparency, 16-bit grayscale PNG, CMYK
TIFF and plain RGB PNG at the app's pixel limit (40 megapixels by default,
``--megapixels``), prints the peak memory of ``decode_image`` beyond its RGB
result, as a multiple of the RGB size (Pillow's own decoded copy included),
and, last, one JSON line.

    python benchmarks/decode_memory.py [--megapixels 40]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from mrcnn.testing.memory import decode_extra_memory


def make(kind: str, width: int, height: int, folder: Path) -> Path:
    rows = []
    for top in range(0, height, 500):        # built in strips: this process stays small
        block = min(500, height - top)
        rows.append(((np.arange(width * block, dtype=np.uint32) + top * width) % 251)
                    .reshape(block, width))
    ramp = np.concatenate(rows)
    if kind == "RGBA":
        im = Image.fromarray(np.dstack([ramp.astype(np.uint8)] * 3
                                       + [(ramp * 7 % 256).astype(np.uint8)]))
    elif kind == "P":
        im = Image.fromarray(ramp.astype(np.uint8), "L").convert("P")
    elif kind == "I;16":
        im = Image.fromarray((ramp * 250).astype(np.uint16))
    elif kind == "CMYK":
        im = Image.fromarray(np.dstack([ramp.astype(np.uint8)] * 3)).convert("CMYK")
    else:
        im = Image.fromarray(np.dstack([ramp.astype(np.uint8)] * 3))
    path = folder / f"{kind.replace(';', '')}.{'tif' if kind == 'CMYK' else 'png'}"
    im.save(path, **({"transparency": 3} if kind == "P" else {}))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, default=40.0)
    args = parser.parse_args()
    width = int((args.megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(args.megapixels * 1e6 / width)
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("RGBA", "P", "I;16", "CMYK", "RGB"):
            path = make(kind, width, height, Path(folder))
            figures[kind] = round(decode_extra_memory(path), 2)
            path.unlink()
            print(f"{kind:5s} {width}x{height}: {figures[kind]:.2f} x the RGB size "
                  f"({width * height * 3 / 1e6:.0f} MB) beyond the result", flush=True)
    print(json.dumps({"megapixels": round(width * height / 1e6, 1),
                      "extra_memory_x_rgb": figures, "worst": max(figures.values())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
