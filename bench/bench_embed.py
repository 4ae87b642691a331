"""Keyframe-embedding throughput: images/s of the shot encoders on this machine.

    python bench/bench_embed.py [--runs 3] [--images 64] [--batch 0] [--device auto] [--no-compile]
                                [--json OUT]

Each configuration embeds the same images through ``scenecut.models.runner.Runner`` (the code path
of ``segment``) ``--runs`` times after one warm-up call (oneDNN primes its kernels per shape, and
compiled networks compile then; the compile time is reported apart); the table shows the median
images/s and the ratio to ResNet-50 fp32, measured in the same invocation. ``--images`` is images
per timed pass (default 64), ``--batch`` images per network call (0: the default, 16 on CPUs, 64
on GPUs). ResNet-50 is BaSSL's shot encoder (torchvision trunk, random weights: speed does not
depend on them); EfficientNet-Lite0 is the offline encoder with its shipped ImageNet weights. Raw
numbers and the machine go to bench/results/embed.json."""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))

from bench_segment import machine as describe_machine  # noqa: E402

from scenecut.models.bassl import ShotEncoder  # noqa: E402
from scenecut.models.effnet import load_lite0  # noqa: E402
from scenecut.models.options import resolve_device  # noqa: E402
from scenecut.models.runner import Runner, autocast_dtype  # noqa: E402

TARGETS = {"resnet50": 70.0, "effnet-lite0": 150.0}  # images/s, issue 8 (this 2-core CPU)
IMAGES = 64  # per timed run [default of --images]


def measure(
    net,
    images: torch.Tensor,
    precision: str,
    channels_last: bool,
    batch: int,
    compile: bool,
    runs: int,
) -> tuple[list[float], float]:
    """Images/s of ``runs`` timed passes over ``images``, and the warm-up (compile) seconds."""
    device = images.device
    runner = Runner(
        net,
        device=device,
        precision=precision,
        batch_images=batch,
        compile=compile,
        channels_last=channels_last,
    )
    start = time.perf_counter()
    runner(images)  # warm-up
    warm = time.perf_counter() - start
    if compile and runner.compiled is None:
        raise RuntimeError("torch.compile failed; see the warning above")
    rates = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        runner(images)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(images.shape[0] / (time.perf_counter() - start))
    return rates, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--images", type=int, default=IMAGES, help="images per timed pass")
    parser.add_argument("--batch", type=int, default=0, help="images per call (0: default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled configs")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "embed.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    device = torch.device(resolve_device(args.device))
    low = "bf16" if autocast_dtype(device, "auto") in (None, torch.bfloat16) else "fp16"
    images = torch.randn(args.images, 3, 224, 224, device=device)
    torch.manual_seed(0)
    nets = {"resnet50": ShotEncoder().eval(), "effnet-lite0": load_lite0()}
    configs = []
    for encoder in nets:
        configs += [
            (encoder, "fp32", False, False),
            (encoder, "fp32", True, False),
            (encoder, low, True, False),
        ]
        if not args.no_compile:
            configs.append((encoder, low, True, True))
    rows = []
    for encoder, precision, channels_last, compile in configs:
        name = f"{encoder} {precision}" + " channels_last" * channels_last + " compiled" * compile
        say(f"{name} ...")
        try:
            rates, warm = measure(
                nets[encoder], images, precision, channels_last, args.batch, compile, args.runs
            )
        except Exception as error:  # a failed compile: report it, keep the other rows
            say(f"{name}: {error}")
            continue
        rows.append(
            {
                "config": name,
                "encoder": encoder,
                "precision": precision,
                "channels_last": channels_last,
                "compiled": compile,
                "images_per_s": rates,
                "median": statistics.median(rates),
                "warmup_s": round(warm, 2),
            }
        )
    reference = rows[0]["median"]
    batch = Runner(nets["effnet-lite0"], device=device, batch_images=args.batch).batch_images
    print(f"device {device}, batch {batch}, {args.runs} runs, {torch.get_num_threads()} threads")
    print(f"{'encoder':42s} {'images/s':>9s} {'vs resnet50 fp32':>17s} {'warm-up s':>10s}")
    for row in rows:
        ratio = row["median"] / reference
        print(f"{row['config']:42s} {row['median']:9.1f} {ratio:16.2f}x {row['warmup_s']:10.1f}")
    best = {}
    for encoder, target in TARGETS.items():
        fast = [r for r in rows if r["encoder"] == encoder and r["precision"] != "fp32"]
        top = max(fast, key=lambda r: r["median"]) if fast else None
        best[encoder] = top and {"config": top["config"], "median": top["median"]}
        value = f"{top['median']:.1f} ({top['config']})" if top else "-"
        print(f"target: {encoder} >= {target:.0f} images/s; best low-precision: {value}")
    machine = {
        **describe_machine(),  # the same description as the other benches
        "device": str(device),
        "native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    }
    doc = {"machine": machine, "batch": batch, "images": args.images, "rows": rows, "best": best}
    doc["reference"] = {"config": rows[0]["config"], "median": reference}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
