"""search_space/evidence.py: decisiveness, split-half reliability, null labels."""

import math

import pytest
import torch

from rspnet.search_space.evidence import decisiveness, null_labels, rank_correlation, split_half


def test_decisiveness_by_hand():
    d = decisiveness([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0], [0.2, 0.2, 0.2, 0.2, 0.2]])
    first = d["per_row"][0]
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)) / math.log(3)
    assert first["entropy"] == pytest.approx(h, abs=1e-6)
    assert first["top1"] == pytest.approx(0.5) and first["margin"] == pytest.approx(0.25)
    assert d["per_row"][1] == {"entropy": 0.0, "top1": 1.0, "margin": 1.0}
    assert d["per_row"][2]["entropy"] == pytest.approx(1.0) and d["per_row"][2]["margin"] == 0.0
    assert d["mean"]["top1"] == pytest.approx((0.5 + 1.0 + 0.2) / 3, abs=1e-6)


def test_decisiveness_of_raw_scores_is_margin_and_margin_over_range():
    d = decisiveness([[2.0, 0.0, -1.0], [0.5, 0.5, 0.1]], as_probs=False)
    assert d["per_row"][0] == {"margin": 2.0, "margin_rel": pytest.approx(2.0 / 3.0, abs=1e-6)}
    assert d["per_row"][1] == {"margin": 0.0, "margin_rel": 0.0}  # a tie at the top decides nothing
    assert d["mean"]["margin"] == pytest.approx(1.0)


def test_split_half_identical_order_is_one_and_reversed_is_minus_one():
    a = [[0.1, 0.5, 0.4], [3.0, 1.0, 2.0]]
    assert split_half(a, a) == {"spearman": 1.0, "top1_agreement": 1.0, "rows": 2}
    rev = [[0.5, 0.1, 0.2], [1.0, 3.0, 2.0]]
    out = split_half(a, rev)
    assert out["spearman"] < -0.9 and out["top1_agreement"] == 0.0


def test_split_half_centres_rows_so_row_offsets_do_not_count():
    # the same within-row order, very different row levels: still perfectly reliable
    a = [[0.0, 1.0, 2.0], [100.0, 101.0, 102.0]]
    b = [[50.0, 51.0, 52.0], [-9.0, -8.0, -7.0]]
    assert split_half(a, b)["spearman"] == 1.0


def test_rank_correlation_undefined_cases():
    assert rank_correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
    with pytest.raises(ValueError):
        rank_correlation([1.0], [1.0, 2.0])


def test_null_labels_are_uniform_keep_ignore_and_are_reproducible():
    y = torch.zeros(2, 64, 64, dtype=torch.long)
    y[:, :4] = 255
    a = null_labels(y, 5, 255, seed=3, step=7)
    assert torch.equal(a, null_labels(y, 5, 255, seed=3, step=7))
    assert not torch.equal(a, null_labels(y, 5, 255, seed=3, step=8))
    assert (a[:, :4] == 255).all() and a[:, 4:].max() < 5
    counts = torch.bincount(a[:, 4:].flatten(), minlength=5).float()
    assert (counts / counts.sum() - 0.2).abs().max() < 0.02
    state = torch.get_rng_state()
    null_labels(y, 5, 255, seed=0, step=0)
    assert torch.equal(state, torch.get_rng_state())  # the global stream (weight half) is untouched


def test_search_null_option_composes():
    # `null` is YAML's None: the key must be quoted in conf/search/default.yaml or composition fails
    from hydra import compose, initialize_config_module

    with initialize_config_module("conf", version_base=None):
        assert compose("config").search["null"] is False
        assert compose("config", overrides=["search.null=true"]).search["null"] is True


def test_null_mode_reads_bool_and_named_nulls():
    from rspnet.search_space.evidence import null_mode

    assert [null_mode({"null": v}) for v in (False, True, "labels", "grad", "false")] == [
        None,
        "labels",
        "labels",
        "grad",
        None,
    ]


def test_null_grads_keep_each_norm_change_the_direction_and_are_reproducible():
    from rspnet.search_space.evidence import null_grads

    def grads(seed: int, step: int) -> list[torch.Tensor]:
        p = torch.nn.Parameter(torch.zeros(3, 5))
        p.grad = torch.arange(15, dtype=torch.float32).reshape(3, 5)
        null_grads([p], seed, step)
        return [p.grad]

    a, b, c = grads(0, 1)[0], grads(0, 1)[0], grads(0, 2)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.norm()) == pytest.approx(float(torch.arange(15.0).norm()), rel=1e-5)
    cos = torch.nn.functional.cosine_similarity(a.flatten(), torch.arange(15.0), dim=0)
    assert abs(float(cos)) < 0.9


def test_a_grad_null_search_moves_alpha_by_noise_not_by_the_labels(make_cfg, tmp_path):
    from rspnet.stages import run_stage

    args = ("stage=cell_search", "debug=tiny", "model=micro", "search.arch_optim=adam", "search.arch_adam_lr=0.1")
    alphas = {}
    for null in ("false", "grad"):
        out = tmp_path / null
        run_stage(make_cfg(*args, f"search.null={null}", out=out))
        doc = __import__("json").loads((out / "genotype.json").read_text())
        alphas[null] = [e["weights"] for e in doc["edges"]]
        assert doc["search"]["null"] == (False if null == "false" else "grad")
    assert alphas["false"] != alphas["grad"]
