"""macro.select=score|perturb: removal of one input, the perturbation ranking, its evidence, the null labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rspnet.errors import ArtifactError, ConfigError
from rspnet.genotype import Genotype, MacroArch
from rspnet.lit.macro_select import PerturbResult, perturbation_drops
from rspnet.models.macro_supernet import MacroSupernet
from rspnet.search_space.attention import PathAttention
from rspnet.search_space.trellis import STEM
from rspnet.stages.macro_search import run as run_macro_search

REPO = Path(__file__).resolve().parents[2]
TINY = ["stage=macro_search", "debug=tiny", "model.layers=2"]
CELL = ["conv_3x3", "dw_conv_3x3", "skip_connect"]


@pytest.fixture
def genotype_file(tmp_path: Path) -> Path:
    return Genotype.from_ops(CELL, rsp=True, search={"dataset": "synthetic"}).save(tmp_path / "genotype.json")


def test_dropping_a_candidate_renormalises_the_others() -> None:
    torch.manual_seed(0)
    pam = PathAttention(channels=4, num_candidates=3)
    zs = [torch.randn(2, 4, 3, 3) + i for i in range(3)]
    _, w = pam(zs)
    out, w_drop = pam(zs, drop=1)
    assert torch.all(w_drop[:, 1] == 0)
    kept = w[:, [0, 2]]
    assert torch.allclose(w_drop[:, [0, 2]], kept / kept.sum(-1, keepdim=True), atol=1e-6)
    assert torch.allclose(out, w_drop[:, 0, None, None, None] * zs[0] + w_drop[:, 2, None, None, None] * zs[2])
    with pytest.raises(ValueError, match="cannot drop candidate 0 of a node with 1"):
        PathAttention(channels=4, num_candidates=1)([zs[0]], drop=0)


def test_forward_without_is_a_full_forward_with_the_input_removed() -> None:
    torch.manual_seed(0)
    net = MacroSupernet(Genotype.from_ops(CELL), num_classes=5, base_width=4, scales=[4, 8, 16], layers=3).train()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        intact, feats, aligned = net.forward_cached(x)
        assert torch.equal(intact, net(x))
        for node, k in [((2, 8), 0), ((2, 16), 3), ((3, 4), 6)]:
            reused = net.forward_without(node, k, (32, 32), feats, aligned)
            net._drop = (node, k)  # the same removal, every node recomputed
            full = net(x)
            net._drop = None
            assert torch.allclose(reused, full, atol=1e-5) and not torch.allclose(reused, intact, atol=1e-4)


class HarmNet(torch.nn.Module):
    """A stand-in supernet: removing candidate k of node (2, 4) makes the logits `harm[k]` less confident."""

    harm = (0.5, 3.0, 0.0, 1.5)

    def __init__(self, y: torch.Tensor) -> None:
        super().__init__()
        self.candidates = {(1, 4): [STEM], (2, 4): [STEM, (1, 4), (1, 8), (1, 16)]}
        self.onehot = torch.nn.functional.one_hot(y, 3).permute(0, 3, 1, 2).float()

    def forward_cached(self, x: torch.Tensor) -> tuple:
        return 4.0 * self.onehot, {}, {}

    def forward_without(self, node: tuple, k: int, size: tuple, feats: dict, aligned: dict) -> torch.Tensor:
        assert node == (2, 4)
        # the worst removal also flips a quarter of the pixels to a wrong class (an mIoU drop)
        wrong = torch.roll(self.onehot, 1, dims=1) if self.harm[k] == max(self.harm) else 0.0
        logits = (4.0 - self.harm[k]) * self.onehot
        if torch.is_tensor(wrong):
            logits[..., :2] = 6.0 * wrong[..., :2]
        return logits


@pytest.mark.parametrize("metric", ["loss", "miou"])
def test_perturbation_ranks_the_removal_that_hurts_most_first(metric: str) -> None:
    y = torch.randint(0, 3, (2, 4, 8), generator=torch.Generator().manual_seed(0))
    net = HarmNet(y)
    result = perturbation_drops(net, [(torch.zeros(2, 3, 4, 8), y)] * 3, 3, 255, metric=metric)
    drops = result.drops[(2, 4)]
    assert max(range(4), key=lambda k: drops[k]) == 1 and result.drops[(1, 4)] == [0.0]
    if metric == "loss":  # every harm shows as a loss increase, in the harm's order
        assert sorted(range(4), key=lambda k: -drops[k]) == [1, 3, 0, 2] and drops[2] == pytest.approx(0.0, abs=1e-9)
    else:  # only the removal that flips pixels changes the argmax
        assert drops[1] > 0 and drops[0] == drops[2] == drops[3] == 0.0
    assert result.batches == 3 and result.samples == 6 and result.halves is not None
    assert result.halves[0][(2, 4)] == pytest.approx(drops)  # the same batch on both halves


class CoarseHarmNet(HarmNet):
    """HarmNet whose logits come at half the label's size (inputs at `dataset.resize_long`, labels native)."""

    def forward_cached(self, x: torch.Tensor) -> tuple:
        logits, feats, aligned = super().forward_cached(x)
        return torch.nn.functional.avg_pool2d(logits, 2), feats, aligned

    def forward_without(self, node: tuple, k: int, size: tuple, feats: dict, aligned: dict) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(super().forward_without(node, k, size, feats, aligned), 2)


