"""Benchmark `scenecut batch` against the `segment` loop, and the Ray engine against local workers.

    python bench/bench_batch.py [--runs 3] [--inputs 24] [--workers 2] [--no-ray] [--json OUT]

On ``--inputs`` generated films of mixed lengths (one of them corrupt), each run times, into a
fresh output folder: ``scenecut segment`` over all the files (one process, one model: the loop),
``scenecut batch --workers N``, and Ray (``--engine ray`` with N actors of one CPU each, on a
local cluster bound to 127.0.0.1) twice: from before ``ray.init`` (start-up included) and from
after it (excluded). Peak memory is the largest sum of the resident sets of the whole process
tree (every worker, raylet and actor), sampled every 50 ms. The table on stdout shows medians
and ratios; raw numbers go to ``bench/results/batch.json``. The outputs of every runner are
checked to be byte-identical to the loop's. The default run takes about 2-3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SECONDS = [6, 10, 15, 20, 30, 45]  # film lengths, in turn: a mix of short and longer inputs
EXE = str(Path(sys.executable).parent / "scenecut")


def make_inputs(folder: Path, count: int) -> list[Path]:
    """``count`` films (480x270, with sound) of ``SECONDS`` lengths in two folders, the last
    one corrupt (a valid header, then noise); made once and kept."""
    from scenecut.data.synth import make_film

    paths = []
    for i in range(count):
        path = folder / ("a" if i % 2 else "b") / f"film{i:02d}.mp4"
        if not path.exists():
            if i == count - 1:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(50_000))
            else:
                frames = SECONDS[i % len(SECONDS)] * 25
                make_film(path, seed=i, total_frames=frames, width=480, height=270, audio=True)
        paths.append(path)
    return paths


class TreeMemory:
    """The peak of the summed RSS of ``pid`` and all its descendants, sampled in a thread."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            parents: dict[int, int] = {}
            rss: dict[int, int] = {}
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/stat", "rb") as f:
                        fields = f.read().rsplit(b")", 1)[1].split()
                except OSError:
                    continue
                pid = int(entry.name)
                parents[pid] = int(fields[1])
                rss[pid] = int(fields[21]) * page
            tree, grew = {self.pid}, True
            while grew:
                more = {p for p, parent in parents.items() if parent in tree} - tree
                tree |= more
                grew = bool(more)
            self.peak_mb = max(self.peak_mb, sum(rss.get(p, 0) for p in tree) / 2**20)
            self._stop.wait(0.05)


