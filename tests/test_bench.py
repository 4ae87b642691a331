"""`make bench`'s quick form runs end to end and its table covers every target of issue 8.

The numbers measured here (on a CI machine, beside other tests) mean nothing; what is checked is
that each benchmark runs, measures what it says and lands in the table and bench.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_quick_bench_prints_one_table_with_every_target(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "bench.json").read_text())
    rows = {row["measurement"].split(" (")[0]: row for row in doc["rows"]}
    for number in "123456":
        assert any(name.startswith(f"{number}.") for name in rows), number
    one_pass = rows["1. frames decoded / in file"]
    assert one_pass["value"] == one_pass["reference"] == 14400 and one_pass["met"]
    segment = rows["1. segment, 10-min 720p film"]
    assert segment["value"] > 0 and segment["reference"] > 0
    assert segment["ratio"] == pytest.approx(segment["value"] / segment["reference"])
    assert rows["3. peak RSS, 10-min film"]["value"] < 2048
    assert rows["4. --copy clip export"]["value"] > 0
    assert 0 < rows["4. re-encode: cores busy"]["value"] <= 100
    assert rows["6. scenecut --help"]["value"] > 0
    # every configuration of the embedding bench ran, the compiled ones included
    configs = {row["config"] for row in doc["embed"]["rows"]}
    assert len(configs) == 8 and any(c.endswith("compiled") for c in configs)
    # the profiles saw every frame of the film, in the three threads
    for profile in doc["profile"]:
        assert "14400 decoded frames" in profile["table"]
        assert {"decode", "downscale", "detect", "keyframes", "embed"} <= set(profile["busy_s"])
    # one table on stdout with the machine line
    assert "measurement" in proc.stdout and "machine:" in proc.stdout
    assert doc["machine"]["cpu_count"] >= 1
