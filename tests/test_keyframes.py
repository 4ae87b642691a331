"""Keyframes are the frames MovieNet's rule names, in one pass, with flat memory.

Every frame of the generated films carries its own number, drawn as a row of black and white
blocks, so a test reads back which frame a keyframe really is, not only the index it claims.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from scenecut import keyframes
from scenecut.keyframes import clean_span, keyframe_indices
from scenecut.shots import detect_shots
from scenecut.video import ffmpeg_exe

W, H, BITS, BLOCK = 128, 96, 16, 8
# Neighbouring shots far apart in colour, so every cut is found, even after 1-frame shots.
COLOURS = [(230, 30, 30), (20, 200, 40), (30, 40, 220), (240, 230, 40), (200, 40, 210)]
LENGTHS = [1, 2, 3, 16, 17, 211, 5000, 40]


def _frame(index: int, colour: tuple[int, int, int]) -> np.ndarray:
    image = np.empty((H, W, 3), dtype=np.uint8)
    image[:] = colour
    image[-2 * BLOCK :] = 0
    for bit in range(BITS):
        if index >> bit & 1:
            image[-2 * BLOCK + 4 : -4, bit * BLOCK + 1 : (bit + 1) * BLOCK - 1] = 255
    return image


def frame_number(image: np.ndarray) -> int:
    """The number drawn into a frame by ``_frame`` (image at any size with the same aspect)."""
    h, w = image.shape[:2]
    row = image[h - h * BLOCK // H, :, :].astype(int).mean(axis=1)
    bits = [row[int((b + 0.5) * w / BITS)] > 128 for b in range(BITS)]
    return sum(1 << b for b, on in enumerate(bits) if on)


def make_clip(path: Path, lengths: list[int], args: tuple[str, ...] = ()) -> list[int]:
    """Shots of ``lengths`` frames at 25 fps, H.264 with B-frames and a keyframe every 50
    frames (so a rewind has to decode from an earlier keyframe); the shot starts."""
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    cmd += ["-s", f"{W}x{H}", "-r", "25", "-i", "-", "-pix_fmt", "yuv420p"]
    cmd += list(args) or ["-c:v", "libx264", "-g", "50", "-bf", "2", "-crf", "12"]
    proc = subprocess.Popen([*cmd, str(path)], stdin=subprocess.PIPE)
    starts, index = [], 0
    for shot, length in enumerate(lengths):
        starts.append(index)
        for _ in range(length):
            proc.stdin.write(_frame(index, COLOURS[shot % len(COLOURS)]).tobytes())
            index += 1
    proc.stdin.close()
    assert proc.wait() == 0
    return starts


def _detect(path: Path):
    got = []
    detection = detect_shots(
        path,
        detector="content",
        min_shot_seconds=0.01,
        prepare=lambda image: image,  # the full-size RGB frame, as a model receives it
        on_shot=got.append,
    )
    return detection, got


def _check_rule(detection, got, starts):
    assert [s.start for s in detection.shots] == starts
    assert detection.inexact == 0
    for item in got:
        shot = item.shot
        wanted = keyframe_indices(shot.start, shot.end)
        assert tuple(shot.keyframes) == wanted
        assert [frame_number(image) for image in item.images] == list(wanted), shot


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list[int]]:
    path = tmp_path_factory.mktemp("keyframes") / "shots.mp4"
    return path, make_clip(path, LENGTHS)


def test_middle_keyframes_follow_the_movienet_rule(clip):
    path, starts = clip
    detection, got = _detect(path)
    _check_rule(detection, got, starts)
    assert detection.rewound == 0  # small frames: every candidate fits in memory


def test_long_shots_rewind_to_their_middle_frame(clip, monkeypatch):
    # Room for 4 frames only: the middles of the long shots are decoded again.
    monkeypatch.setattr(keyframes, "_BUFFER_BYTES", 4 * W * H * 3 // 2)
    path, starts = clip
    detection, got = _detect(path)
    _check_rule(detection, got, starts)
    assert detection.rewound >= 1


def test_rewinding_works_in_avi(tmp_path, monkeypatch):
    """AVI frames are timed by their decoding order; a rewind finds them the same way."""
    monkeypatch.setattr(keyframes, "_BUFFER_BYTES", 4 * W * H * 3 // 2)
    path = tmp_path / "shots.avi"
    starts = make_clip(path, [30, 120, 45], ("-c:v", "mpeg4", "-q:v", "2", "-g", "25", "-bf", "2"))
    detection, got = _detect(path)
    _check_rule(detection, got, starts)
    assert detection.rewound >= 1


# VmHWM, not getrusage: ru_maxrss carries the forking parent's peak over into the child.
_PEAK_RSS = """
import sys
from pathlib import Path
from scenecut import keyframes
from scenecut.shots import detect_shots
keyframes._BUFFER_BYTES = int(sys.argv[2])
detect_shots(Path(sys.argv[1]), detector="content", min_shot_seconds=0.01, on_shot=print)
status = open("/proc/self/status").read()
print(int(status.split("VmHWM:")[1].split()[0]) * 1024)
"""


def _peak_rss(path: Path, budget: int) -> int:
    """Peak resident memory of a process that only detects ``path``'s shots and keyframes."""
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(path), str(budget)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout.split()[-1])


