"""A classroom at once: N visitors upload N different photos in the same second.

Starts ``streamlit run app.py`` with generated COCO weights (the published
layout; ``--weights`` for another file), opens N separate browser sessions in
Debian's Chromium (Playwright), and:

1. lets a first visitor warm the server up (model build, first trace;
   ``first_visitor_cold_s``), then times one visitor alone (upload to results,
   warm; ``single_s``) and reads the network time the page reports for it;
2. lets the N visitors upload their photos at the same moment, and for each
   records the seconds to its results, whether it was ever shown its place in
   line ("... ahead of yours", "next in line", "working on your photo now"),
   and that the results are its own photo's (its image size in the caption);
3. moves the first visitor's confidence slider and times the re-render;
4. reads the server's peak memory (VmHWM).

Prints the figures, then one JSON line last. Targets on a 2-core machine:
last visitor <= (N + 1) x single, every visitor shown its place, slider
re-render < 0.3 s, peak memory < 3 GB at N = 16.

``--train`` measures instead a photo's seconds to results while the Train page
trains (its child process at the lowest priority), against the same photos'
time with no training, in one run: after the warm-up, ``--visitors`` photos one
after another alone, then a visitor presses *Start training*, and once the run
takes steps, as many other photos one after another. Target: the median during
training <= 1.5x the median alone.

    python benchmarks/crowd.py [--visitors 8] [--weights PATH] [--precision auto]
    python benchmarks/crowd.py --train [--visitors 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mrcnn.testing.browser import UPLOADER, launch_chromium, streamlit_app
from mrcnn.testing.machine import cpu_name

GALLERY = '.st-key-gallery [data-testid="stImage"]'
SLIDER = '[data-testid="stSlider"] input[type=range]'
PLACE = re.compile(r"ahead of yours|next in line|working on your photo")
SETTLED = """(threshold) => {
  if (document.querySelectorAll('[data-stale="true"]').length) return false;
  return document.body.innerText.includes('at confidence ≥ ' + threshold);
}"""




def photos(count: int, folder: Path) -> list[tuple[Path, tuple[int, int]]]:
    """``count`` different photos (crops of scikit-image's), each of its own size."""
    import skimage.data
    sources = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]
    out = []
    for i in range(count):
        source = sources[i % len(sources)]
        height, width = source.shape[0] - 3 * i, source.shape[1] - 5 * i
        path = folder / f"photo{i:02d}.jpg"
        Image.fromarray(np.ascontiguousarray(source[:height, :width])).save(path, quality=90)
        out.append((path, (height, width)))
    return out


def cpu_seconds() -> dict:
    """CPU seconds used so far by the Streamlit server and by Chromium (all processes):
    both run on this machine's cores, where a classroom's browsers would not."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {"server": 0.0, "browser": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if b"streamlit run" in command:
            used["server"] += seconds
        elif b"chrom" in command.split(b" ")[0].lower():
            used["browser"] += seconds
    return used


def peak_memory_gb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


async def visit(context, url: str, photo: Path, size, start: asyncio.Event, record: dict):
    page = await context.new_page()
    await page.goto(url)
    await page.locator(UPLOADER).wait_for(state="attached", timeout=300_000)
    record["page"] = page
    record["ready"].set()
    await start.wait()
    began = time.perf_counter()
    await page.locator(UPLOADER).set_input_files(photo)
    shown_place = False
    height, width = size
    caption = f"Image: {width} × {height} px"
    while True:
        if not shown_place and await page.get_by_text(PLACE).count():
            shown_place = True
        if await page.locator(GALLERY).count() and await page.get_by_text(caption).count():
            break
        if await page.locator('[data-testid="stException"]').count():
            raise RuntimeError(f"{photo.name}: the page shows an exception")
        if time.perf_counter() - began > 1200:
            raise TimeoutError(f"{photo.name}: no results after 20 minutes")
        await asyncio.sleep(0.1)
    record.update(seconds=time.perf_counter() - began, shown_place=shown_place)


async def network_seconds(page) -> float:
    text = await page.locator('[data-testid="stMetric"]').filter(has_text="Network").first \
        .inner_text()
    value = re.search(r"([\d.]+)\s*(ms|s)", text.split("Network", 1)[1])
    return float(value.group(1)) / (1000 if value.group(2) == "ms" else 1)


async def alone(browser, url: str, picture) -> dict:
    """One visitor alone: upload to results, and the page's network time."""
    record = {"ready": asyncio.Event()}
    go = asyncio.Event()
    context = await browser.new_context(viewport={"width": 1200, "height": 1400})
    task = asyncio.create_task(visit(context, url, *picture, go, record))
    await record["ready"].wait()
    go.set()
    await task
    record["network_s"] = await network_seconds(record["page"])
    await context.close()
    return record


