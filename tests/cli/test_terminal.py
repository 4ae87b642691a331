"""What a person sees on stderr: the scene table at 80 columns for a feature film, numbered as
the CSV numbers it, and a progress report from every stage that can take a while."""

from __future__ import annotations

import csv
import io
import itertools
import threading
from fractions import Fraction
from pathlib import Path

from rich.console import Console

from scenecut.cli.console import NUMBERING, ProgressBars, scene_table
from scenecut.output.formats import to_csv
from scenecut.result import SegmentResult, Settings, Shot, VideoInfo, scenes_from_boundaries
from scenecut.segment import ExportOptions, SegmentOptions, segment_to_files


def _three_hours() -> SegmentResult:
    """A 3-hour film at 23.976 fps (258,941 frames) of 100-frame shots: a first scene of 1,016
    shots (over an hour), then scenes of 35 shots."""
    fps = Fraction(24000, 1001)
    frames = round(3 * 3600 * fps)
    edges = [*range(0, frames, 100), frames]
    shots = [Shot(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(edges))]
    scores = [0.9 if i % 35 == 0 and i >= 1000 else 0.1 for i in range(len(shots) - 1)]
    boundaries = [i for i, s in enumerate(scores) if s > 0.5]
    video = VideoInfo(Path("a-feature-film.mkv"), fps, frames, 1920, 800, "h264", True)
    settings = Settings("adaptive", None, 14, "classic", 0.5, None, 0)
    scenes = scenes_from_boundaries(shots, boundaries, scores)
    return SegmentResult(video, shots, scores, scenes, settings, decoded_frames=frames)


def test_table_fits_80_columns_for_a_three_hour_film():
    result = _three_hours()
    console = Console(width=80, record=True, file=io.StringIO())
    scene_table(console, result)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text  # no cell cut short
    # The first and last scenes' rows, whole: hour timecodes, 6-digit frame numbers.
    rows = [line.split() for line in lines if line.split() and line.split()[0].isdigit()]
    assert len(rows) == len(result.scenes)
    assert rows[0] == ["1", "00:00:00.000", "01:10:37.566", "4237.6s", "1-101600", "1-1016"]
    assert rows[-1] == ["46", "02:57:40.650", "02:59:59.997", "139.3s", "255601-258941",
                        "2557-2590", "0.90"]  # fmt: skip
    # One numbering, explained under the table, and the same as the CSV's.
    assert " ".join(NUMBERING.split()) in " ".join(text.split())
    with io.StringIO(to_csv(result)) as f:
        table = [[r["Scene Number"], f"{r['Start Frame']}-{r['End Frame']}",
                  f"{r['First Shot']}-{r['Last Shot']}"] for r in csv.DictReader(f)]  # fmt: skip
    assert [[row[0], row[4], row[5]] for row in rows] == table


def test_every_slow_stage_reports_progress(film, tmp_path):
    """Decode, embed, clips, report and images each report (done, total) up to total."""
    seen: dict[str, list[tuple[int, int]]] = {}
    lock = threading.Lock()

    def progress(stage: str, done: int, total: int) -> None:
        with lock:  # the embedding thread reports too
            seen.setdefault(stage, []).append((done, total))

    export = ExportOptions(formats=["json"], save_clips=True, copy=True, report=True, save_images=1)
    segment_to_files(film.path, SegmentOptions(), export, tmp_path, progress=progress)
    assert set(seen) == {"decode", "embed", "clips", "report", "images"}
    for stage, calls in seen.items():
        done, total = calls[-1]
        assert done == total > 0, stage
        assert [d for d, _ in calls] == sorted(d for d, _ in calls), stage
    assert seen["embed"][-1][1] == len(film.shot_starts)
    assert seen["clips"][-1][1] == len(list(tmp_path.glob("film-Scene-*.mp4")))


def test_progress_bars_draw_on_a_terminal_only():
    terminal = Console(file=io.StringIO(), force_terminal=True, width=80)
    with ProgressBars(terminal, False, "film.mp4") as update:
        worker = threading.Thread(target=update, args=("embed", 3, 4))
        worker.start()
        worker.join()
        update("images", 1, 2)
    drawn = terminal.file.getvalue()
    assert "film.mp4: embed" in drawn and "film.mp4: images" in drawn
    pipe = Console(file=io.StringIO(), force_terminal=False)
    with ProgressBars(pipe, False, "film.mp4") as update:
        assert update is None
    with ProgressBars(terminal, True, "film.mp4") as update:
        assert update is None