def test_memory_stays_flat_in_shot_length(tmp_path):
    """A shot ten times longer needs no more memory: the frames held are capped, and the rest
    of what the open shot holds is a few bytes per frame. Without the cap the same measure
    grows by the frames held (so it can see growth)."""
    short, long = tmp_path / "short.mp4", tmp_path / "long.mp4"
    make_clip(short, [40, 500, 40])
    make_clip(long, [40, 5000, 40])
    frame = W * H * 3 // 2
    capped = 16 * frame
    growth = _peak_rss(long, capped) - _peak_rss(short, capped)
    assert growth < 6 << 20, growth
    uncapped = _peak_rss(long, 1 << 40) - _peak_rss(short, 1 << 40)
    assert uncapped > 2000 * frame, uncapped  # 2,250 more frames held


def _textured_clip(path: Path, width: int, height: int, frames: int) -> None:
    """Smooth moving gradients and noise: pixels where resampling filters differ."""
    rng = np.random.default_rng(15)
    noise = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    y, x = np.mgrid[0:height, 0:width]
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    cmd += ["-s", f"{width}x{height}", "-r", "25", "-i", "-", "-pix_fmt", "yuv420p"]
    cmd += ["-c:v", "libx264", "-crf", "18", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for i in range(frames):
        scene = i // 20
        image = np.stack(
            [
                (x * (3 + scene) + i * 4) % 256,
                (y * (2 + scene) + 40 * scene) % 256,
                ((x + y) * (scene + 1) // 2) % 256,
            ],
            axis=-1,
        ).astype(np.uint8)
        proc.stdin.write((image // 2 + noise).tobytes())
    proc.stdin.close()
    assert proc.wait() == 0


def _reference_input(frame_rgb: np.ndarray, resize: int, crop: int, interpolation) -> np.ndarray:
    """The reference code's test transform on a PIL image (torchvision.transforms)."""
    from PIL import Image
    from torchvision import transforms as T

    from scenecut.models.config import IMAGENET_MEAN, IMAGENET_STD

    transform = T.Compose(
        [
            T.Resize(resize, interpolation=interpolation),
            T.CenterCrop(crop),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return transform(Image.fromarray(frame_rgb)).numpy()


@pytest.mark.parametrize("size", [(480, 270), (270, 480), (334, 202)])
def test_network_input_is_the_reference_transform_of_the_reference_decode(tmp_path, size):
    """The network sees what BaSSL/ModelScope (bicubic 256 -> 224) and SCRL (bilinear 224)
    feed theirs: the frame OpenCV's VideoCapture decodes, through torchvision's PIL
    transform."""
    import cv2
    import torch
    from torchvision.transforms import InterpolationMode

    from scenecut.models.config import ModelConfig
    from scenecut.models.inference import prepare_image
    from scenecut.models.runner import normalize

    path = tmp_path / "textured.mp4"
    _textured_clip(path, *size, frames=60)
    capture = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        decoded.append(np.ascontiguousarray(bgr[..., ::-1]))
    configs = {
        InterpolationMode.BICUBIC: ModelConfig(),
        InterpolationMode.BILINEAR: ModelConfig(resize=224, interpolation="bilinear"),
    }
    for mode, config in configs.items():
        got = []
        detect_shots(
            path,
            detector="content",
            prepare=lambda image, config=config: prepare_image(config, image),
            on_shot=got.append,
        )
        assert len(got) >= 2
        for item in got:
            pixels = torch.from_numpy(item.images)
            ours = normalize(pixels, config.mean, config.std, torch.device("cpu")).numpy()
            for k, index in enumerate(item.shot.keyframes):
                want = _reference_input(decoded[index], config.resize, config.image_size, mode)
                assert np.abs(ours[k] - want).max() < 1e-6, (mode, index)


def test_a_middle_that_cannot_be_decoded_again_is_said(clip, monkeypatch, caplog, tmp_path):
    """When seeking back fails (here the file is gone by then), the nearest frame held stands
    in, inside its shot, and a warning says how many."""
    from scenecut import shots
    from scenecut.video import Rewind

    monkeypatch.setattr(keyframes, "_BUFFER_BYTES", 4 * W * H * 3 // 2)
    monkeypatch.setattr(shots, "Rewind", lambda path: Rewind(tmp_path / "gone.mp4"))
    path, _ = clip
    with caplog.at_level("WARNING", logger="scenecut"):
        detection, got = _detect(path)
    assert detection.rewound == 0 and detection.inexact >= 1
    assert f"{detection.inexact} keyframe(s) could not be decoded a second time" in caplog.text
    for item in got:
        numbers = [frame_number(image) for image in item.images]
        assert tuple(item.shot.keyframes) == tuple(numbers)  # the frames it says it used
        assert all(item.shot.start <= n < item.shot.end for n in numbers)


def test_clean_span_leaves_out_the_transitions_at_both_cuts():
    runs = {10: (8, 12), 30: (27, 33)}  # cut -> first and last frame of its transition
    assert clean_span(10, 30, runs) == (13, 27)
    assert clean_span(0, 10, runs) == (0, 8)
    assert clean_span(30, 50, runs) == (34, 50)
    assert clean_span(40, 50, runs) == (40, 50)  # no transition at either cut
    # a shot that is all transition keeps its own frames
    assert clean_span(10, 12, {10: (5, 14), 12: (11, 13)}) == (10, 12)