async def crowd(url: str, pictures, single_picture, warm_picture) -> dict:
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = await launch_chromium(p)
        try:
            # A first visitor warms the server up (the model's build and first trace),
            # then one visitor alone gives the reference time.
            warm = await alone(browser, url, warm_picture)
            single = await alone(browser, url, single_picture)

            records = [{"ready": asyncio.Event()} for _ in pictures]
            start = asyncio.Event()
            contexts = [await browser.new_context(viewport={"width": 1200, "height": 1400})
                        for _ in pictures]
            tasks = [asyncio.create_task(visit(c, url, path, size, start, r))
                     for c, (path, size), r in zip(contexts, pictures, records)]
            for record in records:
                await record["ready"].wait()
            before = cpu_seconds()
            start.set()
            await asyncio.gather(*tasks)
            after = cpu_seconds()
            crowd_cpu = {k: round(after[k] - before[k], 1) for k in after}

            first = records[0]["page"]
            slider = first.locator(SLIDER).first
            await slider.focus()
            times = []
            for key, threshold in (("ArrowRight", "0.71"), ("ArrowLeft", "0.70"),
                                   ("ArrowRight", "0.71"), ("ArrowLeft", "0.70"),
                                   ("ArrowRight", "0.71")):
                began = time.perf_counter()
                await first.keyboard.press(key)
                await first.wait_for_function(SETTLED, arg=threshold, timeout=60_000,
                                              polling=20)
                times.append(time.perf_counter() - began)
        finally:
            await browser.close()
    return {"single_s": single["seconds"], "single_network_s": single["network_s"],
            "cold_s": warm["seconds"], "cold_network_s": warm["network_s"],
            "crowd_cpu_s": crowd_cpu,
            "seconds": [r["seconds"] for r in records],
            "shown_place": [r["shown_place"] for r in records],
            "slider_rerender_s": statistics.median(times)}


TRAINING = re.compile(r"Training · layers .* step (\d+) of")


async def training_steps(page) -> int:
    found = TRAINING.search(await page.locator("body").inner_text())
    return int(found.group(1)) if found else 0


async def while_training(url: str, pictures, warm_picture) -> dict:
    """Photos alone, then the same number of other photos while the Train page trains."""
    from playwright.async_api import async_playwright
    count = len(pictures) // 2
    async with async_playwright() as p:
        browser = await launch_chromium(p)
        try:
            await alone(browser, url, warm_picture)
            before = [(await alone(browser, url, picture))["seconds"]
                      for picture in pictures[:count]]
            context = await browser.new_context(viewport={"width": 1200, "height": 1400})
            trainer = await context.new_page()
            await trainer.goto(f"{url}/Train")
            await trainer.get_by_role("button", name="Start training").click()
            began = time.perf_counter()
            while await training_steps(trainer) < 3:          # built, traced, stepping
                await asyncio.sleep(0.5)
            ramp_s = time.perf_counter() - began
            steps_before = await training_steps(trainer)
            cpu_before = cpu_seconds()
            during = [(await alone(browser, url, picture))["seconds"]
                      for picture in pictures[count:2 * count]]
            cpu_after = cpu_seconds()
            steps_during = await training_steps(trainer) - steps_before
            await trainer.get_by_role("button", name="Stop").click()
            await trainer.get_by_text(re.compile("Stopped · layers")).wait_for(timeout=30_000)
        finally:
            await browser.close()
    return {"alone_s": before, "during_training_s": during, "training_ramp_s": ramp_s,
            "training_steps_during_photos": steps_during,
            "cpu_during_photos_s": {k: round(cpu_after[k] - cpu_before[k], 1)
                                    for k in cpu_after}}


