"""Where an architecture artifact came from: `"provenance"` at the top of genotype.json / macro.json.

Values: `searched` (written by a search stage), `random` (random sampling baseline), `preset`
(hand-made or calibrated: the shipped `paper_like` genotype, `default_macro`). Files without
the field are read by their `search` block (older runs), else `unknown`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rspnet.errors import ArtifactError
from rspnet.utils.io import read_json

PROVENANCES = ("searched", "random", "preset")
UNKNOWN = "unknown"


def of_artifact(d: Any) -> str:
    """Provenance of a loaded genotype/macro dict."""
    if not isinstance(d, dict):
        return UNKNOWN
    value = d.get("provenance")
    if value in PROVENANCES:
        return str(value)
    search = d.get("search") if isinstance(d.get("search"), dict) else {}
    if search.get("source") == "default_macro" or "not searched" in str(search.get("method", "")):
        return "preset"
    epochs = search.get("epochs")
    if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 and search.get("dataset"):
        return "searched"  # written by a search stage before the field existed
    return UNKNOWN


def of_file(path: str | Path | None, default: str = UNKNOWN) -> str:
    """Provenance of an artifact file; `default` when no file is given (e.g. macro: default_macro)."""
    if not path:
        return default
    try:
        return of_artifact(read_json(path, "architecture"))
    except ArtifactError:  # a missing/broken file is reported where it is loaded
        return UNKNOWN


def search_epochs(path: str | Path | None) -> int | None:
    """`search.epochs` of an artifact file (the epochs its search ran), None if unknown."""
    if not path:
        return None
    try:
        epochs = read_json(path, "architecture").get("search", {}).get("epochs")
    except (ArtifactError, AttributeError):
        return None
    return int(epochs) if isinstance(epochs, int) and not isinstance(epochs, bool) else None
