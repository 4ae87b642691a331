"""Benchmark Saccade-VSSL's clip loader: augmented frames per second per worker process.

    python bench/bench_clip_loader.py [--runs 5] [--videos 20] [--json OUT]

Writes ``--videos`` synthetic videos of 60-120 frames (340x256 JPEGs, UCF101's ``jpegs_256``
size, written with PIL at quality 90) with 2-6 scanpath rows each, then times on one thread
(``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``: what a DataLoader worker gets), over
every video per run, alternating:

* ours: ``scenecut.train.clips.SaccadeClips`` (6 clips of 16 frames and their masks per video,
  the full augmentation, each frame decoded once per item);
* the reference: the same items made the way spec SACCADE.md section 5 describes the reference's
  loader, written here: for each clip, PIL opens and decodes each of its 16 JPEGs at full size
  (the A and B clips' shared frames twice), the cell's mask is resized to the frame, then per
  frame PIL crops and resizes (bicubic), torchvision's PIL colour jitter, PIL's Gaussian blur,
  flip and ``to_tensor``;
* ours through a ``DataLoader`` with one worker process (wall time, batches of 2 videos).

Prints the medians of ``--runs`` runs (augmented frames/s: 96 per video; wall and CPU time of
this process), the ratio, the target (250 frames/s per worker), then milliseconds per frame of
JPEG decoders and of each step of ours against the alternatives tried. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scenecut.train.clips import (  # noqa: E402
    CANVAS,
    SaccadeClips,
    _augment,
    _resize,
    decode_frame,
    focus_mask,
    train_augment,
)

TARGET = 250  # augmented frames/s per worker (issue 18): 8 workers keep one GPU busy
CLIPS = 6
T = 16
SIZE = 112


def make_videos(
    root: Path, count: int = 20, seed: int = 0
) -> list[tuple[list[Path], np.ndarray, int]]:
    """``count`` videos of 60-120 frames: a smooth colour field panning under fine detail
    (about 20 kB a frame at quality 90), each with 2-6 scanpath rows of 8-40 frames."""
    rng = np.random.default_rng(seed)
    videos = []
    for v in range(count):
        n = int(rng.integers(60, 121))
        field = Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8))
        base = np.asarray(field.resize((340 + 2 * n, 256 + n), Image.BICUBIC), np.float32)
        detail = rng.normal(0, 5, base.shape).astype(np.float32)
        folder = root / f"v_{v:03d}"
        folder.mkdir(parents=True)
        paths = []
        for t in range(n):
            frame = (
                base[t // 2 : t // 2 + 256, t : t + 340]
                + detail[t // 2 : t // 2 + 256, t : t + 340]
            )
            path = folder / f"frame{t + 1:06d}.jpg"
            Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8)).save(path, quality=90)
            paths.append(path)
        rows = []
        for _ in range(int(rng.integers(2, 7))):
            start = int(rng.integers(0, n - 8))
            rows.append(
                (int(rng.integers(0, 49)), start, min(n - 1, start + int(rng.integers(8, 41))))
            )
        videos.append((paths, np.array(sorted(rows, key=lambda r: r[1]), np.int64), v % 5))
    return videos


# --- the reference's loader, per frame with PIL ----------------------------------------------


class ReferenceClips:
    """The reference's pre-training items as spec section 5 describes its loader: PIL per frame.
    Same fixations as ours (``scenecut.train.clips.fixations``), same draws; only the image
    work differs."""

    def __init__(self, ours: SaccadeClips):
        self.ours = ours

    def __getitem__(self, index: int):
        import torchvision.transforms.functional as TF

        from scenecut.train.clips import fixations

        frames, rows, label = self.ours.videos[index]
        fix = fixations(
            rows, len(frames) - 1, completion=self.ours.completion, rng=random, clip_len=T
        )
        starts = [a for _, a, _ in fix] + [b for _, _, b in fix]
        cells = [c for c, _, _ in fix] * 2
        clips, masks = [], []
        for start, cell in zip(starts, cells, strict=True):
            images = [Image.open(frames[i]) for i in range(start, start + T)]
            mask = Image.fromarray(focus_mask(cell)).resize(images[0].size)
            images.append(mask)
            width, height = images[0].size
            aug = train_augment(width, height)
            if aug.box is None:
                images = [im.resize((SIZE, SIZE), Image.BICUBIC) for im in images]
            else:
                x, y, w, h = aug.box
                images = [
                    im.crop((x, y, x + w, y + h)).resize((SIZE, SIZE), Image.BICUBIC)
                    for im in images
                ]
            adjust = {
                "brightness": TF.adjust_brightness,
                "contrast": TF.adjust_contrast,
                "saturation": TF.adjust_saturation,
                "hue": TF.adjust_hue,
            }
            for name, factor in aug.jitter:
                images = [adjust[name](im, factor) for im in images]
            if aug.blur is not None:
                sigmas = [aug.blur] * T + [aug.mask_blur]
                images = [
                    im.filter(ImageFilter.GaussianBlur(s))
                    for im, s in zip(images, sigmas, strict=True)
                ]
            flips = [aug.flip] * T + [aug.mask_flip]
            images = [
                im.transpose(Image.FLIP_LEFT_RIGHT) if f else im
                for im, f in zip(images, flips, strict=True)
            ]
            tensors = [TF.to_tensor(im) for im in images]
            clips.append(torch.stack(tensors[:-1], 1))
            masks.append(tensors[-1])
        return torch.stack(clips), torch.stack(masks), label


# --- measurements ----------------------------------------------------------------------------


def rate(dataset, items: int) -> tuple[float, float]:
    """Augmented frames per wall second and per CPU second of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(items):
        dataset[i]
    return items * CLIPS * T / (time.perf_counter() - wall), items * CLIPS * T / (
        time.process_time() - cpu
    )


