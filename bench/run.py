"""`make bench`: every benchmark in one run, one table of targets, one JSON file.

    python bench/run.py [--quick] [--runs 3]

Runs bench_segment (scenecut against PySceneDetect on the generated 10-minute 720p film, the
demo clip and ../shared/media, plus the 2-hour film for memory), bench_embed, bench_export and
bench_loader as separate processes, times ``scenecut --help`` against a bare Python start-up,
and profiles ``scenecut segment --profile`` on the 10-minute film (classic and EfficientNet).
Prints one table (measurement, value, the reference measured in the same run, ratio, target,
met) and writes every raw number and the machine to bench/results/bench.json. ``--quick``: one
run each and no 2-hour film (minutes instead of a quarter of an hour). ``--results DIR``: write
the JSON files there instead of bench/results/ (the generated films stay cached there). See
bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH))

from bench_segment import long_film, machine  # noqa: E402

PY = sys.executable
SCENECUT = str(Path(PY).parent / "scenecut")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_bench(results: Path, script: str, *args: str) -> dict:
    out = results / f"{Path(script).stem.removeprefix('bench_')}.json"
    say(f"== {script} {' '.join(args)}")
    start = time.perf_counter()
    subprocess.run([PY, str(BENCH / script), *args, "--json", str(out)], check=True)
    say(f"== {script}: {time.perf_counter() - start:.0f} s")
    return json.loads(out.read_text())


def startup(runs: int) -> dict:
    """Wall seconds of ``scenecut --help`` and of a bare ``python -c pass``, ``runs`` times."""

    def timed(command: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        return time.perf_counter() - start

    timed([SCENECUT, "--help"])  # page cache
    help_s = [round(timed([SCENECUT, "--help"]), 3) for _ in range(runs)]
    python_s = [round(timed([PY, "-c", "pass"]), 3) for _ in range(runs)]
    return {"help_s": help_s, "python_s": python_s}


def profile(results: Path, film: Path, model: str) -> dict:
    """``scenecut segment --profile`` on ``film``; the stage table as printed."""
    out = results / "profile-out"
    command = [SCENECUT, "segment", str(film), "-o", str(out), "--overwrite", "--quiet"]
    proc = subprocess.run(
        [*command, "--profile", "--model", model], capture_output=True, text=True, check=True
    )
    table = proc.stderr[proc.stderr.index("stage ") :].strip()
    wall = float(table.rsplit("\nwall ", 1)[1].split(" s")[0])
    stages = {}
    for line in table.splitlines()[1:-1]:
        name, rest = line[:11].strip(), line[11:].split()
        stages[name] = float(rest[1])
    return {"model": model, "table": table, "wall_s": wall, "busy_s": stages}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run each, no 2-hour film")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON files go")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    results = args.results
    results.mkdir(parents=True, exist_ok=True)
    film, _, _ = long_film()
    hours = ["--hours", "0"] if args.quick else []
    raw = {
        "machine": machine(),
        "segment": run_bench(results, "bench_segment.py", "--runs", str(runs), *hours),
        "embed": run_bench(results, "bench_embed.py", "--runs", str(runs)),
        "export": run_bench(results, "bench_export.py", "--runs", str(runs)),
        "loader": run_bench(results, "bench_loader.py", "--runs", str(runs)),
        "startup": startup(max(runs, 5)),
        "profile": [profile(results, film, m) for m in ("classic", "effnet-lite0")],
    }
    rows = target_rows(raw, film)
    raw["rows"] = rows
    print(render(rows, raw))
    for p in raw["profile"]:
        print(f"\nscenecut segment --profile --model {p['model']} {film.name}:\n{p['table']}")
    out = results / "bench.json"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(raw, indent=1) + "\n")
    os.replace(tmp, out)
    say(f"wrote {out}")
    return 0


def target_rows(raw: dict, film: Path) -> list[dict]:
    """One row per measurement: value, same-run reference, ratio, target, met."""
    rows: list[dict] = []

    def row(what, value, unit, reference=None, ref_what="", target=None, met=None, ratio=None):
        if ratio is None and reference:
            ratio = value / reference if value is not None else None
        rows.append(
            {
                "measurement": what,
                "value": value,
                "unit": unit,
                "reference": reference,
                "reference_is": ref_what,
                "ratio": ratio,
                "target": target,
                "met": met,
            }
        )

    inputs = {i["name"]: i for i in raw["segment"]["inputs"]}
    ten = inputs.get(film.name)
    if ten:
        sc, sd = ten["scenecut"], ten["scenedetect"]
        ratio = ten["ratio"]
        row(
            "1. segment, 10-min 720p film (s)",
            sc["median_s"],
            "s",
            sd["median_s"],
            "scenedetect detect-adaptive",
            "<= 1.3x",
            ratio is not None and ratio <= 1.3,
        )
        row(
            "1. frames decoded / in file",
            sc["decoded_frames"],
            "frames",
            sc["frame_count"],
            "frame count",
            "= 1.0x (one pass)",
            sc["decoded_frames"] == sc["frame_count"],
        )
    embed = raw["embed"]
    ref = embed["reference"]["median"]
    for encoder, target in (("resnet50", 70.0), ("effnet-lite0", 150.0)):
        best = embed["best"].get(encoder)
        value = best["median"] if best else None
        row(
            f"2. {encoder} images/s ({best['config'].split(' ', 1)[1] if best else '-'})",
            value,
            "img/s",
            ref,
            embed["reference"]["config"],
            f">= {target:.0f}",
            value is not None and value >= target,
        )
    effnet = next(p for p in raw["profile"] if p["model"] == "effnet-lite0")
    wait = effnet["busy_s"].get("embed wait", 0.0)
    busy = effnet["busy_s"].get("embed", 0.0)
    row(
        "2. embedding overlapped with decoding (effnet, 10-min)",
        round(busy - wait, 2),
        "s hidden",
        busy,
        "embed busy s",
        "overlap",
        busy > 0 and wait < 0.5 * busy,
    )
    if ten:
        peak = ten["scenecut"]["median_peak_rss_mb"]
        row("3. peak RSS, 10-min film", peak, "MB", None, "", "< 2048 MB", peak < 2048)
        hours = [i for n, i in inputs.items() if n.startswith(film.stem + "_x")]
        if hours:
            h = hours[0]
            long_peak = h["scenecut"]["median_peak_rss_mb"]
            minutes = (h.get("scenecut", {}).get("duration_s") or 0) / 60
            row(
                f"3. peak RSS, {minutes:.0f}-min film",
                long_peak,
                "MB",
                peak,
                "10-min film's peak",
                "<= 1.10x",
                long_peak is not None and long_peak <= 1.10 * peak,
            )
            row(
                f"3. segment, {minutes:.0f}-min film (s)",
                h["scenecut"]["median_s"],
                "s",
                ten["scenecut"]["median_s"],
                "10-min film",
                "linear in length",
                None,
            )
    export = raw["export"]
    copy = export["copy"]
    row(
        "4. --copy clip export",
        copy["realtime_x"],
        "x real time",
        None,
        "",
        ">= 50x",
        copy["realtime_x"] >= 50,
    )
    enc = export["reencode"]
    row(
        f"4. re-encode: cores busy ({export['cpus']} CPUs)",
        round(100 * enc["core_use"]),
        "%",
        None,
        "",
        "all cores",
        enc["core_use"] >= 0.75,
    )
    loader = raw["loader"]
    for workers in (1, 2):
        entry = loader.get(f"workers_{workers}")
        if entry:
            per = entry["median_per_worker_per_s"]
            row(
                f"5. pre-training loader, {workers} worker(s)",
                round(per),
                "keyframes/s/worker",
                None,
                "",
                ">= 250",
                per >= 250,
            )
    st = raw["startup"]
    help_s = statistics.median(st["help_s"])
    row(
        "6. scenecut --help",
        round(help_s, 3),
        "s",
        round(statistics.median(st["python_s"]), 3),
        "python -c pass",
        "< 0.5 s",
        help_s < 0.5,
    )
    return rows


def render(rows: list[dict], raw: dict) -> str:
    def fmt(x) -> str:
        if x is None:
            return "-"
        if isinstance(x, float):
            return f"{x:.2f}" if abs(x) < 100 else f"{x:.0f}"
        return str(x)

    header = ["measurement", "value", "unit", "reference", "reference is", "ratio", "target"]
    header.append("met")
    table = [header]
    for r in rows:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        table.append(
            [
                r["measurement"],
                fmt(r["value"]),
                r["unit"],
                fmt(r["reference"]),
                r["reference_is"],
                ratio,
                r["target"] or "-",
                met,
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    m = raw["machine"]
    lines.append(
        f"machine: {m['processor']}, {m['cpu_count']} CPUs, {m['platform']}, Python "
        f"{m['python']}, torch {m.get('torch')} ({m.get('torch_threads')} threads), "
        f"CUDA: {m.get('cuda') or 'none'}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
