"""What lies around each shot cut besides the pictures: transitions and sound.

Both are gathered in the single decode pass (``shots.detect_shots``):

- ``PictureTrack`` keeps two numbers per frame of the shot detector's small image: its mean
  luma and its contrast. A fade through black or white, a black leader or a flash frame shows
  in them; 8 bytes a frame (1.4 MB for a two-hour film at 24 fps).
- ``AudioTrack`` takes the audio stream's frames as the demuxer meets them (``video.decode``
  with ``audio=``), mixes them to mono at 16 kHz and keeps, per 0.1 s, 40 log-mel band energies
  and the loudness: 84 bytes per 0.1 s (6 MB for two hours). Nothing else is held: the samples
  of at most one 0.1 s block wait for the next frame.

``gap_evidence`` turns both into a few numbers per shot gap (``FEATURES``): how much blank
picture lies at the cut, how deep the picture dips there, how much the sound changes across the
cut and whether it falls silent. A file without audio, or whose audio cannot be decoded, simply
has no sound evidence (``Evidence.audio`` is False), never an error.
"""

from __future__ import annotations

import logging
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import av
    import numpy as np

    from scenecut.result import Shot, VideoInfo

log = logging.getLogger(__name__)

RATE = 16_000  # Hz, mono
HOP = 1_600  # samples: 0.1 s
BANDS = 40
N_FFT = 2_048
HOP_S = HOP / RATE

# Luma (0-255) and contrast (mean per-channel standard deviation) of a blank frame: black,
# white or a plain card.
BLANK_CONTRAST = 12.0
DARK, BRIGHT = 40.0, 215.0
WINDOW_S = 1.0  # blank picture counted this far either side of a cut
BLANK_SHARE = 0.9  # a shot this much blank is a blank shot
DIP_S = 0.5  # the luma dip is looked for this far either side
AUDIO_S = 2.0  # sound compared over this long before and after a cut
QUIET_S = 0.3  # the loudness minimum is looked for this close to a cut

FEATURES = ("blank_s", "dip", "audio_change", "audio_level", "audio_quiet")
AUDIO_FEATURES = FEATURES[2:]


class PictureTrack:
    """Mean luma and contrast of every frame, from the detector's small BGR image."""

    def __init__(self) -> None:
        self.luma = array("f")
        self.contrast = array("f")

    def add(self, image: np.ndarray) -> None:
        import cv2

        mean, std = cv2.meanStdDev(image)
        if len(mean) >= 3:  # BGR
            luma = 0.114 * mean[0, 0] + 0.587 * mean[1, 0] + 0.299 * mean[2, 0]
            contrast = (std[0, 0] + std[1, 0] + std[2, 0]) / 3
        else:
            luma, contrast = mean[0, 0], std[0, 0]
        self.luma.append(float(luma))
        self.contrast.append(float(contrast))

    def luma_array(self) -> np.ndarray:
        import numpy as np

        return np.frombuffer(self.luma, dtype=np.float32)

    def blank(self) -> np.ndarray:
        """``[frames]`` bool: black, white or flat (the one rule for a blank frame)."""
        import numpy as np

        luma = self.luma_array()
        contrast = np.frombuffer(self.contrast, dtype=np.float32)
        return (contrast < BLANK_CONTRAST) & ((luma < DARK) | (luma > BRIGHT))