def loader_rate(dataset, items: int) -> float:
    """Frames per wall second through a DataLoader with one worker, after its first batch."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=2, num_workers=1)
    it = iter(loader)
    next(it)
    count, start = 0, time.perf_counter()
    for batch in it:
        count += batch["clips"].shape[0] * CLIPS * T
    wall = time.perf_counter() - start
    del it, loader
    return count / wall


def _best_ms(fn, args_list, repeats: int = 5) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for args in args_list:
            fn(*args)
        best = min(best, (time.perf_counter() - start) / len(args_list))
    return 1000 * best


def decoders(paths: list[Path]) -> dict[str, float]:
    """Milliseconds per 340x256 frame of each JPEG decoder (best of 5 passes)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [(p.read_bytes(),) for p in paths]

    def pil(d, draft=None):
        import io

        im = Image.open(io.BytesIO(d))
        if draft:
            im.draft("RGB", draft)
        return np.asarray(im.convert("RGB"))

    def tv(d):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            return decode_jpeg(
                torch.frombuffer(bytearray(d), dtype=torch.uint8), mode=ImageReadMode.RGB
            )

    return {
        "PIL full size": _best_ms(pil, data),
        "PIL draft 1/2 (DCT scaling)": _best_ms(lambda d: pil(d, (170, 128)), data),
        "torchvision decode_jpeg": _best_ms(tv, data),
        "OpenCV imdecode (ours)": _best_ms(
            lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR), data
        ),
        "OpenCV imdecode 1/2": _best_ms(
            lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_REDUCED_COLOR_2), data
        ),
    }


