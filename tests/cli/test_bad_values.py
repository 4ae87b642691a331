"""Bad values, as a hostile user types them: damaged truth and result files, and numbers that
are NaN, infinite, negative or zero where that means nothing. The installed console script must
answer each with one line on stderr that names the file or option, and exit 1 (a bad file) or 2
(a bad option value): never 3 ("a bug"), never a traceback, and before any work starts."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from scenecut.data import writer
from scenecut.output.formats import result_to_dict
from scenecut.result import Scene, SegmentResult, Settings, Shot, VideoInfo

# A saved result of a 4 s film at 25 fps, two shots, one scene boundary at 1.6 s.
RESULT = SegmentResult(
    video=VideoInfo(Path("film.mp4"), Fraction(25), 100, 64, 48, "h264", False),
    shots=[Shot(0, 0, 40, (0, 20, 39)), Shot(1, 40, 100, (40, 70, 99))],
    boundary_scores=[0.8],
    scenes=[Scene(0, 0, 0, 0, 40, None), Scene(1, 1, 1, 40, 100, 0.8)],
    settings=Settings("adaptive", None, 15, "classic", 0.5, None, 0),
)


def _result(change) -> str:
    """The saved result's JSON with ``change(data)`` applied: a damaged or edited file."""
    data = result_to_dict(RESULT)
    change(data)
    return json.dumps(data)


def _set(path: str, value):
    """A change setting ``data[a][b]...`` (path ``"a.b.0.c"``) to ``value``."""
    *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]

    def change(data):
        for key in parents:
            data = data[key]
        data[last] = value

    return change


SMALL_CORPUS = ["--movies", "1", "--shots-per-movie", "2", "--size", "64x36", "--workers", "1"]
GARBAGE = bytes(range(128, 256)) * 4  # not UTF-8: what a video or a zip looks like as text
TRUTH = "1.6\n"

