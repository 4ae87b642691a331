"""The version, in a module that imports nothing (read by writers and --version)."""

from __future__ import annotations

__version__ = "0.1.0"
