"""Benchmark `scenecut segment` against PySceneDetect's `scenedetect detect-adaptive`.

    python bench/bench_segment.py [--quick] [--runs 3] [--hours 2] [--film-seconds S] [--film-only]
                                  [--json OUT]

Both commands run on each input in the same invocation, alternating, ``--runs`` times each. The
table on stdout shows median wall times and their ratio, scenecut's peak memory, its decoded
frames against the video's frame count, and shot and scene counts; raw numbers and a machine
description go to ``bench/results/segment.json``. A ``--hours``-long film (the 10-minute film
repeated, stream-copied) is segmented by scenecut alone, to show that memory does not grow with
length. ``--film-seconds S`` benchmarks an S-second film instead of the 10-minute one (made the
same way) and ``--film-only`` skips the demo clip and ../shared/media: a quick check that the
benchmark runs, not a measurement. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CACHE = RESULTS / "cache"
DEMO = ROOT / "assets" / "sintel_trailer_480x204.mp4"
SHARED_MEDIA = ROOT.parent / "shared" / "media"
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v"}
# With sound (the fused default decodes it in the same pass): an AAC track whose tone changes
# with the place.
LONG_FILM = {"minutes": 10.0, "width": 1280, "height": 720, "fps": 24, "seed": 0, "audio": True}


@dataclass
class Runs:
    """Wall times of one command on one input, and what its output said."""

    command: list[str]
    seconds: list[float] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)  # the process's maximum resident set
    error: str | None = None  # the first failure's message; failed runs record no time
    shots: int | None = None
    scenes: int | None = None
    decoded_frames: int | None = None
    frame_count: int | None = None
    duration_s: float | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def median_rss(self) -> float | None:
        return statistics.median(self.peak_rss_mb) if self.peak_rss_mb else None


@dataclass
class InputResult:
    name: str
    path: str
    bytes: int
    scenecut: Runs
    scenedetect: Runs | None  # None: scenecut alone (the hours-long film)
    truth: dict | None = None  # shot and scene counts of a synthetic film

    @property
    def ratio(self) -> float | None:
        if self.scenedetect is None:
            return None
        a, b = self.scenecut.median, self.scenedetect.median
        return a / b if a is not None and b else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run each; skip the long film")
    parser.add_argument("--runs", type=int, default=3, help="runs of each command per input")
    parser.add_argument("--json", type=Path, default=RESULTS / "segment.json", help="raw results")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per command run")
    parser.add_argument(
        "--hours", type=float, default=2.0, help="length of the memory film (0: skip it)"
    )
    parser.add_argument(
        "--film-seconds",
        type=float,
        help="benchmark a film this long instead of the 10-minute one (a smoke test)",
    )
    parser.add_argument(
        "--film-only", action="store_true", help="skip the demo clip and ../shared/media"
    )
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs

    scenecut = Path(sys.executable).parent / "scenecut"
    scenedetect = Path(sys.executable).parent / "scenedetect"
    inputs: list[tuple[Path, dict | None]] = [] if args.film_only else [(DEMO, None)]
    film_info: dict | None = None
    if not args.quick:
        film, truth, film_info = long_film(args.film_seconds)
        inputs.append((film, truth))
    if SHARED_MEDIA.is_dir() and not args.film_only:
        inputs += [(p, None) for p in sorted(SHARED_MEDIA.iterdir()) if is_video(p)]

    results: list[InputResult] = []
    seen: set[str] = set()
    for path, truth in inputs:
        digest = sha256(path)
        if digest in seen:  # the demo clip is also in the shared media
            continue
        seen.add(digest)
        say(f"{path.name}: {runs} run(s) of each command")
        results.append(bench_input(path, truth, scenecut, scenedetect, runs, args.timeout))
    if film_info is not None and args.hours > 0:
        repeats = max(1, round(args.hours * 60 / film_info["minutes"]))
        hours_film = repeated_film(film, repeats)
        film_info["repeated"] = {"path": str(hours_film), "repeats": repeats}
        say(f"{hours_film.name}: {runs} run(s) of scenecut")
        results.append(bench_input(hours_film, None, scenecut, None, runs, args.timeout))

    print(table(results, runs), flush=True)
    report = {
        "machine": machine(),
        "settings": {
            "runs": runs,
            "quick": args.quick,
            "timeout_s": args.timeout,
            "film_seconds": args.film_seconds,
            "film_only": args.film_only,
        },
        "long_film": film_info,
        "inputs": [as_json(r) for r in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_name(args.json.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, args.json)
    say(f"wrote {args.json}")
    return 0


def as_json(result: InputResult) -> dict:
    doc = asdict(result)
    doc["scenecut"]["median_s"] = result.scenecut.median
    doc["scenecut"]["median_peak_rss_mb"] = result.scenecut.median_rss
    if result.scenedetect is not None:
        doc["scenedetect"]["median_s"] = result.scenedetect.median
        doc["scenedetect"]["median_peak_rss_mb"] = result.scenedetect.median_rss
    doc["ratio"] = result.ratio
    return doc


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def long_film(seconds: float | None = None) -> tuple[Path, dict, dict]:
    """The cached benchmark film (made on first use), its truth counts and how it was made.

    ``seconds``: a film of that length made the same way, instead of the 10-minute one."""
    sys.path.insert(0, str(ROOT))
    from scenecut.data.synth import FilmTruth, long_film_spec, make_film, plan_film

    p = dict(LONG_FILM)
    size = f"{p['width']}x{p['height']}_{p['fps']}fps_seed{p['seed']}" + (
        "_av" if p["audio"] else ""
    )
    if seconds is None:
        name = f"long_{p['minutes']:g}min_{size}"
        spec = long_film_spec(**p)
    else:
        p["minutes"] = seconds / 60
        name = f"long_{seconds:g}s_{size}"
        frames = max(1, round(Fraction(str(seconds)) * p["fps"]))
        spec = long_film_spec(**p, total_frames=frames)
    path = CACHE / f"{name}.mp4"
    truth_file = path.with_suffix(".truth.json")
    expected = plan_film(spec, path)
    info: dict = {**p, "path": str(path), "cached": True, "generate_s": None}
    if seconds is not None:
        info["seconds"] = seconds
    cached = path.exists() and truth_file.exists()
    if cached and FilmTruth.from_json(truth_file.read_text()) == expected:
        say(f"using cached {path.relative_to(ROOT)}")
    else:
        takes = "; about a minute or two" if seconds is None else ""
        say(f"generating {path.relative_to(ROOT)} (once{takes})")
        CACHE.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        truth = make_film(path, spec)
        info.update(cached=False, generate_s=round(time.perf_counter() - start, 2))
        truth_file.write_text(truth.to_json())
    info["bytes"] = path.stat().st_size
    counts = {
        "frames": expected.frame_count,
        "shots": len(expected.shot_starts),
        "scenes": len(expected.scene_starts),
        "places": len(set(expected.place_of_scene)),
    }
    return path, counts, info


def repeated_film(film: Path, repeats: int) -> Path:
    """``film`` played ``repeats`` times in a row: stream-copied by ffmpeg's concat demuxer, so
    it takes seconds to make and has the same bitrate. Cached beside ``film``."""
    sys.path.insert(0, str(ROOT))
    from scenecut.video import ffmpeg_exe

    path = film.with_name(f"{film.stem}_x{repeats}{film.suffix}")
    if path.exists() and path.stat().st_mtime >= film.stat().st_mtime:
        return path
    listing = path.with_suffix(".txt")
    listing.write_text(f"file '{film.name}'\n" * repeats)
    part = path.with_name(f".{path.name}.part{path.suffix}")
    start = time.perf_counter()
    command = [ffmpeg_exe(), "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i"]
    subprocess.run([*command, str(listing), "-c", "copy", str(part)], check=True)
    os.replace(part, path)
    listing.unlink()
    say(f"made {path.name} ({repeats} x {film.name}) in {time.perf_counter() - start:.1f} s")
    return path


def bench_input(
    path: Path,
    truth: dict | None,
    scenecut: Path,
    scenedetect: Path | None,
    runs: int,
    timeout: float,
) -> InputResult:
    with tempfile.TemporaryDirectory(prefix="scenecut-bench-") as tmp:
        sc_out, sd_out = Path(tmp) / "scenecut", Path(tmp) / "scenedetect"
        sc = Runs(
            [str(scenecut), "segment", str(path), "-o", str(sc_out), "--overwrite", "--quiet"]
        )
        detect = ["detect-adaptive", "list-scenes", "--skip-cuts"]
        sd = None
        if scenedetect is not None:
            sd = Runs([str(scenedetect), "-i", str(path), "-q", "-o", str(sd_out), *detect])
        for i in range(runs):
            # Alternate which command goes first, so neither always meets a warm page cache.
            for runs_of in [r for r in ((sc, sd) if i % 2 == 0 else (sd, sc)) if r is not None]:
                shutil.rmtree(sc_out if runs_of is sc else sd_out, ignore_errors=True)
                timed_run(runs_of, timeout)
        read_scenecut(sc, sc_out / f"{path.stem}.scenes.json")
        if sd is not None:
            read_scenedetect(sd, sd_out / f"{path.stem}-Scenes.csv")
    return InputResult(path.name, str(path), path.stat().st_size, sc, sd, truth)


def timed_run(runs: Runs, timeout: float) -> None:
    """Run ``runs.command`` once; record its wall time and peak RSS (from ``wait4``)."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(runs.command, stdout=out, stderr=out)
        except OSError as exc:
            runs.error = runs.error or f"{type(exc).__name__}: {exc}"
            return
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            out.seek(0)
            lines = out.read().decode(errors="replace").strip().splitlines()
            runs.error = runs.error or f"exit {proc.returncode}: {lines[-1] if lines else ''}"
            return
    runs.seconds.append(round(elapsed, 3))
    runs.peak_rss_mb.append(round(usage.ru_maxrss / 1024, 1))  # Linux: kilobytes


