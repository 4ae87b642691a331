"""Shared fixtures: small generated films with known shots and scenes, and broken inputs.

Tests run one compute thread each: the suite's tiny networks, decoder, detector and embedding
threads share two cores, and torch's or OpenMP's own pools on top of them oversubscribe the CPU
(one tiny CRN test took 23 s with torch's default pool, 5.5 s with one thread). The variables
are set before torch loads, so the console-script subprocesses the tests start inherit them.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402

from scenecut.data.synth import FilmTruth, make_bad_inputs, make_film  # noqa: E402

# Films for scene tests: distinct places, 2-4 shots per scene, dialogue-style A B A B angles.
FILM = dict(n_scenes=4, shots_per_scene=(2, 4), shot_frames=(15, 30), width=192, height=108)


def pytest_configure(config):
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def film(tmp_path_factory) -> FilmTruth:
    """A 4-scene film with audio."""
    path = tmp_path_factory.mktemp("film") / "film.mp4"
    return make_film(path, seed=1, audio=True, **FILM)


@pytest.fixture(scope="session")
def films(tmp_path_factory) -> list[FilmTruth]:
    """Several films with different seeds, for accuracy over more than one example."""
    folder = tmp_path_factory.mktemp("films")
    return [make_film(folder / f"film{seed}.mp4", seed=seed, **FILM) for seed in range(10, 14)]


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory) -> dict[str, Path]:
    return make_bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="session")
def scenecut_exe() -> str:
    """The installed console script next to this interpreter."""
    exe = Path(sys.executable).parent / "scenecut"
    if not exe.exists():
        pytest.skip("the scenecut console script is not installed in this environment")
    return str(exe)


@pytest.fixture(autouse=True)
def _no_error_logs(caplog):
    """Fail any test that logged an ERROR: errors must be raised, not just logged."""
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture(autouse=True)
def _empty_weights_cache(monkeypatch, tmp_path_factory):
    """Tests never see the developer's pulled or imported weights (``--model auto`` would)."""
    monkeypatch.setenv("SCENECUT_HOME", str(tmp_path_factory.mktemp("scenecut_home")))


@pytest.fixture(autouse=True)
def _no_user_settings(monkeypatch, tmp_path_factory):
    """Tests never read the developer's settings (~/.config/scenecut/config.toml, a data root
    in ``$SCENECUT_DATA``): commands start from the built-in defaults."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    monkeypatch.delenv("SCENECUT_DATA", raising=False)


@pytest.fixture(autouse=True)
def _offline(request, monkeypatch):
    """No test reaches outside the machine: downloads are refused (``SCENECUT_OFFLINE``) except
    in tests marked ``loopback``, which point the registry at a server of their own."""
    if request.node.get_closest_marker("loopback") is None:
        monkeypatch.setenv("SCENECUT_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("SCENECUT_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "120")  # rich wraps tables and messages at this width