class AudioTrack:
    """Log-mel band energies and loudness of the sound, per 0.1 s, built as frames arrive.

    Samples go into one preallocated block of BLOCK_HOPS x 0.1 s, analysed when full (one FFT
    call per 6.4 s of sound); results go into preallocated chunks. A long film thus makes no
    stream of small allocations beside the decoder's large frames (which fragmented the heap:
    +100 MB over an hour when each 0.1 s had its own arrays).
    """

    MAX_ERRORS = 100
    BLOCK_HOPS = 64
    CHUNK_HOPS = 9000  # 15 minutes of results per chunk

    def __init__(self) -> None:
        self.start: float | None = None  # seconds (stream time) of the first sample kept
        self.errors = 0
        self.failed = False
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []  # (mel float16, loudness)
        self._hops = 0
        self._block = None  # [BLOCK_HOPS * HOP] float32 samples waiting for analysis
        self._filled = 0
        self._resampler = None
        self._next: float | None = None  # stream time the next sample should have

    @property
    def hops(self) -> int:
        """0.1 s blocks analysed so far."""
        return self._hops

    @property
    def waiting(self) -> int:
        """Samples held for analysis (less than BLOCK_HOPS x HOP)."""
        return self._filled

    def packet(self, packet: av.Packet) -> None:
        """Decode one audio packet; damage costs the sound evidence, never the video."""
        if self.failed:
            return
        try:
            for frame in packet.decode():
                self._add(frame)
        except Exception as exc:  # any audio failure only removes a cue
            self.errors += 1
            log.debug("audio packet skipped (%s)", exc)
            if self.errors > self.MAX_ERRORS:
                self.failed = True

    def _add(self, frame: av.AudioFrame) -> None:
        import av
        import numpy as np

        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
            self._block = np.zeros(self.BLOCK_HOPS * HOP, dtype=np.float32)
        time = frame.time
        for out in self._resampler.resample(frame):
            samples = out.to_ndarray().reshape(-1)
            if self.start is None:
                self.start = float(time) if time is not None else 0.0
                self._next = self.start
            elif time is not None and self._next is not None and time > self._next + HOP_S:
                # A hole in the sound (a damaged stretch, a join): silence, so later hops keep
                # their times.
                self._silence(min(int((time - self._next) * RATE), 600 * RATE))
            self._push(samples)
            time = None  # a second resampled frame continues the first

    def _silence(self, count: int) -> None:
        while count > 0:
            n = min(count, len(self._block) - self._filled)
            self._block[self._filled : self._filled + n] = 0
            self._advance(n)
            count -= n

    def _push(self, samples: np.ndarray) -> None:
        while len(samples):
            n = min(len(samples), len(self._block) - self._filled)
            self._block[self._filled : self._filled + n] = samples[:n]
            self._advance(n)
            samples = samples[n:]

    def _advance(self, n: int) -> None:
        self._next = (self._next or 0.0) + n / RATE
        self._filled += n
        if self._filled == len(self._block):
            self._analyse(self.BLOCK_HOPS)

    def _analyse(self, count: int) -> None:
        """Analyse the first ``count`` whole hops of the block and drop them from it."""
        import numpy as np

        if not count:
            return
        blocks = self._block[: count * HOP].reshape(count, HOP)
        power = np.abs(np.fft.rfft(blocks * _hann(), n=N_FFT, axis=1)) ** 2
        # einsum, not @: a BLAS call here would wake BLAS's spinning worker threads, which
        # took CPU from the decoder and the detector (+50% wall time on the 10-minute film).
        mel = np.log10(np.einsum("hf,fb->hb", power.astype(np.float32), _mel_bank()) + 1e-10)
        rms = np.sqrt(np.mean(np.square(blocks, dtype=np.float64), axis=1))
        loud = 20 * np.log10(rms + 1e-5)
        done = 0
        while done < count:
            if not self._chunks or self._hops % self.CHUNK_HOPS == 0:
                self._chunks.append(
                    (
                        np.empty((self.CHUNK_HOPS, BANDS), np.float16),
                        np.empty(self.CHUNK_HOPS, np.float32),
                    )
                )
            at = self._hops % self.CHUNK_HOPS
            n = min(count - done, self.CHUNK_HOPS - at)
            self._chunks[-1][0][at : at + n] = mel[done : done + n]
            self._chunks[-1][1][at : at + n] = loud[done : done + n]
            self._hops += n
            done += n
        rest = self._filled - count * HOP
        self._block[:rest] = self._block[count * HOP : self._filled]
        self._filled = rest

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``[hops, BANDS]`` log10 mel energies and ``[hops]`` loudness in dB (float32); the
        whole 0.1 s blocks still waiting are analysed first."""
        import numpy as np

        if self._block is not None:
            self._analyse(self._filled // HOP)
        if not self._chunks:
            return np.zeros((0, BANDS), np.float32), np.zeros(0, np.float32)
        last = self._hops - (len(self._chunks) - 1) * self.CHUNK_HOPS
        mel = [
            m if i < len(self._chunks) - 1 else m[:last] for i, (m, _) in enumerate(self._chunks)
        ]
        loud = [
            x if i < len(self._chunks) - 1 else x[:last] for i, (_, x) in enumerate(self._chunks)
        ]
        return np.concatenate(mel).astype(np.float32), np.concatenate(loud)


def _hann():
    import numpy as np

    return np.hanning(HOP).astype(np.float32)


def _mel_bank():
    """``[N_FFT // 2 + 1, BANDS]`` triangular mel filters, 50 Hz to 7.6 kHz."""
    import numpy as np

    global _BANK
    if _BANK is None:

        def mel(f):
            return 2595 * np.log10(1 + f / 700)

        edges_mel = np.linspace(mel(50.0), mel(7600.0), BANDS + 2)
        edges = 700 * (10 ** (edges_mel / 2595) - 1)
        freqs = np.fft.rfftfreq(N_FFT, 1 / RATE)
        bank = np.zeros((len(freqs), BANDS), dtype=np.float32)
        for b in range(BANDS):
            lo, mid, hi = edges[b : b + 3]
            up = (freqs - lo) / (mid - lo)
            down = (hi - freqs) / (hi - mid)
            bank[:, b] = np.maximum(0, np.minimum(up, down))
        _BANK = bank
    return _BANK


_BANK = None


@dataclass
class Evidence:
    """Per-frame picture numbers and per-hop sound numbers of one video, aligned in time."""

    picture: PictureTrack = field(default_factory=PictureTrack)
    sound: AudioTrack | None = None  # None: no audio stream
    video_start: float = 0.0  # stream seconds of frame 0, to align the sound with the frames

    @property
    def audio(self) -> bool:
        if self.sound is None or self.sound.failed:
            return False
        return self.sound.hops > 0 or self.sound.waiting >= HOP

    def gaps(self, video: VideoInfo, shots: list[Shot]) -> Gaps:
        """What a scorer needs of the evidence for these shots."""
        return Gaps(gap_evidence(self, video, shots), self.audio, blank_shots(self, shots))


@dataclass(frozen=True)
class Gaps:
    """The evidence a scorer gets: ``table`` ``[gaps, len(FEATURES)]`` (``gap_evidence``),
    whether there was sound, and which shots are blank (``blank_shots``)."""

    table: np.ndarray
    audio: bool
    blank: np.ndarray


def blank_shots(evidence: Evidence, shots: list[Shot]) -> np.ndarray:
    """``[shots]`` bool: at least BLANK_SHARE of the shot's frames are blank (a black leader,
    the black between a fade-out and a fade-in, a white flash, a plain card)."""
    import numpy as np

    blank = evidence.picture.blank()
    return np.array(
        [s.end <= len(blank) and blank[s.start : s.end].mean() >= BLANK_SHARE for s in shots],
        dtype=bool,
    )


def gap_evidence(evidence: Evidence, video: VideoInfo, shots: list[Shot]) -> np.ndarray:
    """Per shot gap (after shot i): the FEATURES, in that order.

    - ``blank_s``: seconds of blank frames (black, white or flat) within WINDOW_S of the cut;
    - ``dip``: how far the luma falls near the cut below the darker of the two shots' median
      luma (0: not at all, 1: to black), so a fade through black counts even when no frame is
      quite blank;
    - ``audio_change``: distance between the mean log-mel spectra of the AUDIO_S before and
      after the cut (log10 units per band), relative to the film's median over all gaps;
    - ``audio_level``: the loudness step across the cut, dB;
    - ``audio_quiet``: how far (dB) the quietest 0.1 s within QUIET_S of the cut lies below the
      film's median loudness: a cut into silence.
    Without sound the three audio columns are 0 (``Evidence.audio`` says so).
    """
    import numpy as np

    n = len(shots)
    out = np.zeros((max(0, n - 1), len(FEATURES)), dtype=np.float32)
    if n < 2:
        return out
    luma = evidence.picture.luma_array()
    blank = evidence.picture.blank()
    frames = len(luma)
    fps = float(video.fps)
    window, dip_w = max(1, round(WINDOW_S * fps)), max(1, round(DIP_S * fps))
    cuts = [s.start for s in shots[1:]]
    medians = [float(np.median(luma[s.start : s.end])) if s.end <= frames else 0.0 for s in shots]
    for g, c in enumerate(cuts):
        if c > frames:
            continue
        out[g, 0] = blank[max(0, c - window) : c + window].sum() / fps
        near = luma[max(0, c - dip_w) : c + dip_w]
        level = min(medians[g], medians[g + 1])
        if near.size and level > 1:
            out[g, 1] = float(np.clip(1 - near.min() / level, 0, 1))
    if evidence.audio:
        out[:, 2:] = _audio_columns(evidence, video, cuts)
    return out


def sound_offset(evidence: Evidence) -> float:
    """Seconds of the sound track at the video's frame 0."""
    return evidence.video_start - (evidence.sound.start or 0.0)


def sound_change(
    mel: np.ndarray, offset: float, times_s: list[float], span_s: float = AUDIO_S
) -> np.ndarray:
    """``[times]`` float32: distance between the mean log-mel spectra (``mel``, from
    ``AudioTrack.arrays``) of the ``span_s`` before and after each video time (log10 units per
    band), relative to the median over all the times; 0 where the sound does not reach."""
    import numpy as np

    hops, span = len(mel), round(span_s / HOP_S)
    out = np.zeros(len(times_s), dtype=np.float32)
    for g, t in enumerate(times_s):
        h = round((t + offset) / HOP_S)
        if 0 < h < hops:
            before, after = mel[max(0, h - span) : h], mel[h : min(hops, h + span)]
            out[g] = np.linalg.norm(before.mean(0) - after.mean(0)) / BANDS**0.5
    typical = float(np.median(out)) if len(out) else 0.0
    out /= max(typical, 1e-3)
    return out


def _audio_columns(evidence: Evidence, video: VideoInfo, cuts: list[int]) -> np.ndarray:
    import numpy as np

    mel, loud = evidence.sound.arrays()
    hops = len(loud)
    offset = sound_offset(evidence)
    times = [float(video.time_of(c)) for c in cuts]
    span, quiet = round(AUDIO_S / HOP_S), max(1, round(QUIET_S / HOP_S))
    median_loud = float(np.median(loud))
    columns = np.zeros((len(cuts), 3), dtype=np.float32)
    columns[:, 0] = sound_change(mel, offset, times)
    for g, t in enumerate(times):
        h = round((t + offset) / HOP_S)
        if h <= 0 or h >= hops:
            continue
        before, after = slice(max(0, h - span), h), slice(h, min(hops, h + span))
        columns[g, 1] = abs(float(loud[before].mean() - loud[after].mean()))
        columns[g, 2] = max(0.0, median_loud - float(loud[max(0, h - quiet) : h + quiet].min()))
    return columns
