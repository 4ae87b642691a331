"""Does Saccade-VSSL pre-training learn motion? The synthetic run of issue 18, on a CPU.

    python bench/saccade_synth.py [--seeds 0,1,2] [--epochs 100] [--quick] [--no-ablation]
                                  [--out DIR] [--json OUT]

One command, through the real CLI (``python -m scenecut``, one process per step):

1. ``data synth --actions``: 8 classes that only motion tells apart, 12 videos each (4 of them in
   the test list), 340x256 frames (UCF101's ``jpegs_256`` size, so that the retrieval protocol's
   196-px centre crop lies inside the frame), with the options that make motion what tells one
   video from another: ``--textures 1`` (every video has the same object texture and
   background), ``--flip-invariant`` (classes a horizontal flip keeps: pre-training and the
   downstream protocol flip clips), ``--speed 3`` (motions three times as fast, so that an
   8-frame clip shows them; ``--frames 16,22``), and ``--scanpaths`` (substitute scanpaths);
2. per seed, ``train pretrain --method saccade --encoder small`` (32-px 8-frame clips, 8
   videos a batch at a constant lr 0.1, 64 memory-bank negatives, two k-means of 8 clusters
   every 4 epochs in the last fifth; the spec's other settings);
3. the same network before training: ``scenecut.models.saccade.build`` after
   ``torch.manual_seed(seed)``, which is how ``train pretrain`` initialises it, saved as a model
   file (``eval retrieval --model random:small`` would build the 112-px 16-frame default
   instead);
4. ``eval retrieval`` of both (clean protocol: deterministic; and the reference's, with colour
   jitter), ``train probe`` of both (linear probe, and ``--head full`` fine-tuning; clean
   protocol: the epoch is kept by a validation split carved from train);
5. unless ``--no-ablation``: the same pre-training with ``--set pretext.fixations=random``
   (random fixations instead of the scanpaths) and its retrieval.

Prints one table: each measurement per seed and its median over the seeds, with the chance
level; writes every number to ``--json`` (default ``bench/results/saccade_synth.json``). The
work (corpus, runs, ``log.txt`` with every command's stderr) stays in ``--out`` (default: a
temporary folder, removed); a corpus already there is reused, runs are redone.
``--quick`` is a smoke run (1 seed, 3 epochs, 2 probe epochs): it checks that every step runs
and measures nothing. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLASSES = 8
CORPUS = [
    "--actions", "--flip-invariant", "--textures", "1", "--speed", "3", "--frames", "16,22",
    "--size", "340x256", "--classes", str(CLASSES), "--videos-per-class", "12", "--seed", "0",
    "--scanpaths",
]  # fmt: skip
ENCODER, SIZE, CLIP_LEN = "small", 32, 8
PRETRAIN_SETS = [
    f"image_size={SIZE}", f"model.clip_len={CLIP_LEN}", "schedule=constant", "pretext.nce_k=64",
    "pretext.num_clusters=8,8", "pretext.cluster_every=4",
]  # fmt: skip


def scenecut(*args: str, log: Path | None = None) -> str:
    """Run ``python -m scenecut ARGS``; its stdout. stderr goes to ``log`` (or is dropped)."""
    command = [sys.executable, "-m", "scenecut", *args]
    with open(log or os.devnull, "a") as err:
        proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
    if proc.returncode:
        where = f"; see {log}" if log else ""
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}{where}")
    return proc.stdout


def random_model(path: Path, seed: int) -> None:
    """The pre-training's network before its first step: ``train pretrain`` seeds torch with
    its seed and builds the network first."""
    import torch

    from scenecut.models.saccade import ClipConfig, build, save_model

    config = ClipConfig.for_backbone(ENCODER, size=SIZE, clip_len=CLIP_LEN)
    torch.manual_seed(seed)
    save_model(build(config), config, path)


def pretrain(corpus: Path, run: Path, seed: int, epochs: int, workers: int, log: Path,
             extra: list[str] = ()) -> tuple[Path, float, dict]:  # fmt: skip
    """Pre-train; the model, the seconds it took and the first and last fifth's mean losses."""
    sets = [*PRETRAIN_SETS, f"pretext.cluster_from={max(1, epochs * 4 // 5)}", *extra]
    start = time.perf_counter()
    scenecut(
        "train", "pretrain", "--method", "saccade", "--encoder", ENCODER, "--data", str(corpus),
        "--out", str(run), "--epochs", str(epochs), "--batch-size", "8", "--lr", "0.1",
        "--workers", str(workers), "--overwrite", "-q",
        *[a for s in [*sets, f"seed={seed}"] for a in ("--set", s)], log=log,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    return run / "model.safetensors", seconds, loss_trend(run / "metrics.jsonl")


def loss_trend(metrics: Path) -> dict[str, list[float]]:
    """Each loss's mean over the first and the last fifth of the steps that logged it."""
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    trend = {}
    for name in ("nce_loss", "ppm_loss", "proto_loss"):
        values = [r[name] for r in records if name in r]
        if values:
            n = max(1, len(values) // 5)
            trend[name] = [round(statistics.fmean(values[:n]), 3),
                           round(statistics.fmean(values[-n:]), 3)]  # fmt: skip
    return trend


def retrieval(corpus: Path, model: Path, protocol: str, log: Path) -> dict[str, float]:
    out = scenecut("eval", "retrieval", "--data", str(corpus), "--model", str(model),
                   "--protocol", protocol, "-q", log=log)  # fmt: skip
    return json.loads(out)["top_k"]


def probe(corpus: Path, model: Path, run: Path, head: str, epochs: int, seed: int, workers: int,
          log: Path) -> float:  # fmt: skip
    scenecut(
        "train", "probe", "--data", str(corpus), "--model", str(model), "--out", str(run),
        "--head", head, "--protocol", "clean", "--epochs", str(epochs), "--batch-size", "8",
        "--workers", str(workers), "--overwrite", "-q", "--set", f"seed={seed}",
        "--set", "schedule=cosine", log=log,
    )  # fmt: skip
    return json.loads((run / "test.json").read_text())["top1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated pre-training seeds")
    parser.add_argument("--epochs", type=int, default=100, help="pre-training epochs")
    parser.add_argument("--probe-epochs", type=int, default=40)
    parser.add_argument("--workers", type=int, default=1, help="loader processes per step")
    parser.add_argument("--no-ablation", action="store_true", help="skip random fixations")
    parser.add_argument("--quick", action="store_true", help="smoke run: measures nothing")
    parser.add_argument("--out", type=Path, help="work folder [default: a temporary one]")
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/saccade_synth.json")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        seeds, args.epochs, args.probe_epochs = seeds[:1], 3, 2
    with tempfile.TemporaryDirectory(prefix="saccade-synth-") as temp:
        out = args.out or Path(temp)
        out.mkdir(parents=True, exist_ok=True)
        results = run(out, seeds, args)
    report(results, args.json)


def run(out: Path, seeds: list[int], args) -> dict:
    log = out / "log.txt"
    corpus = out / "corpus"
    start = time.perf_counter()
    scenecut("data", "synth", "-o", str(corpus), *CORPUS, "-q", log=log)
    results: dict = {"corpus_seconds": round(time.perf_counter() - start, 1), "seeds": {}}
    for seed in seeds:
        print(f"seed {seed}: pre-training ...", file=sys.stderr, flush=True)
        row: dict = {}
        model, seconds, trend = pretrain(corpus, out / f"pre-{seed}", seed, args.epochs,
                                         args.workers, log)  # fmt: skip
        row["pretrain_seconds"], row["losses"] = round(seconds, 1), trend
        initial = out / f"random-{seed}.safetensors"
        random_model(initial, seed)
        for name, path in (("random", initial), ("pretrained", model)):
            for protocol in ("clean", "reference"):
                row[f"retrieval_{protocol}_{name}"] = retrieval(corpus, path, protocol, log)
            for head in ("linear", "full"):
                run_dir = out / f"{head}-{name}-{seed}"
                row[f"{head}_{name}"] = probe(corpus, path, run_dir, head, args.probe_epochs,
                                              seed, args.workers, log)  # fmt: skip
        if not args.no_ablation:
            print(f"seed {seed}: random fixations ...", file=sys.stderr, flush=True)
            ablated, seconds, trend = pretrain(
                corpus, out / f"pre-randfix-{seed}", seed, args.epochs, args.workers, log,
                ["pretext.fixations=random"],
            )  # fmt: skip
            row["retrieval_clean_random_fixations"] = retrieval(corpus, ablated, "clean", log)
        results["seeds"][seed] = row
    return results


ROWS = (
    ("retrieval top-1, clean: random init", "retrieval_clean_random", "1"),
    ("retrieval top-1, clean: pre-trained", "retrieval_clean_pretrained", "1"),
    ("retrieval top-1, clean: pre-trained, random fixations", "retrieval_clean_random_fixations",
     "1"),
    ("retrieval top-5, clean: random init", "retrieval_clean_random", "5"),
    ("retrieval top-5, clean: pre-trained", "retrieval_clean_pretrained", "5"),
    ("retrieval top-1, reference: random init", "retrieval_reference_random", "1"),
    ("retrieval top-1, reference: pre-trained", "retrieval_reference_pretrained", "1"),
    ("linear probe top-1: random init", "linear_random", None),
    ("linear probe top-1: pre-trained", "linear_pretrained", None),
    ("fine-tune top-1: random init", "full_random", None),
    ("fine-tune top-1: pre-trained", "full_pretrained", None),
)  # fmt: skip


def report(results: dict, path: Path) -> None:
    seeds = list(results["seeds"])
    rows = []
    for label, key, k in ROWS:
        values = []
        for seed in seeds:
            value = results["seeds"][seed].get(key)
            values.append(value if value is None or k is None else value[k])
        if all(v is None for v in values):
            continue
        median = statistics.median(v for v in values if v is not None)
        rows.append({"measurement": label, "per_seed": values, "median": median})
    chance = 100 / CLASSES
    width = max(len(r["measurement"]) for r in rows)
    print(f"{'measurement (%)':<{width}}  " + "  ".join(f"seed {s:>3}" for s in seeds) + "  median")
    for r in rows:
        cells = "  ".join(f"{v:8.1f}" if v is not None else f"{'-':>8}" for v in r["per_seed"])
        print(f"{r['measurement']:<{width}}  {cells}  {r['median']:6.1f}")
    print(f"chance: {chance:.1f}% ({CLASSES} classes); pre-training "
          + ", ".join(f"{results['seeds'][s]['pretrain_seconds']:.0f} s" for s in seeds)
          + " (seeds " + ",".join(map(str, seeds)) + ")")  # fmt: skip
    for s in seeds:
        trend = results["seeds"][s]["losses"]
        print(f"seed {s} losses, first -> last fifth: "
              + ", ".join(f"{k} {a:.2f} -> {b:.2f}" for k, (a, b) in trend.items()))  # fmt: skip
    doc = {
        "rows": rows, "chance": chance, "corpus": CORPUS, "encoder": ENCODER, "size": SIZE,
        "clip_len": CLIP_LEN, "pretrain_sets": PRETRAIN_SETS, **results,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"numbers: {path}")


if __name__ == "__main__":
    main()