def read_scenecut(runs: Runs, result: Path) -> None:
    if not runs.seconds:
        return
    try:
        doc = json.loads(result.read_text())
        runs.shots, runs.scenes = len(doc["shots"]), len(doc["scenes"])
        runs.decoded_frames, runs.frame_count = doc["decoded_frames"], doc["video"]["frame_count"]
        runs.duration_s = doc["video"]["duration_s"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        runs.error = runs.error or f"unreadable {result.name}: {exc}"


def read_scenedetect(runs: Runs, scene_list: Path) -> None:
    if not runs.seconds:
        return
    try:
        rows = scene_list.read_text().strip().splitlines()
    except OSError as exc:
        runs.error = runs.error or f"no scene list: {exc}"
        return
    runs.shots = max(0, len(rows) - 1)  # the header row; with no cut, no rows at all


def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    for module in ("scenedetect", "av", "numpy"):
        try:
            info[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            info[module] = None
    return info


def table(results: list[InputResult], runs: int) -> str:
    def num(x: float | int | None, fmt: str = "{}") -> str:
        return "-" if x is None else fmt.format(x)

    header = ["input", "scenecut s", "scenedetect s", "ratio", "peak MB", "decoded/frames"]
    header += ["shots (sd)", "scenes", "truth shots/scenes"]
    rows = [header]
    errors = []
    for r in results:
        sc, sd = r.scenecut, r.scenedetect or Runs([])
        decoded = "-" if sc.decoded_frames is None else f"{sc.decoded_frames}/{sc.frame_count}"
        truth = f"{r.truth['shots']}/{r.truth['scenes']}" if r.truth else "-"
        rows.append(
            [
                r.name,
                "error" if sc.error and not sc.seconds else num(sc.median, "{:.2f}"),
                "error" if sd.error and not sd.seconds else num(sd.median, "{:.2f}"),
                num(r.ratio, "{:.2f}"),
                num(sc.median_rss, "{:.0f}"),
                decoded,
                f"{num(sc.shots)} ({num(sd.shots)})",
                num(sc.scenes),
                truth,
            ]
        )
        errors += [f"{r.name}: {n}: {x.error}" for n, x in (("scenecut", sc), ("scenedetect", sd))]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        f"median of {runs} run(s); ratio = scenecut / scenedetect wall time; "
        "peak MB = scenecut's maximum resident set"
    )
    lines += [e for e in errors if not e.endswith(": None")]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
