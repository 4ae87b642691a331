"""The package's shape: no import cycles, arrows that point one way, light modules kept light.

Read from the source with ``ast`` (imports at any depth, in functions too), so a violation
fails here before it shows up as a slow ``--help`` or a torch import in a data-only job.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scenecut"
HEAVY = {"torch", "torchvision", "numpy", "av", "cv2", "scenedetect", "PIL", "safetensors"}
NETWORKS = {  # our modules that import torch at the top
    "scenecut.models.bassl",
    "scenecut.models.runner",
    "scenecut.models.inference",
    "scenecut.models.checkpoints",
    "scenecut.models.effnet",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@functools.cache
def _imports(path: Path, *, typing: bool = True) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in the file; ``from a import b``
    gives ``a.b`` when ``b`` is a module, else ``a``. ``if TYPE_CHECKING:`` imports count as
    module level, or are left out with ``typing=False`` (they never run)."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inner = {id(n) for n in ast.walk(node)}
            top = top | inner if typing else top - inner
            skip = set() if typing else inner
            break
    else:
        skip = set()
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.append((full if full in MODULES else node.module, id(node) in top))
    return out


def _own(module: str, *, top_only: bool = False) -> set[str]:
    targets = set()
    for name, at_top in _imports(MODULES[module]):
        if name.split(".")[0] == "scenecut" and (at_top or not top_only):
            target = _resolve(name)
            if target and target != module and not module.startswith(target + "."):
                targets.add(target)
    return targets


@functools.cache
def _heavy(module: str, seen: frozenset = frozenset()) -> bool:
    """Importing ``module`` loads a heavy third-party library (through its top-level imports)."""
    for name, at_top in _imports(MODULES[module], typing=False):
        if not at_top:
            continue
        if name.split(".")[0] in HEAVY:
            return True
        target = _resolve(name) if name.startswith("scenecut") else None
        if target and target != module and target not in seen and _heavy(target, seen | {module}):
            return True
    return False


def test_no_import_cycles():
    graph = {module: _own(module) for module in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert not cycles


def test_arrows_point_one_way():
    """cli -> pipeline -> models/output/video; research (data, train) -> inference, never back."""
    below = {  # a package (or module) and what it must never import
        "scenecut.models": ("scenecut.cli", "scenecut.output", "scenecut.data", "scenecut.train"),
        "scenecut.output": ("scenecut.cli", "scenecut.models", "scenecut.data", "scenecut.train"),
        "scenecut.data": ("scenecut.cli", "scenecut.train", *sorted(NETWORKS)),
        "scenecut.train": ("scenecut.cli",),
        "scenecut.segment": ("scenecut.cli", "scenecut.data", "scenecut.train"),
        "scenecut.evaluate": ("scenecut.cli", "scenecut.train"),
        "scenecut.shots": ("scenecut.cli", "scenecut.output", "scenecut.data", "scenecut.train"),
    }
    for base in ("result", "errors", "files", "version", "video", "profile"):
        below[f"scenecut.{base}"] = tuple(
            f"scenecut.{p}" for p in ("cli", "models", "output", "data", "train", "segment")
        )
    wrong = []
    for module in MODULES:
        for owner, banned in below.items():
            if module == owner or module.startswith(owner + "."):
                wrong += [
                    f"{module} -> {target}"
                    for target in _own(module)
                    if any(target == b or target.startswith(b + ".") for b in banned)
                ]
    assert not wrong


def test_data_never_imports_torch():
    """The data package (trees, ingest, synthetic films, puzzles) runs on machines without
    torch: not in its own imports, nor through any of ours it imports at the top."""
    for module in (m for m in MODULES if m.startswith("scenecut.data")):
        names = {name.split(".")[0] for name, _ in _imports(MODULES[module])}
        assert not names & {"torch", "torchvision"}, module
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES if m.startswith("scenecut.data"))
        + "print(','.join(m for m in ('torch', 'torchvision') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_only_heavy_modules_are_imported_inside_functions():
    """Our own modules are imported at the top, where a reader sees them; only a module that
    loads torch, numpy, av or the like at import may be imported inside a function, from a
    module that does not itself load it already."""
    hidden = []
    for module, path in MODULES.items():
        for name, at_top in _imports(path):
            target = _resolve(name) if name.startswith("scenecut") else None
            if target and not at_top and not (_heavy(target) and not _heavy(module)):
                hidden.append(f"{module} imports {target} inside a function")
    assert not hidden


def test_public_api_stays_importable_from_the_package():
    import scenecut

    for name in (
        "segment",
        "SegmentOptions",
        "InferenceOptions",
        "SegmentResult",
        "VideoInfo",
        "Shot",
        "Scene",
        "Settings",
        "load_result",
        "write_results",
        "__version__",
    ):
        assert hasattr(scenecut, name), name
    assert callable(scenecut.segment)
