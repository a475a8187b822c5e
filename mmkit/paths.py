"""Where the checkout is: a leaf module (imports nothing from mmkit), so any module can ask without a cycle."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository root of a source checkout
NOTEBOOKS = ROOT / "notebooks"

__all__ = ["NOTEBOOKS", "ROOT"]
