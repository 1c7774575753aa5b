"""The library-baseline arm of experiments/camvid_study.py: MONAI BasicUNet, trained like every arm.

    python -m experiments.study_baseline experiment=camvid_study dataset.root=... seed=0 \
        trainer.max_epochs=40 paths.output_dir=DIR

Same SegModule recipe as stage=train (data module, crop, batch, SGD + poly lr decaying over the
epochs this run actually trains — `trainer.max_epochs`, no wall-clock cap), same checkpoint rule
(the last one; no validation while training), same metric (evaluated once on `split=val`).
The network is the `net=monai_unet` entry of the net group (conf/net/monai_unet.yaml); stage=train
net=monai_unet trains the same network through the normal stage (this script keeps the study's layout).
Writes DIR/checkpoints/last.ckpt (a killed run resumes from it), DIR/train.json, DIR/metrics.json.
"""

from __future__ import annotations

import sys

NETWORK = "monai.networks.nets.BasicUNet (spatial_dims=2, default features, random init)"


def run(overrides: list[str]) -> dict:
    """Train + evaluate; returns the metrics dict."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from bench.common import compose_cfg
    from rspnet.data import build_datamodule
    from rspnet.lit.seg_module import build_seg_module
    from rspnet.models.cost import count_gflops
    from rspnet.stages.eval import metrics_dict
    from rspnet.utils.checkpoint import AtomicCheckpointIO
    from rspnet.utils.io import atomic_write_json
    from rspnet.utils.runtime import output_dir, seed_everything
    from rspnet.utils.trainer import build_trainer, run_callbacks

    cfg = compose_cfg("stage=train", "net=monai_unet", *overrides)
    out = output_dir(cfg)
    seed_everything(int(cfg.seed))
    dm = build_datamodule(cfg)
    dm.setup("fit")
    # the same SegModule recipe around the library net (the `net` group entry, which the checkpoint stores, so
    # eval/predict rebuild it); no class weights, as before; evaluated like every arm (the inference group)
    module = build_seg_module(cfg, None, None, dm.num_classes, list(dm.classes), list(dm.palette))
    params = module.meta["params"]
    ckpt_cb = ModelCheckpoint(
        dirpath=str(out / "checkpoints"),
        filename="epoch{epoch:03d}",
        save_last=True,
        save_top_k=1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
        auto_insert_metric_name=False,
    )
    trainer = build_trainer(cfg, out, False, [ckpt_cb, *run_callbacks(cfg, out, False)], plugins=[AtomicCheckpointIO()])
    last = out / "checkpoints" / "last.ckpt"
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if last.is_file() else None)
    gflops = count_gflops(module.net, tuple(int(v) for v in cfg.dataset.crop_size))
    dm.setup("test")
    trainer.test(module, dataloaders=dm.test_dataloader(), verbose=False)
    metrics = metrics_dict(module.test_result, list(dm.classes), cfg, str(last), module.meta)
    atomic_write_json(out / "metrics.json", metrics | {"network": NETWORK})
    atomic_write_json(
        out / "train.json",
        {
            "network": NETWORK,
            "params": params,
            "gflops": round(gflops, 3),
            "epochs": int(trainer.current_epoch),
            "global_step": int(trainer.global_step),
            "last_ckpt": str(last),
            "arch_provenance": module.meta["arch_provenance"],
        },
    )
    print(f"baseline: {NETWORK}: {params / 1e6:.2f}M params, val mIoU {metrics['miou']}")
    return metrics


if __name__ == "__main__":
    run(sys.argv[1:])