def test_perturbation_scores_logits_at_the_labels_size() -> None:
    # the study recipe feeds 120x160 inputs and scores at the labels' 240x320; this crashed the macro stage
    y = torch.randint(0, 3, (2, 4, 8), generator=torch.Generator().manual_seed(0))
    result = perturbation_drops(CoarseHarmNet(y), [(torch.zeros(2, 3, 2, 4), y)] * 2, 3, 255, metric="loss")
    drops = result.drops[(2, 4)]
    assert max(range(4), key=lambda k: drops[k]) == 1 and all(d >= -1e-6 for d in drops)


def test_macro_arch_keeps_the_inputs_with_the_largest_drops(make_cfg, genotype_file: Path) -> None:
    from rspnet.lit.macro_module import MacroSearchModule

    cfg = make_cfg(*TINY, f"genotype={genotype_file}", "macro.select=perturb")
    net = MacroSupernet.from_cfg(cfg, Genotype.load(genotype_file), 19)
    module = MacroSearchModule(net, cfg)
    drops = {node: [0.1 * ((7 * k) % 5) for k in range(len(cands))] for node, cands in net.candidates.items()}
    halves = ({n: list(d) for n, d in drops.items()}, {n: [-v for v in d] for n, d in drops.items()})
    module.perturbation = PerturbResult("loss", drops, halves, intact=2.0, batches=2, samples=8, seconds=0.1)
    macro = module.macro_arch()
    for node in macro.nodes:
        cands = net.candidates[(node.layer, node.scale)]
        expected = sorted(range(len(cands)), key=lambda k: -drops[(node.layer, node.scale)][k])[:2]
        assert [(i.layer, i.scale) for i in node.inputs] == [cands[k] for k in expected]
    assert macro.search["select"] == "perturb" and macro.search["selection_score"] == "perturb_loss_drop"
    perturb = macro.search["evidence"]["perturb"]
    assert set(perturb["per_node"]) == {"(2,4)", "(2,8)", "(2,16)", "(2,32)"}  # layer-1 nodes have no choice
    assert perturb["split_half"]["rows"] == 4 and perturb["split_half"]["spearman"] == -1.0  # opposite halves
    assert perturb["drops"]["(2,4)"]["(1,8)"] == pytest.approx(drops[(2, 4)][2])


def test_perturb_search_records_its_evidence_and_stays_loadable(make_cfg, genotype_file: Path) -> None:
    cfg = make_cfg(
        *TINY,
        f"genotype={genotype_file}",
        "trainer.max_epochs=1",
        "dataset.batch_size=2",  # two arch steps: one per half of the path-score evidence
        "dataset.val_batch_size=1",
        "macro.select=perturb",
        "macro.perturb_batches=3",
    )
    result = run_macro_search(cfg)
    macro = MacroArch.load(result["macro"])
    evidence = macro.search["evidence"]
    scores = evidence["path_scores"]
    assert scores["half_samples"] == [2, 2] and set(scores["split_half"]) == {"spearman", "top1_agreement", "rows"}
    assert set(scores["mean"]) == {"entropy", "top1", "margin"} and len(scores["per_node"]) == 4
    perturb = evidence["perturb"]
    assert perturb["batches"] == 3 and perturb["samples"] == 3 and perturb["split"] == "arch"
    assert perturb["split_half"]["rows"] == 4 and perturb["seconds"] > 0
    for node in macro.nodes:  # the kept inputs are the largest drops, in order
        if node.layer == 2:
            drops = perturb["drops"][f"({node.layer},{node.scale})"]
            assert [i.score for i in node.inputs] == pytest.approx(sorted(drops.values(), reverse=True)[:2], abs=1e-6)
    search = json.loads((Path(cfg.paths.output_dir) / "search.json").read_text())
    assert search["select"] == "perturb" and search["evidence"] == evidence == result["evidence"]
    ckpt = torch.load(result["checkpoint"], map_location="cpu", weights_only=False)
    halves = ckpt["rspnet"]["path_score_halves"]
    assert [float(h["total"][-1]) for h in halves] == [2.0, 2.0]


