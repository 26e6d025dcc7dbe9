"""``python -m mrcnn.weights``: download (or fully check) the COCO weights file."""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from mrcnn.weights.check import (
    ENV_VAR,
    WEIGHTS_FILENAME,
    WEIGHTS_MD5,
    WEIGHTS_SIZE,
    WEIGHTS_URL,
    WeightsError,
    check_size_and_md5,
    default_weights_path,
)
from mrcnn.weights.download import download_weights, part_path


class _ProgressBar:
    """Text progress bar on a stream: percentage, MB done/total, MB/s."""

    def __init__(self, stream=None, width: int = 30, interval: float | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        if interval is None:  # redraw often on a terminal, rarely in a log file
            isatty = getattr(self.stream, "isatty", None)
            interval = 0.1 if isatty is not None and isatty() else 5.0
        self.interval = interval
        self.start = None
        self.first_done = 0
        self.last_draw = 0.0
        self.drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if self.start is None or done < self.first_done:
            self.start, self.first_done = now, done
        finished = total is not None and done >= total
        if not finished and now - self.last_draw < self.interval:
            return
        self.last_draw = now
        elapsed = now - self.start
        speed = (f"{(done - self.first_done) / elapsed / 1e6:6.1f} MB/s"
                 if elapsed > 0 else "   --- MB/s")
        if total:
            frac = min(done / total, 1.0)
            filled = int(frac * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            line = (f"\r[{bar}] {frac * 100:5.1f}%  {done / 1e6:7.1f}/"
                    f"{total / 1e6:.1f} MB  {speed}")
        else:
            line = f"\r{done / 1e6:7.1f} MB  {speed}"
        self.stream.write(line)
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _optional_int(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def _optional_md5(text: str) -> str | None:
    if text.lower() == "none":
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{32}", text):
        raise argparse.ArgumentTypeError("expected 32 hex digits or 'none'")
    return text.lower()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mrcnn.weights",
        description="Download (or check) the Mask R-CNN COCO weights file.")
    parser.add_argument("--dest", type=Path, default=None,
                        help=f"where to put the file (default: ${ENV_VAR} or "
                             f"<repo>/weights/{WEIGHTS_FILENAME})")
    parser.add_argument("--url", default=WEIGHTS_URL,
                        help="download from this URL (e.g. a mirror)")
    parser.add_argument("--force", action="store_true",
                        help="download again even if the file is already there")
    parser.add_argument("--check", nargs="?", const=True, default=None, metavar="PATH",
                        help="only verify a file, fully (size and MD5): PATH, else --dest "
                             "or the default location; nothing is downloaded")
    parser.add_argument("--size", type=_optional_int, default=WEIGHTS_SIZE,
                        help="expected size in bytes, or 'none' (default: the "
                             "published size)")
    parser.add_argument("--md5", type=_optional_md5, default=WEIGHTS_MD5,
                        help="expected MD5, or 'none' (default: the published MD5)")
    args = parser.parse_args(argv)
    dest = args.dest.expanduser() if args.dest is not None else default_weights_path()
    if isinstance(args.check, str):
        dest = Path(args.check).expanduser()

    try:
        if args.check:
            check_size_and_md5(dest, args.size, args.md5)
            print(dest)
            return 0
        bar = _ProgressBar(sys.stderr)
        try:
            path = download_weights(dest, args.url, args.size, args.md5, progress=bar,
                                    force=args.force)
        finally:
            bar.close()
        print(path)
        return 0
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nInterrupted; run the same command again to resume "
              f"(the partial file is {part_path(dest)}).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
