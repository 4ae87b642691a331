"""Keyframe-embedding throughput: images/s of the shot encoders on this machine.

    python bench/bench_embed.py [--runs 3] [--batch 32] [--device auto] [--json OUT]

Each configuration embeds the same batch of 224x224 images ``--runs`` times after one warm-up
call (oneDNN primes its kernels per shape); the table shows the median images/s and the ratio to
ResNet-50 fp32, measured in the same invocation. ResNet-50 is BaSSL's shot encoder (torchvision
trunk, random weights: speed does not depend on them); EfficientNet-Lite0 is the offline encoder
with its shipped ImageNet weights. Raw numbers and the machine go to bench/results/embed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scenecut.effnet import load_lite0  # noqa: E402
from scenecut.model import ShotEncoder, autocast_dtype  # noqa: E402
from scenecut.scoring import resolve_device  # noqa: E402

TARGETS = {"resnet50 bf16 channels_last": 70.0, "effnet-lite0 best": 150.0}


def measure(net, images: torch.Tensor, dtype, channels_last: bool, runs: int) -> list[float]:
    device = images.device
    net = net.to(device).eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    rates = []
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        net(images)  # warm-up
        for _ in range(runs):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            net(images)
            if device.type == "cuda":
                torch.cuda.synchronize()
            rates.append(images.shape[0] / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "embed.json")
    args = parser.parse_args()
    device = torch.device(resolve_device(args.device))
    low = autocast_dtype(device, "auto") or torch.bfloat16
    low_name = (
        str(low).removeprefix("torch.").replace("bfloat16", "bf16").replace("float16", "fp16")
    )
    images = torch.randn(args.batch, 3, 224, 224, device=device)
    torch.manual_seed(0)
    resnet, lite0 = ShotEncoder(), load_lite0()
    configs = [
        ("resnet50 fp32", resnet, None, False),
        ("resnet50 fp32 channels_last", resnet, None, True),
        (f"resnet50 {low_name} channels_last", resnet, low, True),
        ("effnet-lite0 fp32", lite0, None, False),
        ("effnet-lite0 fp32 channels_last", lite0, None, True),
        (f"effnet-lite0 {low_name} channels_last", lite0, low, True),
    ]
    rows = []
    for name, net, dtype, channels_last in configs:
        rates = measure(net, images, dtype, channels_last, args.runs)
        rows.append({"config": name, "images_per_s": rates, "median": statistics.median(rates)})
    reference = rows[0]["median"]
    best_lite0 = max(r["median"] for r in rows if r["config"].startswith("effnet"))
    print(
        f"device {device}, batch {args.batch}, {args.runs} runs, {torch.get_num_threads()} threads"
    )
    print(f"{'encoder':38s} {'images/s':>9s} {'vs resnet50 fp32':>17s}")
    for row in rows:
        print(f"{row['config']:38s} {row['median']:9.1f} {row['median'] / reference:16.2f}x")
    print(
        f"targets: resnet50 bf16 >= {TARGETS['resnet50 bf16 channels_last']:.0f} images/s, "
        f"effnet-lite0 >= {TARGETS['effnet-lite0 best']:.0f} images/s (best: {best_lite0:.1f})"
    )
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "device": str(device),
        "cuda": torch.cuda.get_device_name() if device.type == "cuda" else None,
        "native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"machine": machine, "batch": args.batch, "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
