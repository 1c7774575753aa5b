"""lit/perturb.py: perturbation selection (DARTS-PT), the op mask, the evidence, the null scoring labels."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from rspnet.errors import ConfigError
from rspnet.lit import perturb
from rspnet.lit.perturb import NULL_STEP, Scoring, check_options, perturb_select, select_cell
from rspnet.models.supernet import masked_weights
from rspnet.search_space.ops import PRIMITIVES


def _cfg(**search) -> OmegaConf:
    s = {"select": "perturb", "perturb_split": "arch", "perturb_retune_steps": 0, "null": False}
    s |= {"weight_lr": 0.01, "weight_momentum": 0.9, "weight_wd": 0.0, "grad_clip": 5.0}
    return OmegaConf.create({"seed": 3, "dataset": {"ignore_index": 255}, "search": s | search})


class _Data:
    """The datamodule's two hooks select_cell uses, over fixed random tensors."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def scoring_dataloader(self, split: str) -> DataLoader:
        return self.loader

    def search_dataloaders(self) -> tuple[DataLoader, DataLoader]:
        return self.loader, self.loader


def test_masked_weights_zero_the_removed_op_and_renormalise_the_rest() -> None:
    w = torch.tensor([[0.4, 0.3, 0.1, 0.1, 0.1], [0.2] * 5])
    mask = torch.ones(2, 5)
    mask[0, 0] = 0.0
    out = masked_weights(w, mask)
    assert out[0, 0] == 0 and torch.allclose(out.sum(-1), torch.ones(2))
    assert torch.allclose(out[0, 1:], w[0, 1:] / 0.6) and torch.allclose(out[1], w[1])
    assert masked_weights(w, None) is w


def test_the_op_mask_changes_the_forward_and_removing_nothing_does_not(tiny_net) -> None:
    net = tiny_net().train()
    x = torch.randn(2, 3, 16, 16)
    ref = net(x)
    net.op_mask = torch.ones(3, len(PRIMITIVES))
    assert torch.allclose(net(x), ref, atol=1e-6)
    net.op_mask[1, PRIMITIVES.index("conv_5x5")] = 0.0
    assert not torch.allclose(net(x), ref, atol=1e-4)


def test_perturb_keeps_per_edge_the_op_whose_removal_hurts_most(tiny_net, monkeypatch) -> None:
    # a scorer whose loss rises by `importance` of every removed op: the picks must be each row's argmax
    importance = torch.tensor([[0.1, 0.5, 0.2, 0.0, 0.3], [0.9, 0.1, 0.0, 0.2, 0.3], [0.0, 0.1, 0.2, 0.3, 0.4]])
    masks = []

    def fake_measure(net, loader, scoring):
        masks.append(net.op_mask.clone())
        loss = float(((1 - net.op_mask) * importance).sum())
        return {"all": loss, "a": loss, "b": loss, "miou": 1.0 - loss}

    monkeypatch.setattr(perturb, "measure", fake_measure)
    net = tiny_net()
    result = perturb_select(net, [], Scoring(3, 255))
    assert result["ops"] == ["dw_conv_3x3", "conv_3x3", "skip_connect"]
    assert result["rows"]["all"][0] == pytest.approx(importance[0].tolist())
    # DARTS-PT projection: edge 0->1 is one-hot on its pick while edge 0->2 is scored
    assert masks[6][0].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0] and net.op_mask is None


def test_select_cell_records_the_evidence_and_leaves_the_net_alone(tiny_net, tiny_loader) -> None:
    net = tiny_net()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    out = select_cell(net, _cfg(perturb_retune_steps=2), _Data(tiny_loader(n=4)))
    assert out["select"] == "perturb" and out["ops"] == out["evidence"]["perturb"]["ops"]
    ev = out["evidence"]
    assert ev["scoring"] == {"split": "arch", "images": 4, "null": False}
    assert len(ev["alpha"]["decisiveness"]["per_row"]) == 3 and "spearman" in ev["alpha"]["split_half"]
    p = ev["perturb"]
    assert len(p["scores"]) == 3 and all(len(r) == len(PRIMITIVES) for r in p["scores"])
    assert p["ops"] == [PRIMITIVES[max(range(5), key=r.__getitem__)] for r in p["scores"]]
    assert set(p["split_half"]) == {"spearman", "top1_agreement", "rows"} and p["retune_steps"] == 2
    # scored and re-tuned on a copy: the searched net (running BN stats included) is unchanged
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items()) and net.op_mask is None


def test_argmax_keeps_the_alpha_argmax_and_has_no_perturb_entry(tiny_net, tiny_loader) -> None:
    net = tiny_net()
    with torch.no_grad():
        net.alpha[:, PRIMITIVES.index("skip_connect")] += 1.0
    out = select_cell(net, _cfg(select="argmax"), _Data(tiny_loader(n=4)))
    assert out["ops"] == ["skip_connect"] * 3 and "perturb" not in out["evidence"]
    assert out["evidence"]["alpha"]["split_half"]["rows"] == 3
    assert select_cell(net, _cfg(select="argmax"), None)["evidence"]["alpha"]["split_half"] is None
    with pytest.raises(ConfigError, match="search.select=perturb needs"):
        select_cell(net, _cfg(), None)


def test_perturb_under_the_null_scores_against_null_labels(tiny_net, tiny_loader, monkeypatch) -> None:
    calls = []
    real = perturb.null_labels

    def spy(y, num_classes, ignore_index, seed, step):
        calls.append((seed, step))
        return real(y, num_classes, ignore_index, seed, step)

    monkeypatch.setattr(perturb, "null_labels", spy)
    net = tiny_net()
    select_cell(net, _cfg(), _Data(tiny_loader(n=8)))
    assert calls == []  # the real search scores on the real labels
    out = select_cell(net, _cfg(null=True), _Data(tiny_loader(n=8)))
    # every batch of every pass (alpha gradients + 1 base and 5 removals per edge), keyed by the seed
    assert len(calls) == 2 * (1 + 3 * 6) and {s for s, _ in calls} == {3}
    assert {step for _, step in calls} == {NULL_STEP, NULL_STEP + 1} and out["evidence"]["scoring"]["null"]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("select", "foo", "search.select=foo is unknown; use one of: argmax, perturb"),
        ("perturb_split", "val", "search.perturb_split=val is unknown; use arch"),
        ("perturb_retune_steps", -1, "search.perturb_retune_steps=-1 must be an integer >= 0"),
    ],
)
def test_bad_selection_options_are_one_line(key: str, value, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        check_options(_cfg(**{key: value}).search)
    assert "\n" not in str(info.value)


def test_scores_are_taken_at_the_labels_resolution() -> None:
    # dataset.eval_scale scales only the image: the logits are resized to the label, as validation does
    y = torch.zeros(1, 8, 8, dtype=torch.long)
    y[0, 0] = 255
    loss, pixels = Scoring(3, 255).loss_sum(torch.zeros(1, 3, 4, 4), y)
    assert pixels == 56 and float(loss) == pytest.approx(56 * torch.log(torch.tensor(3.0)).item(), rel=1e-5)
