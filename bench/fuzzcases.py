"""Seeded corruptions of media files, and the checks a reliability run makes on what came out.

Shared by ``bench/fuzz.py`` (the campaign) and ``tests/test_reliability.py`` (the small seeded
fuzz; it loads this file by path). Nothing here runs scenecut: these are the corruptions and the
independent measurements (PyAV decoding, files in the output folder, stderr) that judge it.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 4096  # the zeroed block size
TRACEBACK = "Traceback (most recent call last)"

# Byte patterns of the structures a header or index corruption aims at, per container family.
_MP4_BOXES = (b"stsz", b"stco", b"stss", b"moov", b"mdhd", b"avcC")
_MKV_IDS = {
    "tracks": b"\x16\x54\xae\x6b",
    "cues": b"\x1c\x53\xbb\x6b",
    "seekhead": b"\x11\x4d\x9b\x74",
    "segment": b"\x18\x53\x80\x67",
}
HEADER_VARIANTS = ("zero-head", "garbage-head", "index", "table-size", "sync")


@dataclass(frozen=True)
class Corruption:
    """One seeded corruption. ``kind``: truncate (``amount`` = fraction kept), bitflip
    (``amount`` = bits flipped), zero (``amount`` = 4 KB blocks zeroed) or header
    (``variant`` one of ``HEADER_VARIANTS``)."""

    kind: str
    amount: float = 0.0
    seed: int = 0
    variant: str = ""

    @property
    def name(self) -> str:
        if self.kind == "truncate":
            return f"truncate-{self.amount:.3f}"
        if self.kind == "header":
            return f"header-{self.variant}-s{self.seed}"
        return f"{self.kind}-{int(self.amount)}-s{self.seed}"

    def apply(self, data: bytes) -> bytes:
        rng = random.Random(f"{self.name}/{len(data)}")
        if self.kind == "truncate":
            return data[: int(len(data) * self.amount)]
        out = bytearray(data)
        if not out:
            return bytes(out)
        if self.kind == "bitflip":
            for _ in range(int(self.amount)):
                i = rng.randrange(len(out))
                out[i] ^= 1 << rng.randrange(8)
        elif self.kind == "zero":
            for _ in range(int(self.amount)):
                start = rng.randrange(max(1, len(out) - BLOCK))
                out[start : start + BLOCK] = bytes(len(out[start : start + BLOCK]))
        elif self.kind == "header":
            _damage_header(out, self.variant, rng)
        else:
            raise ValueError(f"unknown corruption kind {self.kind!r}")
        return bytes(out)


def corruptions(
    seed: int, truncations: int = 8, bitflips: int = 6, zeroed: int = 6, headers: int = 5
) -> list[Corruption]:
    """A deterministic mix: truncations spread over (0, 1), bit flips and zeroed 4 KB blocks of
    growing counts, and damaged headers/indexes (``HEADER_VARIANTS`` in turn)."""
    rng = random.Random(seed)
    out: list[Corruption] = []
    for i in range(truncations):  # one fraction in each of `truncations` equal strata
        out.append(Corruption("truncate", round((i + rng.random()) / truncations, 3)))
    flips = (1, 4, 16, 64, 256, 1024)
    for i in range(bitflips):
        out.append(Corruption("bitflip", flips[i % len(flips)], rng.randrange(10_000)))
    blocks = (1, 1, 2, 3, 4, 6)
    for i in range(zeroed):
        out.append(Corruption("zero", blocks[i % len(blocks)], rng.randrange(10_000)))
    for i in range(headers):
        variant = HEADER_VARIANTS[i % len(HEADER_VARIANTS)]
        out.append(Corruption("header", 0, rng.randrange(10_000), variant))
    return out


def _damage_header(out: bytearray, variant: str, rng: random.Random) -> None:
    """Damage the container's header or index in place (a seeded random region if the
    structure aimed at is not found: then the last tenth, where a moov-at-end index lives)."""

    def fallback(length: int) -> None:
        start = max(0, len(out) - max(length, len(out) // 10))
        pos = rng.randrange(start, max(start + 1, len(out) - length))
        out[pos : pos + length] = rng.randbytes(len(out[pos : pos + length]))

    if variant == "zero-head":
        out[:64] = bytes(len(out[:64]))
    elif variant == "garbage-head":
        out[:512] = rng.randbytes(len(out[:512]))
    elif variant == "index":
        for marker in (*_MP4_BOXES[:2], _MKV_IDS["cues"], _MKV_IDS["tracks"]):
            pos = out.find(marker)
            if pos >= 0:
                out[pos + 4 : pos + 52] = bytes(len(out[pos + 4 : pos + 52]))
                return
        if out[:1] == b"\x47":  # MPEG-TS: the PAT and PMT packets
            out[:564] = bytes(len(out[:564]))
            return
        fallback(48)
    elif variant == "table-size":
        pos = out.find(b"stsz")
        if pos >= 0:  # version/flags, sample size, then the sample count: declare 2**31-1
            out[pos + 12 : pos + 16] = b"\x7f\xff\xff\xff"
            return
        pos = out.find(_MKV_IDS["tracks"])
        if pos >= 0:  # an 8-byte element size of 2**56 - 2
            out[pos + 4 : pos + 12] = b"\x01\xff\xff\xff\xff\xff\xff\xfe"
            return
        fallback(16)
    elif variant == "sync":
        if out[:1] == b"\x47":  # MPEG-TS sync bytes of the first 40 packets
            for p in range(0, min(len(out), 188 * 40), 188):
                out[p] = 0
            return
        pos = out.find(b"moov")
        if pos >= 4:  # the moov box declares itself larger than the file
            out[pos - 4 : pos] = b"\xff\xff\xff\xf0"
            return
        pos = out.find(_MKV_IDS["segment"])
        if pos >= 0:
            out[pos + 4 : pos + 12] = b"\x01\x00\x00\x00\x00\x00\x00\x10"  # a 16-byte segment
            return
        fallback(16)
    else:
        raise ValueError(f"unknown header variant {variant!r}")


# --------------------------------------------------------------------------------------------
# Independent measurements


def decodable_frames(path: Path | str) -> int:
    """Frames PyAV can decode from ``path``, skipping undecodable packets (0 if none)."""
    import av

    count = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                try:
                    count += len(packet.decode())
                except av.error.FFmpegError:
                    continue
    except Exception:  # a measuring tool: any failure ends the count where it stands
        pass
    return count


def thumbnails(path: Path | str, size: int = 24, limit: int | None = None) -> list:
    """Grey ``size`` x ``size`` thumbnails (float32 arrays) of the decoded frames of ``path``."""
    import av
    import numpy as np

    thumbs = []
    try:
        with av.open(str(path)) as container:
            for packet in container.demux(video=0):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    continue
                for frame in frames:
                    small = frame.reformat(width=size, height=size, format="gray")
                    thumbs.append(small.to_ndarray()[:, :size].astype(np.float32))
                if limit is not None and len(thumbs) >= limit:
                    return thumbs[:limit]
    except Exception:  # as decodable_frames: what decoded so far
        pass
    return thumbs


def clip_problems(source: Path, doc: dict, clips: list[Path], tolerance: float = 12.0) -> list[str]:
    """Frame accuracy of re-encoded clips: each clip holds as many frames as its scene, and its
    first frame is the source frame at the scene's start (mean absolute difference of grey
    thumbnails below ``tolerance``, and no nearer match among the two frames on either side).
    Rotated sources are compared in the rotation that fits the first clip best."""
    import numpy as np

    src = thumbnails(source)
    problems = []
    if not src:
        return ["the source decodes to no frames"]
    rotation = 0
    for scene, clip in zip(doc.get("scenes", []), clips, strict=False):
        start, end = scene["start_frame"], scene["end_frame"]
        frames = thumbnails(clip)
        number = scene["index"] + 1
        if len(frames) != end - start:
            problems.append(f"scene {number}: clip has {len(frames)} frames, scene {end - start}")
        if not frames or start >= len(src):
            continue
        first = frames[0]
        if scene["index"] == 0:
            rotation = min(range(4), key=lambda k: _mad(np.rot90(src[start], k), first))
        window = range(max(0, start - 2), min(len(src), start + 3))
        mad = {j: _mad(np.rot90(src[j], rotation), first) for j in window}
        best = min(mad, key=mad.get)
        if mad[start] > tolerance:
            problems.append(
                f"scene {number}: first frame differs from frame {start} ({mad[start]:.1f})"
            )
        elif best != start and mad[best] + 1.0 < mad[start]:
            problems.append(f"scene {number}: first frame is source frame {best}, not {start}")
    return problems


def _mad(a, b) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(abs(a - b).mean())


# --------------------------------------------------------------------------------------------
# What a run left behind


def temp_files(folder: Path) -> list[str]:
    """Hidden files, ``*.part`` and ``*.tmp`` (and ``*.tmp.*``) in ``folder``, recursively."""
    if not folder.is_dir():
        return []
    found = []
    for p in sorted(folder.rglob("*")):
        name = p.name
        if name.startswith(".") or name.endswith((".part", ".tmp")) or ".tmp." in name:
            found.append(str(p.relative_to(folder)))
    return found


def clip_name(stem: str, number: int, scenes: int, extension: str) -> str:
    """The default clip name (``$VIDEO_NAME-Scene-$SCENE_NUMBER``) of a scene, 1-based."""
    return f"{stem}-Scene-{number:0{max(3, len(str(scenes)))}d}{extension}"


@dataclass
class OutputSet:
    """The scene list (JSON, CSV) and clips of one input in an output folder."""

    state: str  # "complete", "none" or "partial"
    doc: dict | None = None  # the parsed JSON, when it is there and valid
    clips: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    json_error: str = ""


def output_set(folder: Path, stem: str, clip_extension: str | None = ".mp4") -> OutputSet:
    """Whether ``folder`` holds all of ``stem``'s outputs (JSON, CSV, one clip per scene the JSON
    lists; no clips if ``clip_extension`` is None), none of them, or part of them."""
    json_path = folder / f"{stem}.scenes.json"
    csv_path = folder / f"{stem}.scenes.csv"
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    clips_there = [n for n in names if n.startswith(f"{stem}-Scene-") and not n.startswith(".")]
    present = [n for n in (json_path.name, csv_path.name) if n in names] + clips_there
    if not present:
        return OutputSet("none")
    result = OutputSet("partial", present=present)
    if json_path.name not in names:
        result.missing.append(json_path.name)
    else:
        try:
            result.doc = json.loads(json_path.read_text(), parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            result.json_error = str(exc)[:200]
    if csv_path.name not in names:
        result.missing.append(csv_path.name)
    if result.doc is not None and clip_extension is not None:
        scenes = result.doc.get("scenes", [])
        wanted = [clip_name(stem, i + 1, len(scenes), clip_extension) for i in range(len(scenes))]
        result.missing += [n for n in wanted if n not in names]
        result.clips = [folder / n for n in wanted]
    if not result.missing and result.doc is not None:
        result.state = "complete"
    return result


def _no_constant(name: str):
    raise ValueError(f"{name} in the JSON (not valid JSON)")


# --------------------------------------------------------------------------------------------
# What a run said


@dataclass
class Stderr:
    text: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line.strip()]

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.text

    @property
    def errors(self) -> list[str]:
        return [line for line in self.lines if line.startswith("error:")]

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.lines if line.startswith("warning:")]

    @property
    def frames_warning(self) -> bool:
        """A ``warning:`` line that mentions frames as a word (``1 frame``, ``3 frames``):
        what a run that lost frames must say."""
        return any(re.search(r"\bframes?\b", line) for line in self.warnings)

    @property
    def frame_warning(self) -> bool:
        """Looser: any ``warning:`` line that mentions a frame at all."""
        return any("frame" in line for line in self.warnings)
