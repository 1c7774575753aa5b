"""tests/scale: the repo root on sys.path, so `experiments` imports as it does under `python -m`."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
