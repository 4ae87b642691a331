"""Shared fixtures: small generated films with known shots and scenes, and broken inputs."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from scenecut.data.synth import FilmTruth, make_bad_inputs, make_film

# Films for scene tests: distinct places, 2-4 shots per scene, dialogue-style A B A B angles.
FILM = dict(n_scenes=4, shots_per_scene=(2, 4), shot_frames=(15, 30), width=192, height=108)


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
def _no_debug(monkeypatch):
    monkeypatch.delenv("SCENECUT_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", os.environ.get("COLUMNS", "120"))
