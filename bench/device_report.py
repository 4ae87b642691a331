"""The measuring steps of ``bench/device.sh`` and its one table.

    python bench/device_report.py embed --json OUT [--deadline UNIX_S]
    python bench/device_report.py segment --json OUT [--deadline UNIX_S]
    python bench/device_report.py scaling --json OUT [--deadline UNIX_S]
    python bench/device_report.py report --dir DIR [--out OUT_DIR]

``embed`` times the shot encoders through ``bench_embed.measure`` (the code path of ``segment``);
``segment`` times ``scenecut segment`` (the default model, and a random full-size BaSSL model)
against ``scenedetect detect-adaptive`` on bench_segment's generated films with bench_segment's
own timer; ``scaling`` times ``segment`` with 1, 4, 8 and 16 decode workers. With a CUDA GPU
they measure the issue's sizes (10-minute and 2-hour 720p films, 512 images per pass); without
one, smaller inputs, labelled ``cpu-rehearsal`` in every row. A step stops starting runs that
would not end before ``--deadline``, and records each one it skipped with its reason. ``report``
reads the step records (``steps.jsonl``) and the steps' JSON in ``--dir``, prints one table, and
writes ``device.json`` and ``device.txt`` there and, with ``--out``, copies of them there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

FILM_MINUTES = 10  # the film; the 2-hour one is it repeated, stream-copied
LONG_REPEATS = 12
CPU_FILM_SECONDS = 60  # without CUDA: a 1-minute film, and 3 of it for the "long" one
CPU_REPEATS = 3
WORKERS = (1, 4, 8, 16)
CPU_WORKERS = (1, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    for name in ("films", "embed", "segment", "scaling"):
        p = sub.add_parser(name)
        p.add_argument("--json", type=Path, required=True)
        p.add_argument("--deadline", type=float, default=time.time() + 3600)
    p = sub.add_parser("report")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.step == "report":
        return report(args.dir, args.out)
    steps = {"films": make_films, "embed": embed, "segment": segment_films, "scaling": scaling}
    step = steps[args.step]
    doc = {"cuda": cuda_name(), "rows": [], "skipped": []}
    doc["mode"] = "gpu" if doc["cuda"] else "cpu-rehearsal"
    try:
        step(doc, args.deadline, args.json)
    finally:
        write(args.json, doc)
    return 0


def cuda_name() -> str | None:
    """The GPU's name, asked in a child: torch loaded here (500 MB with its CUDA libraries)
    would be counted in the peak memory of every command this process starts (Linux reports
    the parent's pages for a child between its fork and its exec)."""
    code = "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return proc.stdout.strip() or None


def write(path: Path, doc: dict) -> None:
    """Atomically: a step killed by its timeout leaves its last complete state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Embedding throughput


def embed(doc: dict, deadline: float, out: Path) -> None:
    import torch
    from bench_embed import measure

    from scenecut.models.bassl import ShotEncoder
    from scenecut.models.effnet import load_lite0

    gpu = doc["cuda"] is not None
    device = torch.device("cuda" if gpu else "cpu")
    # Without CUDA: 16 images, one batch of 16, fp32 and bf16 only (fp16 autocast on a CPU
    # measures nothing the GPU run needs), nothing compiled (10-25 s each here).
    images_n, runs = (512, 3) if gpu else (16, 1)
    doc.update(images=images_n, runs=runs, device=str(device))
    configs = []  # (precision, channels_last, batch, compiled)
    if gpu:
        configs += [("fp32", False, 64, False), ("fp32", True, 256, False)]
        configs += [("fp16", True, b, False) for b in (64, 128, 256)]
        configs += [("bf16", True, b, False) for b in (64, 256)]
        configs += [("fp16", True, 256, True)]
    else:
        configs += [("fp32", False, 16, False), ("fp32", True, 16, False)]
        configs += [("bf16", True, 16, False)]
    torch.manual_seed(0)
    images = torch.randn(images_n, 3, 224, 224, device=device)
    nets = {"resnet50": ShotEncoder().eval(), "effnet-lite0": load_lite0()}
    # compiled rows last: each costs tens of seconds of compiling
    order = sorted(
        ((e, *c) for e in nets for c in configs), key=lambda row: (row[4], list(nets).index(row[0]))
    )
    for encoder, precision, channels_last, batch, compiled in order:
        name = f"{encoder} {precision}{' cl' * channels_last} b{batch}{' compiled' * compiled}"
        left = deadline - time.time()
        if left < (40 if compiled else 10):
            doc["skipped"].append({"config": name, "why": f"budget: {left:.0f} s left"})
            continue
        say(f"embed: {name}")
        row = {"config": name, "encoder": encoder, "precision": precision, "batch": batch}
        row.update(channels_last=channels_last, compiled=compiled, mode=doc["mode"])
        try:
            rates, warm = measure(
                nets[encoder], images, precision, channels_last, batch, compiled, runs
            )
            row.update(images_per_s=round(statistics.median(rates), 1), warmup_s=round(warm, 2))
        except Exception as error:  # one failed configuration: reported, the others go on
            row["error"] = f"{type(error).__name__}: {error}"[:300]
        doc["rows"].append(row)
        write(out, doc)
    if gpu:
        doc["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)


# --------------------------------------------------------------------------------------------
# segment against scenedetect on the generated films


def films(doc: dict) -> tuple[Path, Path, dict]:
    """The film (10 minutes; 1 without CUDA) and the long one (x12; x3), made or cached."""
    from bench_segment import long_film, repeated_film

    gpu = doc["cuda"] is not None
    start = time.perf_counter()
    film, truth, info = long_film(None if gpu else CPU_FILM_SECONDS)
    info["made_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    long = repeated_film(film, LONG_REPEATS if gpu else CPU_REPEATS)
    info["long"] = {"path": str(long), "repeats": LONG_REPEATS if gpu else CPU_REPEATS}
    info["long"]["made_s"] = round(time.perf_counter() - start, 1)
    info["truth"] = truth
    return film, long, info


def make_films(doc: dict, deadline: float, out: Path) -> None:
    """Make (or find cached) the films ahead of ``segment``, while the GPU steps run."""
    _, _, doc["films"] = films(doc)
    random_bassl(ROOT / "bench" / "results" / "device")


def random_bassl(folder: Path) -> Path:
    """A full-size BaSSL (the default ``ModelConfig``: ResNet-50 + CRN) with random weights."""
    import torch

    from scenecut.models import bassl, checkpoints
    from scenecut.models.config import ModelConfig

    path = folder / "bassl-random.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        checkpoints.save(bassl.build(ModelConfig()), ModelConfig(), path)
    return path


def timed(command: list[str], seconds: float, output: Path, scenecut: bool) -> dict:
    """One run of ``command`` with bench_segment's timer (wall time, peak RSS, counts)."""
    from bench_segment import Runs, read_scenecut, read_scenedetect, timed_run

    runs = Runs(command)
    shutil.rmtree(output.parent, ignore_errors=True)
    timed_run(runs, seconds)
    if scenecut:
        read_scenecut(runs, output)
    else:
        read_scenedetect(runs, output)
    row = {"seconds": runs.median, "peak_rss_mb": runs.median_rss, "shots": runs.shots}
    row.update(scenes=runs.scenes, error=runs.error)
    if runs.error is None and runs.median is None:
        row["error"] = f"no result within {seconds:.0f} s"
    return row


def segment_films(doc: dict, deadline: float, out: Path) -> None:
    bin_dir = Path(sys.executable).parent
    scenecut, scenedetect = str(bin_dir / "scenecut"), str(bin_dir / "scenedetect")
    work = Path(tempfile.mkdtemp(prefix="scenecut-device-"))
    try:
        film, long, info = films(doc)
        doc["films"] = info
        write(out, doc)
        model = ROOT / "bench" / "results" / "device" / "bassl-random.safetensors"
        if not model.exists():  # in a child: with torch loaded here, each timed run's peak
            # memory would count this process's pages (the fork before the exec)
            code = "import sys; from device_report import *; random_bassl(Path(sys.argv[1]).parent)"
            env = {**os.environ, "PYTHONPATH": str(ROOT / "bench")}
            subprocess.run([sys.executable, "-c", code, str(model)], check=True, env=env)
        out_args = ["-o", "{out}", "--overwrite"]
        tools = {
            "scenecut default": [scenecut, "segment", "{film}", *out_args],
            "scenecut bassl-random": [
                scenecut,
                "segment",
                "{film}",
                "--model",
                str(model),
                *out_args,
            ],
            "scenedetect detect-adaptive": [
                *(scenedetect, "-i", "{film}", "-q", "-o", "{out}"),
                *("detect-adaptive", "list-scenes", "--skip-cuts"),
            ],
        }
        short = {}
        # on the long film the target (ResNet-50 + CRN end to end) first
        long_order = ["scenecut bassl-random", "scenecut default", "scenedetect detect-adaptive"]
        for label, path in (("film", film), ("long", long)):
            for tool in tools if label == "film" else long_order:
                template = tools[tool]
                name = f"{path.name}: {tool}"
                left = deadline - time.time()
                # the long film is 12 (or 3) of the short one: its run takes about that many times
                guess = None
                if label == "long" and short.get(tool):
                    guess = short[tool] * doc["films"]["long"]["repeats"]
                if left < 15 or (guess is not None and guess * 1.1 > left):
                    why = f"budget: {left:.0f} s left"
                    if guess:
                        repeats = doc["films"]["long"]["repeats"]
                        why += f", this run estimated {guess:.0f} s ({repeats}x the short film)"
                    doc["skipped"].append({"run": name, "why": why, "estimate_s": guess})
                    say(f"segment: skipped {name}: {why}")
                    continue
                say(f"segment: {name}")
                folder = work / tool.replace(" ", "_") / "out"
                command = [
                    c.format(film=path, out=folder) if c in ("{film}", "{out}") else c
                    for c in template
                ]
                scenecut_run = tool.startswith("scenecut")
                result = folder / (
                    f"{path.stem}.scenes.json" if scenecut_run else f"{path.stem}-Scenes.csv"
                )
                row = {"input": path.name, "film": label, "tool": tool, "mode": doc["mode"]}
                row.update(timed(command, max(1.0, left - 5), result, scenecut_run))
                if label == "film":
                    short[tool] = row["seconds"]
                doc["rows"].append(row)
                write(out, doc)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Decode-worker scaling (issue 20 point 1)


def segment_help(scenecut: str) -> str:
    try:
        return subprocess.run(
            [scenecut, "segment", "--help"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def workers_option(scenecut: str) -> str | None:
    """The option of ``segment`` that sets the decode workers, if this scenecut has one."""
    text = segment_help(scenecut)
    return next((o for o in ("--decode-workers", "--workers") if o in text), None)


def shot_starts(result: Path) -> list[int] | None:
    try:
        return [shot["start_frame"] for shot in json.loads(result.read_text())["shots"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def scaling(doc: dict, deadline: float, out: Path) -> None:
    scenecut = str(Path(sys.executable).parent / "scenecut")
    option = workers_option(scenecut) if (ROOT / "scenecut" / "parallel.py").exists() else None
    if option is None:
        doc["note"] = "no parallel decode in this scenecut (scenecut/parallel.py or its option)"
        return
    gpu = doc["cuda"] is not None
    from bench_segment import long_film

    film, _, _ = long_film(None if gpu else CPU_FILM_SECONDS)
    doc.update(film=str(film), option=option, model="classic")
    counts = WORKERS if gpu else CPU_WORKERS
    runs: list[tuple[int, str | None]] = [(w, None) for w in counts]
    # NVDEC (issue 20 point 2) where this scenecut offers it: 1 worker and all, its shots
    # compared with software decoding's (without CUDA: the fallback rehearsed)
    if "--hwaccel" in segment_help(scenecut):
        runs += [(counts[0], "cuda"), (counts[-1], "cuda")]
    software: dict[int, list[int] | None] = {}
    work = Path(tempfile.mkdtemp(prefix="scenecut-scaling-"))
    try:
        for workers, hwaccel in runs:
            left = deadline - time.time()
            if left < 15:
                doc["skipped"].append({"workers": workers, "hwaccel": hwaccel,
                                       "why": f"budget: {left:.0f} s left"})  # fmt: skip
                continue
            say(f"scaling: {workers} worker(s)" + (f", --hwaccel {hwaccel}" if hwaccel else ""))
            folder = work / f"{workers}{hwaccel or ''}" / "out"
            command = [scenecut, "segment", str(film), "--model", "classic", option, str(workers)]
            command += ["-o", str(folder), "--overwrite"]
            command += ["--hwaccel", hwaccel] if hwaccel else []
            row = {"input": film.name, "workers": workers, "mode": doc["mode"]}
            result = folder / f"{film.stem}.scenes.json"
            row.update(timed(command, left - 5, result, True))
            starts = shot_starts(result)
            if hwaccel is None:
                software[workers] = starts
            else:
                row["hwaccel"] = hwaccel
                row["same_shots_as_software"] = starts is not None and starts == software.get(
                    workers
                )
            doc["rows"].append(row)
            write(out, doc)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The one table


def report(folder: Path, out: Path | None) -> int:
    steps = []
    if (folder / "steps.jsonl").exists():
        for line in (folder / "steps.jsonl").read_text().splitlines():
            try:
                steps.append(json.loads(line))
            except ValueError:
                continue
    parts = {}
    for name in ("films", "embed", "segment", "scaling"):
        path = folder / f"{name}.json"
        try:
            parts[name] = json.loads(path.read_text())
        except (OSError, ValueError):
            parts[name] = None
    lines = table(steps, parts)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    doc = {"steps": steps, **parts, "machine": machine()}
    (folder / "device.txt").write_text(text)
    write(folder / "device.json", doc)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name in ("device.txt", "device.json"):
            shutil.copyfile(folder / name, out / name)
    return 0


def machine() -> dict:
    from bench_segment import machine as describe

    return describe()


def table(steps: list[dict], parts: dict) -> list[str]:
    rows = [["section", "what", "result", "seconds", "note"]]
    for s in steps:
        rows.append(["step", s["step"], s["status"], fmt(s.get("seconds")), s.get("note", "")])
    embed = parts.get("embed") or {}
    mode = embed.get("mode", "")
    for r in embed.get("rows", []):
        result = f"{r['images_per_s']:.0f} img/s" if "images_per_s" in r else "error"
        note = r.get("error") or f"warm-up {r.get('warmup_s', 0):.1f} s; {mode}"
        rows.append(["embed", r["config"], result, fmt(r.get("warmup_s")), note])
    for s in embed.get("skipped", []):
        rows.append(["embed", s["config"], "skipped", "-", s["why"]])
    seg = parts.get("segment") or {}
    for r in seg.get("rows", []):
        result = "error" if r.get("seconds") is None else f"{r.get('shots')} shots"
        if r.get("scenes") is not None:
            result += f", {r['scenes']} scenes"
        note = r.get("error") or f"peak {fmt(r.get('peak_rss_mb'))} MB; {r['mode']}"
        rows.append(["segment", f"{r['input']}: {r['tool']}", result, fmt(r["seconds"]), note])
    for s in seg.get("skipped", []):
        rows.append(["segment", s["run"], "skipped", fmt(s.get("estimate_s")), s["why"]])
    rows += ratios(seg)
    scale = parts.get("scaling") or {}
    if scale.get("note"):
        rows.append(["scaling", "-", "skipped", "-", scale["note"]])
    base = next(
        (r["seconds"] for r in scale.get("rows", []) if r["workers"] == 1 and not r.get("hwaccel")),
        None,
    )
    for r in scale.get("rows", []):
        speed = f"{base / r['seconds']:.2f}x vs 1" if base and r.get("seconds") else "error"
        note = r.get("error") or f"--model classic; {r['mode']}"
        what = f"{r['input']}: {r['workers']} workers"
        if r.get("hwaccel"):
            what += f", --hwaccel {r['hwaccel']}"
            same = "same shots" if r.get("same_shots_as_software") else "shots differ"
            note += f"; {same} as software decoding"
        rows.append(["scaling", what, speed, fmt(r["seconds"]), note])
    for s in scale.get("skipped", []):
        rows.append(["scaling", f"{s['workers']} workers", "skipped", "-", s["why"]])
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return lines


def ratios(seg: dict) -> list[list[str]]:
    """scenecut / scenedetect wall time per input, where both ran."""
    out = []
    by_input: dict[str, dict[str, float]] = {}
    for r in seg.get("rows", []):
        if r.get("seconds"):
            by_input.setdefault(r["input"], {})[r["tool"]] = r["seconds"]
    for name, tools in by_input.items():
        sd = tools.get("scenedetect detect-adaptive")
        for tool in ("scenecut default", "scenecut bassl-random"):
            if sd and tools.get(tool):
                ratio = f"{tools[tool] / sd:.2f}x"
                out.append(
                    ["ratio", f"{name}: {tool} / scenedetect", ratio, "-", "target <= 0.25x"]
                )
    return out


def fmt(x) -> str:
    return "-" if x is None else f"{x:.1f}"


if __name__ == "__main__":
    sys.exit(main())