def test_null_search_scores_paths_and_perturbs_on_null_labels(make_cfg, genotype_file: Path, monkeypatch) -> None:
    import rspnet.lit.macro_module as macro_module
    import rspnet.lit.search_module as search_module
    from rspnet.search.bilevel import Architect

    made: list[torch.Tensor] = []
    real_null = search_module.null_labels

    def spy_null(y: torch.Tensor, *args) -> torch.Tensor:
        made.append(real_null(y, *args))
        return made[-1]

    monkeypatch.setattr(search_module, "null_labels", spy_null)
    monkeypatch.setattr(macro_module, "null_labels", spy_null)
    arch_labels, scoring_labels = [], []
    arch_step = Architect.arch_step
    monkeypatch.setattr(
        Architect,
        "arch_step",
        lambda self, b, w=None, forward=None: arch_labels.append(b[1]) or arch_step(self, b, w, forward),
    )
    drops = macro_module.perturbation_drops

    def spy_drops(net, batches, *args, **kwargs):
        batches = list(batches)
        scoring_labels.extend(y for _, y in batches)
        return drops(net, batches, *args, **kwargs)

    monkeypatch.setattr(macro_module, "perturbation_drops", spy_drops)
    cfg = make_cfg(
        *TINY, f"genotype={genotype_file}", "trainer.max_epochs=1", "search.null=true", "macro.select=perturb"
    )
    result = run_macro_search(cfg)
    # every arch step (whose forward the path scores come from) and every scoring batch saw null labels
    assert arch_labels and scoring_labels and len(made) == len(arch_labels) + len(scoring_labels)
    assert all(any(y is m for m in made) for y in arch_labels + scoring_labels)
    ckpt = torch.load(result["checkpoint"], map_location="cpu", weights_only=False)
    assert ckpt["rspnet"]["path_scores"]["total"][-1] == 4  # scored on the arch steps above
    assert MacroArch.load(result["macro"]).search["null"] == "labels"  # search.null=true is the label null


def test_scoring_split_select_is_the_held_out_slice_never_val(make_cfg, genotype_file: Path) -> None:
    common = [
        *TINY,
        f"genotype={genotype_file}",
        "model.layers=2",
        "macro.select=perturb",
        "macro.perturb_split=select",
    ]
    result = run_macro_search(make_cfg(*common, "trainer.max_epochs=1", "dataset.val_batch_size=1"))
    perturb = MacroArch.load(result["macro"]).search["evidence"]["perturb"]
    assert perturb["split"] == "select" and perturb["samples"] == 1  # the held-out slice: 10 % of 8 images
    with pytest.raises(ConfigError, match="macro.perturb_split=select: .*held-out slice"):
        run_macro_search(make_cfg(*common, "train.select=val"))


@pytest.mark.parametrize(
    "option", ["macro.select=foo", "macro.perturb_metric=acc", "macro.perturb_split=val", "macro.perturb_batches=0"]
)
def test_bad_select_options_are_config_errors(make_cfg, genotype_file: Path, option: str) -> None:
    extra = [] if option.startswith("macro.select") else ["macro.select=perturb"]
    with pytest.raises(ConfigError, match=option.replace("[", r"\[")) as info:
        run_macro_search(make_cfg(*TINY, f"genotype={genotype_file}", *extra, option))
    assert "\n" not in str(info.value)


def test_cli_bad_select_is_one_line_naming_the_option(rspnet_cli, tmp_path: Path) -> None:
    proc = rspnet_cli(
        "stage=macro_search", "debug=tiny", "macro.select=foo", f"paths.output_dir={tmp_path}", cwd=tmp_path
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rspnet: error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr
    assert "macro.select=foo" in errors[0] and "score | perturb" in errors[0]


def test_cli_perturb_search_writes_the_evidence(rspnet_cli, genotype_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [*TINY, f"genotype={genotype_file}", "trainer.max_epochs=1", "macro.select=perturb"]
    proc = rspnet_cli(*args, f"paths.output_dir={out}", "print_config=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    search = MacroArch.load(out / "macro.json").search
    assert search["select"] == "perturb" and search["selection_score"] == "perturb_loss_drop"
    assert set(search["evidence"]) == {"path_scores", "perturb"}
    for block in search["evidence"].values():
        assert {"per_node", "mean", "split_half"} <= set(block)
    assert set(search["evidence"]["perturb"]["drops"]) == {"(2,4)", "(2,8)", "(2,16)", "(2,32)"}
    assert json.loads((out / "search.json").read_text())["evidence"] == search["evidence"]


def test_macro_json_without_selection_keys_still_loads(tmp_path: Path) -> None:
    shipped = REPO / "experiments" / "genotypes" / "camvid_tiny_s0_macro.json"
    old = json.loads(shipped.read_text())
    assert "select" not in old.get("search", {}) and "evidence" not in old.get("search", {})
    assert MacroArch.load(shipped).layers == old["layers"]
    old["search"]["select"] = "best"
    (tmp_path / "macro.json").write_text(json.dumps(old))
    with pytest.raises(ArtifactError, match="field 'search.select': must be one of score, perturb"):
        MacroArch.load(tmp_path / "macro.json")
