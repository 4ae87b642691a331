"""`make bench`: every benchmark in one run, one table of targets, one JSON file.

    python bench/run.py [--quick | --smoke] [--runs 3] [--film-seconds S] [--results DIR]

Runs bench_segment (scenecut against PySceneDetect on the generated 10-minute 720p film, the
demo clip and ../shared/media, plus the 2-hour film for memory), bench_embed, bench_export and
bench_loader as separate processes, times ``scenecut --help`` against a bare Python start-up,
and profiles ``scenecut segment --profile`` on the 10-minute film (classic and EfficientNet).
Prints one table (measurement, value, the reference measured in the same run, ratio, target,
met) and writes every raw number and the machine to bench/results/bench.json. ``--quick``: one
run each and no 2-hour film (minutes instead of a quarter of an hour). ``--results DIR``: write
the JSON files there instead of bench/results/ (the generated films stay cached there).
``--film-seconds S``: an S-second film, made the same way, instead of the 10-minute one, for the
segment, export and profile benches. ``--smoke``: a check that everything runs and lands in the
table, not a measurement (seconds, for the test suite): ``--quick`` with a 10-second film (or
``--film-seconds``) and nothing else in bench_segment, 4 images in bench_embed (compiled
configurations included), a small tree and 8 windows in bench_loader, one start-up run. See
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

from bench_segment import LONG_FILM, long_film, machine  # noqa: E402

PY = sys.executable
SCENECUT = str(Path(PY).parent / "scenecut")
SMOKE_SECONDS = 10.0  # the film of --smoke, unless --film-seconds says otherwise


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
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="check that every bench runs, measure nothing: --quick on a 10-second film, "
        "nothing else, few images and loader windows",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--film-seconds",
        type=float,
        help="an S-second film instead of the 10-minute one [--smoke: 10]",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON files go")
    args = parser.parse_args()
    seconds = args.film_seconds
    if args.smoke and seconds is None:
        seconds = SMOKE_SECONDS
    if seconds is not None and seconds <= 0:
        parser.error("--film-seconds must be positive")
    short = args.quick or args.smoke
    runs = 1 if short else args.runs
    results = args.results
    results.mkdir(parents=True, exist_ok=True)
    segment = ["--runs", str(runs), *(["--hours", "0"] if short else [])]
    embed = ["--runs", str(runs)]
    export = ["--runs", str(runs)]
    loader = ["--runs", str(runs)]
    if args.smoke:
        segment.append("--film-only")
        embed += ["--images", "4", "--batch", "2"]
        loader += ["--items", "8", "--films", "1", "--shots", "17"]
    film, counts, _ = long_film(seconds)
    if seconds is not None:
        segment += ["--film-seconds", str(seconds)]
        export += ["--video", str(film)]
    raw = {
        "machine": machine(),
        "settings": {"runs": runs, "quick": args.quick, "smoke": args.smoke},
        "film": {"path": str(film), "seconds": seconds or 60 * LONG_FILM["minutes"], **counts},
        "segment": run_bench(results, "bench_segment.py", *segment),
        "embed": run_bench(results, "bench_embed.py", *embed),
        "export": run_bench(results, "bench_export.py", *export),
        "loader": run_bench(results, "bench_loader.py", *loader),
        "startup": startup(1 if args.smoke else max(runs, 5)),
        "profile": [profile(results, film, m) for m in ("classic", "effnet-lite0")],
    }
    label = "10-min" if seconds is None else f"{seconds:g}-s"
    rows = target_rows(raw, film, label)
    raw["rows"] = rows
    print(render(rows, raw))
    if args.smoke:
        print("--smoke: every bench ran on little input; these numbers are not measurements")
    for p in raw["profile"]:
        print(f"\nscenecut segment --profile --model {p['model']} {film.name}:\n{p['table']}")
    out = results / "bench.json"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(raw, indent=1) + "\n")
    os.replace(tmp, out)
    say(f"wrote {out}")
    return 0


def target_rows(raw: dict, film: Path, label: str = "10-min") -> list[dict]:
    """One row per measurement: value, same-run reference, ratio, target, met. ``label``: the
    film's length as the row names say it."""
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
            f"1. segment, {label} 720p film (s)",
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
        f"2. embedding overlapped with decoding (effnet, {label})",
        round(busy - wait, 2),
        "s hidden",
        busy,
        "embed busy s",
        "overlap",
        busy > 0 and wait < 0.5 * busy,
    )
    if ten:
        peak = ten["scenecut"]["median_peak_rss_mb"]
        row(f"3. peak RSS, {label} film", peak, "MB", None, "", "< 2048 MB", peak < 2048)
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
                f"{label} film's peak",
                "<= 1.10x",
                long_peak is not None and long_peak <= 1.10 * peak,
            )
            row(
                f"3. segment, {minutes:.0f}-min film (s)",
                h["scenecut"]["median_s"],
                "s",
                ten["scenecut"]["median_s"],
                f"{label} film",
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
