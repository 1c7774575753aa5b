"""What only a GPU can prove: AMP with the search's two optimisers, SyncBatchNorm, DDP on one GPU, and that a
paper-preset search step fits at the paper's crop and batch. Marked `requires_gpu`: skipped without CUDA;
`pytest -m requires_gpu` on a GPU machine runs them all (docs/scaling.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

pytestmark = pytest.mark.requires_gpu

# synthetic data at a few small batches: each test is seconds on any CUDA card
SMALL = [
    "dataset.num_train=8",
    "dataset.num_val=4",
    "dataset.image_size=[64,128]",
    "dataset.crop_size=[64,128]",
    "dataset.batch_size=2",
    "dataset.val_batch_size=2",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "search.warmup_epochs=0",
    "model.search_layers=2",
    "model.layers=2",
]


def _card() -> str:
    props = torch.cuda.get_device_properties(0)
    return f"{props.name}, {props.total_memory / 2**30:.0f} GiB"


def test_amp_fp16_search_steps_both_optimisers(make_cfg, tmp_path: Path) -> None:
    from rspnet.stages.cell_search import run as run_cell_search

    out = tmp_path / "amp"
    result = run_cell_search(
        make_cfg("stage=cell_search", "trainer=gpu", "trainer.precision=16-mixed", *SMALL, out=out)
    )
    alpha = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"][
        "net.alpha"
    ]
    assert torch.isfinite(alpha).all() and alpha.abs().sum() > 0  # the arch optimiser stepped through the GradScaler
    assert isinstance(result["objective"], float)


def test_bf16_mixed_second_order_search_on_gpu(make_cfg, tmp_path: Path) -> None:
    from rspnet.stages.cell_search import run as run_cell_search

    if not torch.cuda.is_bf16_supported():
        pytest.skip(f"no bf16 on {_card()}")
    result = run_cell_search(
        make_cfg(
            "stage=cell_search",
            "trainer=gpu",
            "trainer.precision=bf16-mixed",
            "search.second_order=true",
            *SMALL,
            out=tmp_path / "bf16",
        )
    )
    assert isinstance(result["objective"], float)


class RecordBatchNorm(pl.Callback):
    """Saves the strategy, world size and BatchNorm classes of the module being trained."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        kinds = sorted({type(m).__name__ for m in module.modules() if "BatchNorm" in type(m).__name__})
        self.path.write_text(
            json.dumps({"bn": kinds, "strategy": type(trainer.strategy).__name__, "world_size": trainer.world_size})
        )


def test_ddp_on_one_gpu_with_sync_batchnorm(make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rspnet.data import build_datamodule
    from rspnet.lit.search_module import SearchModule
    from rspnet.models.supernet import CellSupernet
    from rspnet.stages import cell_search as search

    out = tmp_path / "ddp1"
    # trainer=ddp on one device: DDPStrategy, SyncBatchNorm conversion, nothing re-launched
    cfg = make_cfg("stage=cell_search", "trainer=ddp", "trainer.devices=1", *SMALL, out=out)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    record = tmp_path / "bn.json"
    original = search.last_checkpoints
    monkeypatch.setattr(search, "last_checkpoints", lambda c, o: [*original(c, o), RecordBatchNorm(record)])
    result = search.fit_search(cfg, SearchModule(CellSupernet.from_cfg(cfg, dm.num_classes), cfg), dm)
    seen = json.loads(record.read_text())
    assert seen["strategy"] == "DDPStrategy" and seen["world_size"] == 1
    assert seen["bn"] == ["SyncBatchNorm"], seen  # every BN converted (affine=False ones included)
    assert (out / "genotype.json").is_file() and isinstance(result["objective"], float)


@pytest.mark.parametrize("precision", ["16-mixed", "32-true"])
def test_paper_preset_search_step_fits_at_512x1024_batch_3(make_cfg, precision: str) -> None:
    """One arch + one weight step of the paper-scale cell supernet at the paper's crop and per-GPU batch."""
    from rspnet.lit.search_module import SearchModule
    from rspnet.models.supernet import CellSupernet

    cfg = make_cfg("model=paper", "dataset=cityscapes", "trainer=gpu")
    net = CellSupernet.from_cfg(cfg, 19).cuda()
    module = SearchModule(net, cfg)
    w_opt, a_opt = module.configure_optimizers()[0]
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "16-mixed")
    x = torch.randn(3, 3, 512, 1024, device="cuda")
    y = torch.randint(0, 19, (3, 512, 1024), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    for opt in (a_opt, w_opt):  # DARTS order: arch step, then weight step
        opt.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16, enabled=precision == "16-mixed"):
            loss = module.loss(net(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"paper cell-search step, {precision}, 512x1024 batch 3: peak {peak:.1f} GiB on {_card()}")
    assert torch.isfinite(loss) and peak < torch.cuda.get_device_properties(0).total_memory / 2**30
