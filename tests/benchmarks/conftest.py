"""`bench/` is a top-level folder run as `python -m bench.<name>`: make it importable here.

(This folder is not called tests/bench: pytest would import it as the package `bench` and
shadow the real one.)
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[2])
if REPO not in sys.path:
    sys.path.insert(0, REPO)
