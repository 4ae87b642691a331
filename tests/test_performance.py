"""The performance plumbing: stage profile, the embedding thread, the network runner.

Speed itself is measured by bench/, not here; these tests check that the machinery is correct.
"""

from __future__ import annotations

import shutil
import subprocess
import threading

import pytest
import torch

import scenecut
from scenecut.errors import InputError
from scenecut.models.bassl import TinyEncoder
from scenecut.models.classic import ClassicEncoder
from scenecut.models.links import CoherenceScorer
from scenecut.models.runner import Runner, default_batch
from scenecut.profile import Stages


class _CountingEncoder(ClassicEncoder):
    """The classic encoder, recording which thread ran each batch and how big it was."""

    def __init__(self, fail_on_call: int | None = None):
        self.calls: list[tuple[str, int]] = []
        self.fail_on_call = fail_on_call

    def embed(self, keyframes):
        self.calls.append((threading.current_thread().name, keyframes.shape[0]))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise InputError("the encoder gave up")
        return super().embed(keyframes)


def test_profile_counts_every_decoded_frame_and_each_stage(film):
    stages = Stages()
    result = scenecut.segment(film.path, stages=stages)
    assert stages.frames == result.decoded_frames == film.frame_count
    assert stages.items["decode"] == film.frame_count
    assert stages.items["downscale"] == film.frame_count
    assert stages.items["embed"] == len(result.shots)  # shots embedded, in batches
    for stage in ("decode", "downscale", "detect", "keyframes", "embed", "score"):
        assert stages.seconds[stage] > 0, stage
    main_thread = sum(stages.seconds[s] for s in ("detect", "keyframes", "score"))
    assert main_thread <= stages.wall
    rows = {row["stage"]: row for row in stages.as_dict()["stages"]}
    assert rows["decode"]["thread"] == "decode" and rows["embed"]["thread"] == "embed"
    table = stages.table()
    assert "downscale" in table and f"{film.frame_count} decoded frames" in table


def test_embedding_runs_in_its_own_thread_and_keeps_shot_order(film):
    encoder = _CountingEncoder()
    threaded = scenecut.segment(film.path, scorer=CoherenceScorer(encoder))
    assert {name for name, _ in encoder.calls} == {"scenecut-embed"}
    assert sum(n for _, n in encoder.calls) == len(threaded.shots)
    plain = scenecut.segment(film.path, model="classic")
    assert threaded.boundary_scores == plain.boundary_scores
    assert threaded.scenes == plain.scenes


def test_an_encoder_error_reaches_the_caller_and_stops_the_thread(films):
    longest = max(films, key=lambda f: len(f.shot_cuts))
    before = {t.name for t in threading.enumerate()}
    encoder = _CountingEncoder(fail_on_call=1)
    with pytest.raises(InputError, match="gave up"):
        scenecut.segment(longest.path, scorer=CoherenceScorer(encoder))
    leftover = {t.name for t in threading.enumerate()} - before
    assert not {"scenecut-embed", "scenecut-decode"} & leftover


def test_runner_batches_and_matches_the_network():
    torch.manual_seed(0)
    net = TinyEncoder(8).eval()
    x = torch.randn(11, 3, 32, 32)
    runner = Runner(net, device="cpu", precision="fp32", batch_images=4, channels_last=False)
    with torch.inference_mode():
        expected = net(x)
    assert torch.allclose(runner(x), expected, atol=1e-6)
    assert default_batch("cpu") == 16 and Runner(net, device="cpu").batch_images == 16


@pytest.mark.skipif(
    not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile needs a C++ compiler"
)
def test_compiled_runner_compiles_once_for_every_batch_size():
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    net = TinyEncoder(8).eval()
    runner = Runner(net, device="cpu", precision="fp32", batch_images=4, compile=True)
    counters.clear()
    for n in (4, 3, 9, 1):  # full, short, several chunks with a short tail, one image
        x = torch.randn(n, 3, 32, 32)
        with torch.inference_mode():
            expected = net(x)
        assert torch.allclose(runner(x), expected, atol=1e-4)
    assert runner.compiled is not None  # it did not fall back to the plain network
    assert counters["stats"]["unique_graphs"] == 1


def test_segment_profile_option_prints_the_stage_table(scenecut_exe, film, tmp_path):
    proc = subprocess.run(
        [scenecut_exe, "segment", str(film.path), "-o", str(tmp_path), "--quiet", "--profile"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "profile of" in proc.stderr
    for stage in ("decode", "downscale", "detect", "keyframes", "embed"):
        assert f"\n{stage} " in proc.stderr
    assert "wall" in proc.stderr and f"{film.frame_count} decoded frames" in proc.stderr
    assert float(proc.stderr.split("\nwall ")[1].split(" s")[0]) > 0