def timed(command: list[str]) -> dict:
    """Run ``command``; its wall time, exit code, peak tree memory and stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with TreeMemory(proc.pid) as memory:
        out, err = proc.communicate()
    wall = time.perf_counter() - start
    return {
        "seconds": wall,
        "rc": proc.returncode,
        "peak_mb": memory.peak_mb,
        "stdout": out,
        "stderr": err[-2000:],
    }


def ray_child(inputs: list[str], out: Path, workers: int) -> None:
    """In a process of its own: start a local cluster, run the batch on it, print the times."""
    import ray

    from scenecut.batch import WorkSpec, run_batch, settings_hash
    from scenecut.models.scorers import choose_model
    from scenecut.segment import ExportOptions, SegmentOptions

    began = time.perf_counter()
    ray.init(
        num_cpus=workers,
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=100 * 2**20,
    )
    started = time.perf_counter()
    options, export = SegmentOptions(), ExportOptions(formats=["json"])
    choice = choose_model("auto")
    spec = WorkSpec(options, export, choice, settings_hash(options, export, choice))
    ray_options = dict(actors=workers, cpus_per_worker=1.0)
    counts = run_batch(inputs, out, spec, engine="ray", ray_options=ray_options)
    finished = time.perf_counter()
    ray.shutdown()
    print(json.dumps({"startup": started - began, "run": finished - started, "ok": counts.ok}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--inputs", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    parser.add_argument("--json", type=Path, default=RESULTS / "batch.json")
    parser.add_argument("--ray-child", nargs=2, metavar=("LIST", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ray_child:
        inputs = Path(args.ray_child[0]).read_text().splitlines()
        ray_child(inputs, Path(args.ray_child[1]), args.workers)
        return
    os.environ.setdefault("SCENECUT_OFFLINE", "1")
    films = make_inputs(RESULTS / "cache" / "batch_inputs", args.inputs)
    listing = RESULTS / "cache" / "batch_inputs.txt"
    listing.write_text("".join(f"{p}\n" for p in films))
    video_seconds = sum(SECONDS[i % len(SECONDS)] for i in range(len(films) - 1))
    rows: dict[str, list[dict]] = {"loop": [], "workers": [], "ray": []}
    with tempfile.TemporaryDirectory(prefix="bench_batch") as temp:
        for run in range(args.runs):
            base = Path(temp) / str(run)
            loop = timed([EXE, "segment", *map(str, films), "-o", str(base / "loop"), "-q"])
            assert loop["rc"] == 1, loop["stderr"]  # the corrupt one
            rows["loop"].append(loop)
            command = [EXE, "batch", "--from-list", str(listing), "-o", str(base / "workers")]
            local = timed([*command, "--workers", str(args.workers), "-q", "--flat"])
            assert local["rc"] == 1, local["stderr"]
            rows["workers"].append(local)
            _same(base / "loop", base / "workers")
            if not args.no_ray:
                ray = timed(
                    [
                        sys.executable,
                        __file__,
                        "--workers",
                        str(args.workers),
                        "--ray-child",
                        str(listing),
                        str(base / "ray"),
                    ]
                )
                assert ray["rc"] == 0, ray["stderr"]
                ray |= json.loads(ray["stdout"].strip().splitlines()[-1])
                rows["ray"].append(ray)
                _same(base / "loop", base / "ray" / "a", base / "ray" / "b")
    report(rows, args, len(films), video_seconds)


def _same(reference: Path, *folders: Path) -> None:
    """Every scene list in ``folders`` equals the loop's, and there are as many."""
    made = sorted(p for folder in folders for p in folder.glob("*.scenes.json"))
    expected = sorted(reference.glob("*.scenes.json"))
    assert sorted(p.name for p in made) == sorted(p.name for p in expected)
    for path in made:
        assert path.read_bytes() == (reference / path.name).read_bytes(), path


def report(rows: dict, args, inputs: int, video_seconds: float) -> None:
    def median(name: str, key: str = "seconds") -> float | None:
        values = [r[key] for r in rows[name]]
        return statistics.median(values) if values else None

    loop, local = median("loop"), median("workers")
    lines = [
        f"{inputs} inputs (one corrupt), {video_seconds:.0f} s of video, {args.runs} runs, "
        f"{os.cpu_count()} cores; medians",
        f"{'runner':<44}{'wall s':>8}{'ratio':>8}{'peak MB':>9}",
        f"{'segment loop (one process)':<44}{loop:>8.2f}{1:>8.2f}{median('loop', 'peak_mb'):>9.0f}",
        f"{f'batch --workers {args.workers}':<44}{local:>8.2f}{local / loop:>8.2f}"
        f"{median('workers', 'peak_mb'):>9.0f}   target <= 0.75",
    ]
    doc = {"inputs": inputs, "video_seconds": video_seconds, "runs": args.runs, "rows": {}}
    if rows["ray"]:
        included, run = median("ray"), median("ray", "run")
        lines += [
            f"{'batch --engine ray, start-up included':<44}{included:>8.2f}"
            f"{included / local:>8.2f}{median('ray', 'peak_mb'):>9.0f}   vs --workers",
            f"{'batch --engine ray, start-up excluded':<44}{run:>8.2f}{run / local:>8.2f}"
            f"{'':>9}   vs --workers",
            f"{'  ray.init alone':<44}{median('ray', 'startup'):>8.2f}",
        ]
    for name, values in rows.items():
        doc["rows"][name] = [
            {k: v for k, v in r.items() if k not in ("stdout", "stderr")} for r in values
        ]
    print("\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
