"""stage=macro_search: fast_dev_run, artifacts, checkpointed beta and scores, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rspnet.errors import ArtifactError, ConfigError
from rspnet.genotype import Genotype, MacroArch
from rspnet.stages.macro_search import run as run_macro_search

# synthetic data small enough for a second per epoch on one core
TINY = ["stage=macro_search", "debug=tiny", "model.layers=2"]


@pytest.fixture
def genotype_file(tmp_path: Path) -> Path:
    """A genotype.json as stage 1 writes it."""
    genotype = Genotype.from_ops(["conv_3x3", "dw_conv_3x3", "skip_connect"], rsp=True, search={"dataset": "synthetic"})
    return genotype.save(tmp_path / "genotype.json")


def test_fast_dev_run_writes_macro_json_and_pictures(make_cfg, genotype_file: Path, monkeypatch) -> None:
    import rspnet.utils.loggers

    logged = []
    monkeypatch.setattr(
        rspnet.utils.loggers, "log_image", lambda lg, key, image, step=None: logged.append((key, image))
    )
    cfg = make_cfg(*TINY, f"genotype={genotype_file}", "trainer.fast_dev_run=true", "logger=csv")
    result = run_macro_search(cfg)
    out = Path(cfg.paths.output_dir)
    macro = MacroArch.load(out / "macro.json")
    assert result["macro"] == str(out / "macro.json")
    assert macro.layers == 2 and macro.scales == [4, 8, 16, 32] and macro.top_k == 2
    assert len(macro.nodes) == 2 * 4
    for node in macro.nodes:
        # layer-1 nodes have one candidate (the stem); later ones keep the top 2 by score
        assert len(node.inputs) == (1 if node.layer == 1 else 2)
        scores = [i.score for i in node.inputs]
        assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    assert macro.search["score_source"] == "arch_path_weights"
    assert macro.search["genotype"] == str(genotype_file)
    for name in ("trellis.png", "beta.png", "beta_evolution.png", "path_evolution.png", "learning_curves.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    (snapshot,) = json.loads((out / "arch_history.json").read_text())["epochs"]  # one per epoch
    assert snapshot["epoch"] == 1 and set(snapshot) == {"epoch", "beta", "path_scores"}
    # the folder holds the whole architecture: a byte copy of the cell it searched on beside macro.json
    assert (out / "genotype.json").read_bytes() == genotype_file.read_bytes()
    assert result["genotype"] == str(out / "genotype.json")
    node = macro.nodes[-1]  # the kept inputs' scores are the last snapshot's path scores
    scores = snapshot["path_scores"][f"({node.layer},{node.scale})"]
    assert all(scores[f"({i.layer},{i.scale})"] == pytest.approx(i.score, abs=1e-5) for i in node.inputs)
    assert sum(snapshot["beta"][f"({node.layer},{node.scale})"].values()) == pytest.approx(1.0, abs=1e-5)
    # the beta heatmap goes to the logger at every epoch end (W&B shows it; CSV skips images)
    assert [key for key, _ in logged] == ["arch/beta_heatmap"]
    assert logged[0][1].ndim == 3 and logged[0][1].shape[-1] == 3 and logged[0][1].dtype.name == "uint8"


def test_checkpoint_holds_beta_cam_and_path_scores(make_cfg, genotype_file: Path) -> None:
    cfg = make_cfg(*TINY, f"genotype={genotype_file}", "trainer.max_epochs=1", "macro.top_k=3")
    result = run_macro_search(cfg)
    ckpt = torch.load(result["checkpoint"], map_location="cpu", weights_only=False)
    state = ckpt["state_dict"]
    betas = [k for k in state if k.endswith(".beta")]
    assert len(betas) == 2 * 4 and any(".cam.mlp." in k for k in state)
    # beta starts at 0; the arch steps moved it wherever there is a choice (layer 2: 5 candidates)
    assert all(state[k].abs().sum() > 0 for k in betas if ".l2_" in k)
    assert all(torch.equal(state[k], torch.zeros(1)) for k in betas if ".l1_" in k)
    assert len(ckpt["optimizer_states"]) == 2
    # the stored mean path weights are exactly what macro.json reports
    macro = json.loads((Path(cfg.paths.output_dir) / "macro.json").read_text())
    top = max(i["score"] for n in macro["nodes"] if n["layer"] == 2 for i in n["inputs"])
    total = ckpt["rspnet"]["path_scores"]["total"]  # [sums over arch-step images..., count]
    assert total[-1] == 4
    mean = total[:-1] / total[-1]
    # layout: the four layer-1 nodes (one candidate each), then the layer-2 nodes
    assert torch.allclose(mean[:4], torch.ones(4, dtype=torch.float64))
    assert abs(float(mean[4:].max()) - top) < 1e-5
    assert all(len(n["inputs"]) == 3 for n in macro["nodes"] if n["layer"] == 2)


def test_genotype_is_required(make_cfg) -> None:
    with pytest.raises(ConfigError, match="genotype=DIR/genotype.json"):
        run_macro_search(make_cfg(*TINY))


def test_invalid_genotype_names_the_file(make_cfg, tmp_path: Path) -> None:
    bad = tmp_path / "genotype.json"
    bad.write_text(json.dumps({"format": "rspnet.genotype/0"}))
    with pytest.raises(ArtifactError, match=f"{bad}: field 'format'"):
        run_macro_search(make_cfg(*TINY, f"genotype={bad}"))


@pytest.mark.parametrize("option", ["macro.top_k=0", "macro.score_epochs=0", "macro.lookback=0"])
def test_bad_macro_options_are_config_errors(make_cfg, genotype_file: Path, option: str) -> None:
    with pytest.raises(ConfigError, match=option.split("=")[0]):
        run_macro_search(make_cfg(*TINY, f"genotype={genotype_file}", option))


@pytest.mark.parametrize("score_epochs,expected_count,first_epoch", [(1, 4, 1), (2, 8, 0)])
def test_scores_average_the_last_score_epochs(
    make_cfg, genotype_file: Path, score_epochs: int, expected_count: int, first_epoch: int
) -> None:
    cfg = make_cfg(
        *TINY,
        f"genotype={genotype_file}",
        "trainer.max_epochs=2",
        "model.layers=1",
        f"macro.score_epochs={score_epochs}",
    )
    result = run_macro_search(cfg)
    ckpt = torch.load(result["checkpoint"], map_location="cpu", weights_only=False)
    assert ckpt["rspnet"]["path_scores"]["total"][-1] == expected_count  # 4 arch-half images per epoch
    macro = MacroArch.load(Path(cfg.paths.output_dir) / "macro.json")
    assert macro.search["score_first_epoch"] == first_epoch and macro.search["epochs"] == 2


def test_resume_restores_the_path_score_accumulator(make_cfg, genotype_file: Path, tmp_path: Path) -> None:
    common = [*TINY, f"genotype={genotype_file}", "model.layers=1", "macro.score_epochs=2"]
    out = tmp_path / "resumed"
    run_macro_search(make_cfg(*common, "trainer.max_epochs=1", out=out))
    result = run_macro_search(make_cfg(*common, "trainer.max_epochs=2", "ckpt_path=last", out=out))
    ckpt = torch.load(result["checkpoint"], map_location="cpu", weights_only=False)
    # epoch 0's 4 arch-step images came back from the checkpoint, epoch 1 added 4
    assert ckpt["rspnet"]["epochs_done"] == 2 and ckpt["rspnet"]["path_scores"]["total"][-1] == 8


def test_accumulator_restore_splits_the_totals_across_ranks() -> None:
    from rspnet.lit.macro_module import PathScoreAccumulator

    acc = PathScoreAccumulator(3)
    acc.add(slice(0, 3), torch.tensor([[0.2, 0.3, 0.5], [0.4, 0.4, 0.2]]))
    acc.add_count(2)
    acc.total = acc.local.clone()
    assert torch.allclose(acc.mean, torch.tensor([0.3, 0.35, 0.35], dtype=torch.float64))
    ranks = [PathScoreAccumulator(3) for _ in range(2)]
    for r in ranks:
        r.load_state_dict(acc.state_dict(), world_size=2)
    # the next all-reduce (a sum over ranks) gives back exactly the saved totals
    assert torch.allclose(ranks[0].local + ranks[1].local, acc.total)
    with pytest.raises(ConfigError, match="macro.lookback"):
        PathScoreAccumulator(4).load_state_dict(acc.state_dict(), world_size=1)


@pytest.mark.slow
def test_ddp_sim_reduces_the_path_scores_over_both_ranks(make_cfg, genotype_file: Path) -> None:
    cfg = make_cfg(
        *TINY,
        f"genotype={genotype_file}",
        "trainer=ddp_sim",
        "trainer.max_epochs=1",
        "model.layers=1",
        "dataset.batch_size=2",
        "dataset.val_batch_size=2",
    )
    result = run_macro_search(cfg)
    ckpt = torch.load(result["checkpoint"], map_location="cpu", weights_only=False)
    # 4 arch-half images, 2 per rank: the saved count is the all-reduced one
    assert ckpt["rspnet"]["path_scores"]["total"][-1] == 4
    assert MacroArch.load(Path(cfg.paths.output_dir) / "macro.json").search["score_source"] == "arch_path_weights"


def test_second_order_search_with_adam_runs(make_cfg, genotype_file: Path) -> None:
    cfg = make_cfg(
        *TINY,
        f"genotype={genotype_file}",
        "trainer.fast_dev_run=true",
        "model.layers=1",
        "search.second_order=true",
        "search.arch_optim=adam",
    )
    macro = MacroArch.load(run_macro_search(cfg)["macro"])
    # the path weights of the arch forward at the virtual weights w' are scored (not softmax(beta))
    assert macro.layers == 1 and macro.search["score_source"] == "arch_path_weights"


@pytest.mark.parametrize("scoring", ["pam", "beta"])
def test_macro_json_records_scoring_entropy_and_provenance(make_cfg, genotype_file: Path, scoring: str) -> None:
    cfg = make_cfg(
        *TINY,
        f"genotype={genotype_file}",
        "trainer.max_epochs=1",
        f"macro.scoring={scoring}",
        "search.arch_optim=adam",
        "search.arch_adam_lr=0.05",
    )
    result = run_macro_search(cfg)
    macro = MacroArch.load(result["macro"])
    assert macro.provenance == "searched" and macro.search["scoring"] == scoring
    assert macro.search["score_source"] == "arch_path_weights" and macro.search["seed"] == 0
    assert macro.search["arch_optim"] == "adam" and macro.search["arch_lr"] == 0.05 and macro.search["max_epochs"] == 1
    # the one arch step moved beta; the scored path weights come from its forward (before the update),
    # so with beta-only scoring they are still uniform, while the CAM already differs per path
    assert 0.0 < macro.search["beta_entropy"] < 1.0
    assert (macro.search["path_entropy"] < 1.0) == (scoring == "pam")
    assert result["path_entropy"] == macro.search["path_entropy"]
    state = torch.load(result["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    assert any(".cam." in k for k in state) == (scoring == "pam")


def test_unknown_scoring_is_a_config_error(make_cfg, genotype_file: Path) -> None:
    with pytest.raises(ConfigError, match="macro.scoring=cam"):
        run_macro_search(make_cfg(*TINY, f"genotype={genotype_file}", "macro.scoring=cam"))


@pytest.mark.parametrize("stage", ["cell_search", "macro_search"])
def test_a_rank_reports_its_own_final_architecture_without_reading_rank_0s_file(
    make_cfg, genotype_file: Path, monkeypatch, stage: str
) -> None:
    # a DDP rank other than 0 never writes the final file; rank 0 may still be writing it when the other
    # rank's stage reports. Emulated in one process: the final export does not happen, so the artifact on
    # disk is the last epoch's (complete=False, which loaders refuse) — the stage must not read it.
    from rspnet.lit.macro_module import MacroSearchModule
    from rspnet.lit.search_module import SearchModule
    from rspnet.stages.cell_search import run as run_cell_search

    module_class = SearchModule if stage == "cell_search" else MacroSearchModule
    real_export = module_class.export_artifacts

    def epoch_exports_only(self, out: Path, final: bool, arch: object = None) -> None:
        if not final:
            real_export(self, out, final)

    monkeypatch.setattr(module_class, "export_artifacts", epoch_exports_only)
    if stage == "cell_search":
        cfg = make_cfg("stage=cell_search", "debug=tiny", "model=micro", "trainer.max_epochs=1")
        result = run_cell_search(cfg)
        assert len(result["ops"]) == 3
        with pytest.raises(ArtifactError):  # what the old code read: the epoch export
            Genotype.load(Path(cfg.paths.output_dir) / "genotype.json")
    else:
        cfg = make_cfg(*TINY, f"genotype={genotype_file}", "trainer.max_epochs=1")
        result = run_macro_search(cfg)
        assert result["select"] == "score" and "path_scores" in result["evidence"]
        with pytest.raises(ArtifactError):
            MacroArch.load(Path(cfg.paths.output_dir) / "macro.json")
