"""scenecut: cut long videos into scenes.

>>> import scenecut
>>> result = scenecut.segment("movie.mp4")
>>> [(s.start, s.end) for s in result.scenes]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from scenecut.segment import segment

__all__ = ["__version__", "segment"]


def __getattr__(name: str):
    # Keep `import scenecut` (and so `scenecut --help`) free of heavy imports.
    if name == "segment":
        from scenecut.segment import segment

        return segment
    raise AttributeError(name)