# (id, arguments with {placeholders}, files to write {name: text or bytes}, exit code, needle)
CASES = [
    # --- truth files (--truth) ---------------------------------------------------------------
    ("truth-binary", ["eval", "{saved}", "--truth", "{f}"], {"t.txt": GARBAGE}, 1, "t.txt"),
    ("truth-binary-json", ["eval", "{saved}", "--truth", "{f}"], {"t.json": GARBAGE}, 1, "t.json"),
    (
        "truth-bad-utf8-csv",
        ["eval", "{saved}", "--truth", "{f}"],
        {"t.csv": b"\xff\xfe1\n"},
        1,
        "t.csv",
    ),
    ("truth-empty", ["eval", "{saved}", "--truth", "{f}"], {"t.txt": ""}, 1, "t.txt"),
    ("truth-negative", ["eval", "{saved}", "--truth", "{f}"], {"t.txt": "1.6\n-5\n"}, 1, "t.txt"),
    ("truth-nan", ["eval", "{saved}", "--truth", "{f}"], {"t.txt": "nan\n"}, 1, "t.txt"),
    ("truth-inf", ["eval", "{saved}", "--truth", "{f}"], {"t.txt": "1e400\n"}, 1, "t.txt"),
    (
        "truth-timecode-nan",
        ["eval", "{saved}", "--truth", "{f}"],
        {"t.txt": "00:nan\n"},
        1,
        "t.txt",
    ),
    (
        "truth-csv-nan",
        ["eval", "{saved}", "--truth", "{f}"],
        {"t.csv": "Start Time (seconds)\n0\nnan\n"},
        1,
        "t.csv",
    ),
    (
        "truth-json-negative",
        ["eval", "{saved}", "--truth", "{f}"],
        {"t.json": '{"scenes": [{"start_s": -3}]}'},
        1,
        "t.json",
    ),
    (
        "truth-json-nan",
        ["eval", "{saved}", "--truth", "{f}"],
        {"t.json": '{"scenes": [{"start_s": NaN}]}'},
        1,
        "t.json",
    ),
    (
        "truth-json-bool",
        ["eval", "{saved}", "--truth", "{f}"],
        {"t.json": '{"scenes": [{"start_s": true}]}'},
        1,
        "t.json",
    ),
    (
        "truth-json-no-scenes",
        ["eval", "{saved}", "--truth", "{f}"],
        {"t.json": '{"scenes": []}'},
        1,
        "t.json",
    ),
    # --- saved results (.scenes.json) scored by eval --------------------------------------------
    (
        "result-string-frame",
        ["eval", "{f}", "--truth", "{truth}"],
        {"r.json": _result(_set("shots.1.start_frame", "abc"))},
        1,
        "r.json",
    ),
    (
        "result-negative-frame",
        ["eval", "{f}", "--truth", "{truth}"],
        {"r.json": _result(_set("shots.0.start_frame", -50))},
        1,
        "r.json",
    ),
    (
        "result-frame-past-end",
        ["eval", "{f}", "--truth", "{truth}"],
        {"r.json": _result(_set("shots.1.end_frame", 10**400))},
        1,
        "r.json",
    ),
    (
        "result-nan-score",
        ["eval", "{f}", "--truth", "{truth}"],
        {"r.json": _result(_set("boundary_scores.0", float("nan")))},
        1,
        "r.json",
    ),
    (
        "result-infinite-rate",
        ["eval", "{f}", "--truth", "{truth}"],
        {"r.json": _result(_set("video.frame_rate", float("inf")))},
        1,
        "r.json",
    ),
    (
        "result-extra-score",
        ["eval", "{f}", "--truth", "{truth}"],
        {"r.json": _result(_set("boundary_scores", [0.8, 0.1]))},
        1,
        "r.json",
    ),
    (
        "result-no-shots",
        ["eval", "{f}", "--truth", "{truth}"],
        {"r.json": _result(lambda d: d.update(shots=[], boundary_scores=[]))},
        1,
        "r.json",
    ),
    (
        "result-threshold-text",
        ["eval", "{f}", "--truth", "{truth}"],
        {"r.json": _result(_set("settings.threshold", "x"))},
        1,
        "r.json",
    ),
    (
        "result-deep-nesting",
        ["eval", "{f}", "--truth", "{truth}"],
        {"r.json": "[" * 100_000 + "]" * 100_000},
        1,
        "r.json",
    ),
    (
        "result-huge-number",
        ["eval", "{f}", "--truth", "{truth}"],
        {"r.json": '{"video": ' + "9" * 5000 + "}"},
        1,
        "r.json",
    ),
    # --- eval's numbers ------------------------------------------------------------------------
    (
        "eval-tolerance-nan",
        ["eval", "{saved}", "--truth", "{truth}", "--tolerance", "nan"],
        {},
        2,
        "--tolerance",
    ),
    (
        "eval-tolerance-inf",
        ["eval", "{saved}", "--truth", "{truth}", "--tolerance", "inf"],
        {},
        2,
        "--tolerance",
    ),
    # --- data ingest ---------------------------------------------------------------------------
    (
        "ingest-min-shot-negative",
        ["data", "ingest", "{film}", "-o", "{out}", "--min-shot-len", "-1"],
        {},
        2,
        "--min-shot-len",
    ),
    (
        "ingest-min-shot-nan",
        ["data", "ingest", "{film}", "-o", "{out}", "--min-shot-len", "nan"],
        {},
        2,
        "--min-shot-len",
    ),
    (
        "ingest-min-shot-inf",
        ["data", "ingest", "{film}", "-o", "{out}", "--min-shot-len", "inf"],
        {},
        2,
        "--min-shot-len",
    ),
    (
        "ingest-scenes-binary",
        ["data", "ingest", "{film}", "-o", "{out}", "--scenes", "{f}"],
        {"film.txt": GARBAGE},
        1,
        "film.txt",
    ),
    (
        "ingest-scenes-damaged",
        ["data", "ingest", "{film}", "-o", "{out}", "--scenes", "{f}"],
        {"film.scenes.json": _result(_set("scenes.1.last_shot", 7))},
        1,
        "film.scenes.json",
    ),
    # --- data puzzles and synth ----------------------------------------------------------------
    (
        "puzzles-workers-zero",
        ["data", "puzzles", "{tree}", "-o", "{out}", "--workers", "0"],
        {},
        2,
        "--workers",
    ),
    (
        "puzzles-workers-negative",
        ["data", "puzzles", "{tree}", "-o", "{out}", "--workers", "-2"],
        {},
        2,
        "--workers",
    ),
    ("synth-seed-negative", ["data", "synth", "-o", "{out}", "--seed", "-1"], {}, 2, "seed"),
    (
        "synth-transitions-nan",
        ["data", "synth", "-o", "{out}", "--transitions", "nan,1,1"],
        {},
        2,
        "--transitions",
    ),
    (
        "synth-transitions-inf",
        ["data", "synth", "-o", "{out}", "--transitions", "1,inf,1"],
        {},
        2,
        "--transitions",
    ),
    (
        "synth-fps-huge",
        ["data", "synth", "-o", "{out}", "--fps", "99999999999999999999", *SMALL_CORPUS],
        {},
        2,
        "fps",
    ),
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A one-film MovieNet-style tree (two shots of grey keyframes, in train)."""
    root = tmp_path_factory.mktemp("tree")
    keyframes = [np.full((3, 24, 40, 3), 60 * i, dtype=np.uint8) for i in range(2)]
    movie = writer.write_movie(root, "tt0000001", [(0, 10), (10, 20)], iter(keyframes), [1])
    writer.write_annotations(root, [movie], {"train": ["tt0000001"], "val": [], "test": []})
    return root


@pytest.mark.parametrize(
    ("args", "files", "code", "needle"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_value_is_one_line_and_the_right_exit(
    scenecut_exe, film, tree, tmp_path, args, files, code, needle
):
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / "saved.json").write_text(json.dumps(result_to_dict(RESULT)))
    (tmp_path / "truth.txt").write_text(TRUTH)
    places = {
        "f": str(tmp_path / next(iter(files), "")),
        "saved": str(tmp_path / "saved.json"),
        "truth": str(tmp_path / "truth.txt"),
        "film": str(film.path),
        "tree": str(tree),
        "out": str(tmp_path / "out"),
    }
    proc = subprocess.run(
        [scenecut_exe, *(a.format(**places) for a in args)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=300,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()  # refused before any work