def steps(paths: list[Path]) -> dict[str, float]:
    """Milliseconds per frame of each step of ours on a 16-frame clip (jitter and blur: the
    time of crop + resize + the step, less that of crop + resize), and of the alternatives."""
    import torch.nn.functional as F
    from torchvision.transforms.v2 import functional as TF

    from scenecut.train.clips import Augment

    frames = [decode_frame(p) for p in paths[:T]]
    box = (50, 30, 230, 200)
    crops = np.stack([f[30:230, 50:280] for f in frames])
    clip = _resize(crops, SIZE, SIZE)
    tensor = torch.from_numpy(clip).permute(0, 3, 1, 2).float().div(255)
    jitter = (("brightness", 1.2), ("contrast", 0.8), ("saturation", 1.3), ("hue", 0.05))

    def ours(aug):
        return lambda: _augment(frames, None, aug, SIZE)

    def tv_jitter():
        x = TF.adjust_brightness(tensor, 1.2)
        x = TF.adjust_contrast(x, 0.8)
        x = TF.adjust_saturation(x, 1.3)
        return TF.adjust_hue(x, 0.05)

    def conv_blur(sigma=1.2):
        r = math.ceil(3 * sigma)
        k = torch.exp(-(torch.arange(-r, r + 1.0) ** 2) / (2 * sigma**2))
        k = k / k.sum()
        x = tensor.reshape(-1, 1, SIZE, SIZE)
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))

    crop = _best_ms(ours(Augment(box)), [()]) / T
    table = {
        "ours: crop + resize (uint8 channels-last)": crop,
        "  float NCHW resize instead": _best_ms(
            lambda: F.interpolate(
                torch.from_numpy(crops).permute(0, 3, 1, 2).float(),
                size=(SIZE, SIZE),
                mode="bicubic",
                antialias=True,
            ),
            [()],
        )
        / T,
        "  PIL crop + resize per frame instead": _best_ms(
            lambda: [
                Image.fromarray(f).crop((50, 30, 280, 230)).resize((SIZE, SIZE), Image.BICUBIC)
                for f in frames
            ],
            [()],
        )
        / T,
        "ours: colour jitter, 4 steps (OpenCV uint8)": _best_ms(ours(Augment(box, jitter)), [()])
        / T
        - crop,
        "  torchvision v2 float jitter instead (4 steps)": _best_ms(tv_jitter, [()]) / T,
        "ours: blur sigma 1.2 (OpenCV uint8)": _best_ms(ours(Augment(box, blur=1.2)), [()]) / T
        - crop,
        "  separable conv2d float blur instead": _best_ms(conv_blur, [()]) / T,
    }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--no-loader", action="store_true", help="skip the DataLoader run")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, OpenCV {cv2.__version__}, Pillow {Image.__version__}",
        "canvas": CANVAS,
    }
    with tempfile.TemporaryDirectory(prefix="scenecut-clips-") as tmp:
        start = time.perf_counter()
        videos = make_videos(Path(tmp), args.videos)
        sizes = [p.stat().st_size for v in videos for p in v[0]]
        print(
            f"{len(videos)} videos, {len(sizes)} frames of 340x256, "
            f"mean {np.mean(sizes) / 1000:.1f} kB "
            f"({time.perf_counter() - start:.1f} s to write); {results['machine']}"
        )
        ours = SaccadeClips(videos)
        reference = ReferenceClips(ours)
        ours[0], reference[0]  # warm-up: imports, first calls
        runs: dict[str, list] = {"ours": [], "reference": [], "loader": []}
        for run in range(args.runs):
            random.seed(run)
            torch.manual_seed(run)
            pair = [("ours", ours), ("reference", reference)]
            for name, dataset in pair if run % 2 == 0 else pair[::-1]:
                runs[name].append(rate(dataset, len(videos)))
            if not args.no_loader:
                runs["loader"].append(loader_rate(ours, len(videos)))
        med = {
            name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
            for name, rs in runs.items()
            if rs and name != "loader"
        }
        results["runs"] = runs
        results["median_frames_per_s"] = {k: v[0] for k, v in med.items()}
        results["median_frames_per_cpu_s"] = {k: v[1] for k, v in med.items()}
        ratio = med["ours"][0] / med["reference"][0]
        results["ratio"] = ratio
        print(f"\naugmented frames/s per worker (one thread), median of {args.runs} runs:")
        print(f"  {'':34s} {'wall':>7s} {'CPU':>7s}")
        for name, label in (("ours", "ours (SaccadeClips)"), ("reference", "reference (PIL)")):
            print(f"  {label:34s} {med[name][0]:7.0f} {med[name][1]:7.0f}")
        if runs["loader"]:
            loader = statistics.median(runs["loader"])
            results["median_loader_1_worker"] = loader
            print(f"  {'ours, DataLoader, 1 worker':34s} {loader:7.0f}")
        met = "met" if med["ours"][0] >= TARGET else "NOT met"
        print(f"  ratio ours / reference: {ratio:.2f}x; target {TARGET}/s per worker: {met}")
        paths = videos[0][0]
        results["decode_ms"] = decoders(paths[:40])
        print("\nJPEG decode, ms per 340x256 frame (best of 5):")
        for name, ms in results["decode_ms"].items():
            print(f"  {name:34s} {ms:6.3f}")
        results["step_ms"] = steps(paths)
        print("\nours step by step and the alternatives, ms per frame (16-frame clip, best of 5):")
        for name, ms in results["step_ms"].items():
            print(f"  {name:48s} {ms:6.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