def report_training(figures: dict, peak: float) -> None:
    alone_s = statistics.median(figures["alone_s"])
    during_s = statistics.median(figures["during_training_s"])
    result = {"cpu": cpu_name(), "photos": len(figures["alone_s"]),
              "alone_s": [round(s, 2) for s in figures["alone_s"]],
              "during_training_s": [round(s, 2) for s in figures["during_training_s"]],
              "median_alone_s": round(alone_s, 2), "median_during_training_s": round(during_s, 2),
              "during_over_alone": round(during_s / alone_s, 2), "target_during_over_alone": 1.5,
              "training_ramp_s": round(figures["training_ramp_s"], 1),
              "training_steps_during_photos": figures["training_steps_during_photos"],
              "cpu_during_photos_s": figures["cpu_during_photos_s"],
              "server_peak_memory_gb": round(peak, 2)}
    print(f"A photo on {result['cpu']}: {result['median_alone_s']} s alone, "
          f"{result['median_during_training_s']} s while training "
          f"({result['during_over_alone']}x; target 1.5x)")
    print(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=None,
                        help="visitors (default 8); with --train, photos each way (default 3)")
    parser.add_argument("--weights", type=Path, help="weights file (default: generated)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="the server's MRCNN_PRECISION (mrcnn.precision)")
    parser.add_argument("--train", action="store_true",
                        help="a photo's time while the Train page trains, against alone")
    args = parser.parse_args()
    if args.visitors is None:
        args.visitors = 3 if args.train else 8
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        weights = args.weights
        if weights is None:
            from mrcnn.testing.synthetic_weights import generate_coco_weights
            weights = generate_coco_weights(folder / "coco.h5", seed=0)
        pictures = photos(2 * args.visitors + 1 if args.train else args.visitors + 2, folder)
        with streamlit_app({"MRCNN_WEIGHTS": str(weights), "MRCNN_SERVE_URL": None,
                            "MRCNN_TRAIN_DIR": str(folder / "runs"),
                            "MRCNN_PRECISION": args.precision},
                           folder / "streamlit.log") as (url, server):
            if args.train:
                figures = asyncio.run(while_training(url, pictures[1:], pictures[0]))
            else:
                figures = asyncio.run(crowd(url, pictures[2:], pictures[1], pictures[0]))
            peak = peak_memory_gb(server.pid)
    if args.train:
        report_training(figures, peak)
        return 0
    seconds = sorted(figures["seconds"])
    n = args.visitors
    result = {
        "cpu": cpu_name(), "visitors": n, "precision": args.precision,
        "first_s": round(seconds[0], 2), "median_s": round(statistics.median(seconds), 2),
        "last_s": round(seconds[-1], 2),
        "single_s": round(figures["single_s"], 2),
        "single_network_s": round(figures["single_network_s"], 2),
        "first_visitor_cold_s": round(figures["cold_s"], 2),
        "crowd_cpu_s": figures["crowd_cpu_s"],
        "last_over_single": round(seconds[-1] / figures["single_s"], 2),
        "target_last_over_single": n + 1,
        "shown_place": sum(figures["shown_place"]),
        "slider_rerender_s": round(figures["slider_rerender_s"], 3),
        "peak_memory_gb": round(peak, 2),
    }
    print(f"{n} visitors on {result['cpu']}: first / median / last "
          f"{result['first_s']} / {result['median_s']} / {result['last_s']} s; one alone "
          f"{result['single_s']} s (network {result['single_network_s']} s); "
          f"{result['shown_place']} of {n} shown their place; slider "
          f"{result['slider_rerender_s'] * 1000:.0f} ms; peak {result['peak_memory_gb']} GB")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
