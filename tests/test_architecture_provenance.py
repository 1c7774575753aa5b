"""Architecture provenance (searched | random | preset) in the artifacts, and normalised entropies."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rspnet.architecture import arch_provenance
from rspnet.errors import ArtifactError
from rspnet.genotype import Genotype, MacroArch, normalized_entropy
from rspnet.models.supernet import CellSupernet

OPS = ["conv_3x3", "dw_conv_3x3", "skip_connect"]


def test_provenance_round_trips_and_legacy_files_have_none(tmp_path: Path) -> None:
    g = Genotype.from_ops(OPS, rsp=True)
    assert Genotype.load(g.save(tmp_path / "legacy.json")).provenance is None
    assert "provenance" not in json.loads((tmp_path / "legacy.json").read_text())
    g.provenance = "random"
    assert Genotype.load(g.save(tmp_path / "g.json")).provenance == "random"
    assert arch_provenance(g.to_dict(), None) == {"genotype": "random", "macro": "unknown"}


@pytest.mark.parametrize("kind", ["genotype", "macro"])
def test_unknown_provenance_is_an_artifact_error(tmp_path: Path, kind: str) -> None:
    from omegaconf import OmegaConf

    from rspnet.models.derived import default_macro

    cfg = OmegaConf.create({"model": {"scales": [4, 8], "layers": 2}})
    d = (Genotype.from_ops(OPS, rsp=True) if kind == "genotype" else default_macro(cfg)).to_dict()
    d["provenance"] = "guessed"
    path = tmp_path / f"{kind}.json"
    path.write_text(json.dumps(d))
    loader = Genotype if kind == "genotype" else MacroArch
    with pytest.raises(ArtifactError, match=f"{path}: field 'provenance': must be one of searched, random, preset"):
        loader.load(path)


def test_default_macro_is_a_preset() -> None:
    from omegaconf import OmegaConf

    from rspnet.models.derived import default_macro

    assert default_macro(OmegaConf.create({"model": {"scales": [4, 8], "layers": 2}})).provenance == "preset"


def test_normalized_entropy_bounds() -> None:
    assert normalized_entropy([0.2] * 5) == pytest.approx(1.0)
    assert normalized_entropy([1, 0, 0, 0, 0]) == 0.0
    assert normalized_entropy([0.5, 0.5, 0, 0]) == pytest.approx(math.log(2) / math.log(4))


def test_alpha_temperature_sharpens_the_op_weights() -> None:
    torch.manual_seed(0)
    nets = [CellSupernet(5, base_width=4, scales=[4, 8], layers=1, alpha_temperature=t) for t in (1.0, 0.25)]
    nets[1].load_state_dict(nets[0].state_dict())
    with torch.no_grad():
        for net in nets:
            net.alpha.copy_(torch.linspace(-0.5, 0.5, 15).view(3, 5))
    plain, sharp = (net.alpha_entropy()["mean"] for net in nets)
    assert sharp < plain < 1.0
    g = nets[1].genotype({"seed": 3})
    assert g.provenance == "searched" and g.search["alpha_temperature"] == 0.25 and g.search["seed"] == 3
    assert g.search["alpha_entropy"]["mean"] == sharp
    with pytest.raises(ValueError, match="alpha_temperature"):
        CellSupernet(5, base_width=4, scales=[4, 8], layers=1, alpha_temperature=0.0)
