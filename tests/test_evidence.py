"""Transition and sound evidence, gathered in the single decode pass (scenecut.evidence)."""

from __future__ import annotations

import subprocess

import av
import numpy as np
import pytest

import scenecut
from scenecut.data.synth import make_film
from scenecut.evidence import FEATURES, HOP, HOP_S, WINDOW_S, AudioTrack, Evidence
from scenecut.models.classic import ClassicEncoder
from scenecut.models.links import CoherenceScorer
from scenecut.video import decode, ffmpeg_exe


class Recorder(CoherenceScorer):
    """The classic links, asking for evidence and keeping the table it was given."""

    wants_evidence = True

    def __init__(self):
        super().__init__(ClassicEncoder())
        self.seen = None

    def score(self, embeddings, gaps=None):
        self.seen = (gaps.table, gaps.audio)
        return super().score(embeddings)


def _evidence(path):
    scorer = Recorder()
    result = scenecut.segment(path, scorer=scorer)
    table, audio = scorer.seen
    return result, table, audio


@pytest.fixture(scope="module")
def av_film(tmp_path_factory):
    path = tmp_path_factory.mktemp("ev") / "av.mp4"
    # Shots of 2 s or more: the sound compared either side of a cut inside a scene (AUDIO_S)
    # is then all that scene's.
    truth = make_film(
        path, seed=5, n_scenes=5, shot_frames=(50, 70), fades=True, audio=True, objects=False
    )
    return path, truth


def test_fades_and_sound_changes_show_at_scene_changes(av_film):
    path, truth = av_film
    result, table, audio = _evidence(path)
    assert audio
    assert table.shape == (len(result.shots) - 1, len(FEATURES))
    assert np.isfinite(table).all()
    starts = [s.start for s in result.shots]
    assert len(starts) == len(truth.shot_starts)  # fade cuts may land a frame off

    def near(frame, frames):
        return any(abs(frame - f) <= 2 for f in frames)

    fade_cuts = {end - (end - first) // 2 for first, end in truth.fades}
    scene_gaps = [g for g, s in enumerate(starts[1:]) if near(s, truth.scene_starts[1:])]
    inner = [g for g in range(len(starts) - 1) if g not in scene_gaps]
    faded = [g for g in scene_gaps if near(starts[g + 1], fade_cuts)]
    blank, dip, change = (FEATURES.index(n) for n in ("blank_s", "dip", "audio_change"))
    assert faded, "the film has a fade"
    for g in faded:  # a fade through black: blank frames and a luma dip to black at the cut
        assert table[g, blank] > 0.05 and table[g, dip] > 0.8, table[g]
    # Hard cuts inside a scene, more than WINDOW_S from any fade: no blank picture.
    reach = round(WINDOW_S * float(truth.fps))
    clear = [
        g
        for g in inner
        if all(starts[g + 1] - reach > e or starts[g + 1] + reach < f for f, e in truth.fades)
    ]
    assert clear and (table[clear, blank] == 0).all(), table[:, blank]
    # The tone changes with the place: every scene change sounds more different than any cut
    # inside a scene.
    assert table[scene_gaps, change].min() > table[inner, change].max(), table[:, change]


def test_without_an_audio_stream_the_cue_is_absent(tmp_path):
    path = tmp_path / "mute.mp4"
    make_film(path, seed=2, n_scenes=3, fades=True, audio=False, objects=False)
    result, table, audio = _evidence(path)
    assert not audio
    assert (table[:, FEATURES.index("audio_change") :] == 0).all()
    assert (table[:, FEATURES.index("dip")] >= 0).all() and len(result.scenes) >= 1


def test_silence_is_not_an_error(tmp_path):
    src = tmp_path / "src.mp4"
    make_film(src, seed=3, n_scenes=3, audio=False, objects=False)
    path = tmp_path / "silent.mp4"
    cmd = [ffmpeg_exe(), "-v", "error", "-i", str(src), "-f", "lavfi", "-i", "anullsrc=r=44100"]
    subprocess.run(
        [*cmd, "-shortest", "-c:v", "copy", "-c:a", "aac", str(path)], check=True, timeout=60
    )
    _, table, audio = _evidence(path)
    assert audio  # there is sound to analyse, and it is silence
    assert np.isfinite(table).all()
    assert (table[:, FEATURES.index("audio_level")] < 1).all()


def test_sound_comes_from_the_one_decode_pass(av_film):
    """The audio packets reach the sink while the video frames are decoded: the container is
    read once, every 0.1 s of sound is analysed, and the samples held wait in one bounded
    block."""
    path, truth = av_film
    track = AudioTrack()
    seen_by_frame = []
    _, frames = decode(path, audio=track)
    for _frame in frames:
        seen_by_frame.append(track.hops)
        assert track.waiting < AudioTrack.BLOCK_HOPS * HOP
    assert seen_by_frame[len(seen_by_frame) // 2] > 0  # sound analysed before the video ended
    mel, loud = track.arrays()
    assert track.waiting < HOP
    seconds = truth.frame_count / float(truth.fps)
    assert abs(track.hops - seconds / HOP_S) <= 3
    assert mel.shape == (track.hops, 40) and loud.shape == (track.hops,)
    assert np.isfinite(mel).all() and np.isfinite(loud).all()


def test_results_cross_chunk_boundaries_intact(monkeypatch):
    """Hops analysed into several result chunks come back in order, none lost."""
    monkeypatch.setattr(AudioTrack, "CHUNK_HOPS", 5)
    monkeypatch.setattr(AudioTrack, "BLOCK_HOPS", 3)
    track = AudioTrack()
    track._block = np.zeros(3 * HOP, dtype=np.float32)
    rng = np.random.default_rng(0)
    levels = [0.001 * 2**k for k in range(13)]  # each hop 6 dB louder than the one before
    for level in levels:
        track._push((rng.choice([-1.0, 1.0], HOP) * level).astype(np.float32))
    track._push(np.zeros(HOP // 2, dtype=np.float32))  # half a hop: not analysed
    _, loud = track.arrays()
    assert len(loud) == 13 and np.allclose(np.diff(loud), 20 * np.log10(2), atol=0.1)


def test_a_broken_audio_packet_only_loses_the_cue():
    track = AudioTrack()
    for _ in range(AudioTrack.MAX_ERRORS + 1):
        track.packet(av.Packet(b"\x00garbage"))  # no decoder: PyAV raises, the track counts
    assert track.failed and track.hops == 0
    evidence = Evidence(sound=track)
    assert not evidence.audio
