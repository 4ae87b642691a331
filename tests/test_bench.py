"""`make bench` runs end to end and its table covers every target of issue 8.

``bench/run.py --smoke`` runs every benchmark the way ``make bench`` does, on a film of a few
seconds instead of the 10-minute one and with few images and loader windows. The numbers
measured here (on a CI machine, beside other tests) mean nothing; what is checked is that each
benchmark runs, measures what it says and lands in the table and bench.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 10  # the film's length: 2 shots, from the 10-minute film's generator

pytestmark = pytest.mark.slow


def test_smoke_bench_prints_one_table_with_every_target(tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke"]
    command += ["--film-seconds", str(SECONDS), "--results", str(tmp_path)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "bench.json").read_text())
    # the film the benches used: as long as asked, its frames counted from the file itself
    film = Path(doc["film"]["path"])
    with av.open(str(film)) as container:
        stream = container.streams.video[0]
        frames = stream.frames
        assert frames == round(SECONDS * Fraction(stream.average_rate)) > 0
    assert doc["film"]["frames"] == frames
    label = f"{SECONDS}-s"
    rows = {row["measurement"].split(" (")[0]: row for row in doc["rows"]}
    for number in "123456":
        assert any(name.startswith(f"{number}.") for name in rows), number
    one_pass = rows["1. frames decoded / in file"]
    assert one_pass["value"] == one_pass["reference"] == frames and one_pass["met"]
    segment = rows[f"1. segment, {label} 720p film"]
    assert segment["value"] > 0 and segment["reference"] > 0
    assert segment["ratio"] == pytest.approx(segment["value"] / segment["reference"])
    assert 0 < rows[f"3. peak RSS, {label} film"]["value"] < 2048
    assert rows["4. --copy clip export"]["value"] > 0
    assert 0 < rows["4. re-encode: cores busy"]["value"] <= 100
    assert rows["6. scenecut --help"]["value"] > 0
    # only the short film went through bench_segment, once; the export used it too
    assert [i["name"] for i in doc["segment"]["inputs"]] == [film.name]
    assert Path(doc["export"]["video"]) == film
    # every configuration of the embedding bench ran, the compiled ones compiled and measured
    embed = doc["embed"]["rows"]
    assert len({row["config"] for row in embed}) == 8
    compiled = [row for row in embed if row["compiled"]]
    assert {row["encoder"] for row in compiled} == {"resnet50", "effnet-lite0"}
    assert all(row["config"].endswith("compiled") and row["median"] > 0 for row in compiled)
    # the profiles saw every frame of the film, in the three threads
    for profile in doc["profile"]:
        assert f"{frames} decoded frames" in profile["table"]
        assert {"decode", "downscale", "detect", "keyframes", "embed"} <= set(profile["busy_s"])
        threads = {line[11:].split()[0] for line in profile["table"].splitlines()[1:-1]}
        assert threads == {"main", "decode", "embed"}
    # one table on stdout with the machine line
    assert "measurement" in proc.stdout and "machine:" in proc.stdout
    assert doc["machine"]["cpu_count"] >= 1
