"""stage=eval (metrics.json schema) and stage=predict (overlays, Cityscapes labelIds round-trip)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rspnet.data import build_datamodule
from rspnet.errors import ArtifactError, ConfigError, DataError
from rspnet.stages.eval import run as run_eval
from rspnet.stages.predict import run as run_predict

METRIC_KEYS = {
    "miou",
    "iou_per_class",
    "pixel_acc",
    "macc",
    "acc_per_class",
    "num_images",
    "dataset",
    "split",
    "checkpoint",
    "net",
    "arch_provenance",
    "checkpoint_selected_on",
}


@pytest.mark.parametrize("mode", ["whole", "multiscale_flip"])
def test_eval_writes_metrics_json_per_spec(trained: dict, tiny_cfg, mode: str) -> None:
    cfg = tiny_cfg("stage=eval", f"ckpt={trained['best_ckpt']}", f"inference.mode={mode}", "inference.scales=[1.0]")
    result = run_eval(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert set(metrics) == METRIC_KEYS and result["objective"] == metrics["miou"]
    assert 0.0 <= metrics["miou"] <= 1.0 and 0.0 <= metrics["pixel_acc"] <= 1.0
    assert len(metrics["iou_per_class"]) == 19 and "road" in metrics["iou_per_class"]
    # the reported split, and what picked the checkpoint (the held-out slice of train by default)
    assert metrics["split"] == "val" and metrics["checkpoint_selected_on"].startswith("held-out 0.1 of train")
    assert all(v is None or 0.0 <= v <= 1.0 for v in metrics["iou_per_class"].values())
    present = [v for v in metrics["iou_per_class"].values() if v is not None]
    assert metrics["miou"] == pytest.approx(sum(present) / len(present), abs=1e-6)
    assert metrics["num_images"] == 4 and metrics["dataset"] == "synthetic" and metrics["split"] == "val"
    assert metrics["checkpoint"] == str(Path(trained["best_ckpt"]).resolve())
    # mmseg IoUMetric extras: class accuracy = diagonal / GT row sum of the saved confusion matrix
    confusion = json.loads((Path(cfg.paths.output_dir) / "confusion_matrix.json").read_text())
    cm = np.asarray(confusion["counts"])
    assert confusion["classes"] == list(metrics["iou_per_class"]) and cm.shape == (19, 19)
    assert cm.sum() == 4 * 32 * 64  # every pixel of the 4 val images (synthetic: no ignore pixels)
    gt = cm.sum(1)
    acc = [None if gt[c] == 0 else cm[c, c] / gt[c] for c in range(19)]
    assert list(metrics["acc_per_class"].values()) == pytest.approx(acc)
    assert metrics["macc"] == pytest.approx(np.mean([a for a in acc if a is not None]))
    assert metrics["pixel_acc"] == pytest.approx(np.trace(cm) / cm.sum())
    assert (Path(cfg.paths.output_dir) / "confusion_matrix.png").stat().st_size > 1000


def test_eval_needs_a_checkpoint(tiny_cfg, tmp_path: Path) -> None:

    with pytest.raises(ConfigError, match="ckpt"):
        run_eval(tiny_cfg("stage=eval"))
    with pytest.raises(ArtifactError, match="checkpoint not found"):
        run_eval(tiny_cfg("stage=eval", f"ckpt={tmp_path / 'nope.ckpt'}"))


def _write_inputs(folder: Path) -> dict[str, Path]:
    """RGB, greyscale and RGBA images of odd sizes in Cityscapes-like city folders."""
    rng = np.random.default_rng(0)
    files = {
        "aachen_000000_000019": (folder / "aachen" / "aachen_000000_000019_leftImg8bit.png", "RGB", (37, 70)),
        "grey": (folder / "bonn" / "grey.png", "L", (32, 48)),
        "rgba": (folder / "rgba.png", "RGBA", (30, 41)),
    }
    for path, mode, (h, w) in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
        a = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        Image.fromarray(a[..., 0] if channels == 1 else a, mode).save(path)
    return {stem: p for stem, (p, _, _) in files.items()}


def test_predict_folder_writes_labelids_that_round_trip(trained: dict, tiny_cfg, tmp_path: Path) -> None:
    from cityscapesscripts.helpers.labels import id2label

    from rspnet.data.images import prepare, read_rgb
    from rspnet.inference import infer_from_cfg
    from rspnet.lit.seg_module import SegModule

    inputs = _write_inputs(tmp_path / "in")
    cfg = tiny_cfg("stage=predict", f"ckpt={trained['best_ckpt']}", f"predict.input={tmp_path / 'in'}")
    assert run_predict(cfg)["num_images"] == 3
    pred_dir = Path(cfg.paths.output_dir) / "predictions"
    module, _ = SegModule.from_checkpoint(trained["best_ckpt"], cfg)
    for (stem, src), city in zip(inputs.items(), ["aachen", "bonn", "in"]):
        ids = np.asarray(Image.open(pred_dir / "labelIds" / city / f"{stem}_labelIds.png"))
        rgb = read_rgb(src)
        assert ids.shape == rgb.shape[:2] and ids.dtype == np.uint8
        # every value is a Cityscapes labelId of an evaluated class; mapping back gives the argmax
        assert all(int(v) in id2label and id2label[int(v)].trainId < 19 for v in np.unique(ids))
        back = np.vectorize(lambda v: id2label[int(v)].trainId)(ids)
        with torch.no_grad():
            argmax = (
                infer_from_cfg(
                    module, prepare(rgb, cfg.dataset.get("resize_long"), cfg.dataset.get("eval_scale"))[None], cfg
                )
                .argmax(1)[0]
                .numpy()
            )
        assert (back == argmax).all()
        overlay = np.asarray(Image.open(pred_dir / "overlay" / src.parent.relative_to(tmp_path / "in") / f"{stem}.png"))
        assert overlay.shape == (*rgb.shape[:2], 3)


def test_predict_dataset_split(trained: dict, tiny_cfg) -> None:
    cfg = tiny_cfg(
        "stage=predict",
        f"ckpt={trained['best_ckpt']}",
        "predict.limit=2",
        "inference.mode=slide",
        "inference.slide_crop=[32,32]",
    )
    assert run_predict(cfg)["num_images"] == 2
    written = sorted((Path(cfg.paths.output_dir) / "predictions" / "labelIds" / "unknown").glob("*_labelIds.png"))
    assert len(written) == 2


def test_predict_bad_inputs_are_clear_errors(trained: dict, tiny_cfg, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        run_predict(tiny_cfg("stage=predict", f"ckpt={trained['best_ckpt']}", f"predict.input={tmp_path / 'empty'}"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"x\.png: cannot read image"):
        run_predict(tiny_cfg("stage=predict", f"ckpt={trained['best_ckpt']}", f"predict.input={tmp_path / 'bad'}"))


def test_predict_with_resize_long_keeps_the_file_resolution(trained: dict, tiny_cfg, tmp_path: Path) -> None:
    _write_inputs(tmp_path / "in")
    cfg = tiny_cfg(
        "stage=predict",
        f"ckpt={trained['best_ckpt']}",
        f"predict.input={tmp_path / 'in'}",
        "dataset.resize_long=32",
        "predict.overlay=false",
    )
    run_predict(cfg)
    ids = Image.open(
        Path(cfg.paths.output_dir) / "predictions" / "labelIds" / "aachen" / "aachen_000000_000019_labelIds.png"
    )
    assert ids.size == (70, 37)  # PIL: (W, H) of the input file, not of the 32-px network input
    assert not (Path(cfg.paths.output_dir) / "predictions" / "overlay").exists()


@pytest.mark.slow
def test_ddp_sim_train_and_eval_match_single_process(trained: dict, tiny_cfg, tmp_path: Path) -> None:
    from rspnet.stages.train import run as run_train

    ddp = ["trainer=ddp_sim", "dataset.batch_size=2", "dataset.val_batch_size=2"]
    result = run_train(tiny_cfg("stage=train", *ddp, out=tmp_path / "train"))
    assert result["epochs"] == 1 and result["global_step"] == 2 and result["last_ckpt"]  # 8 images / 2 ranks / batch 2
    ckpt = f"ckpt={trained['best_ckpt']}"
    single = run_eval(tiny_cfg("stage=eval", ckpt, out=tmp_path / "single"))
    multi = run_eval(tiny_cfg("stage=eval", ckpt, *ddp, out=tmp_path / "multi"))
    assert multi["num_images"] == single["num_images"] == 4
    assert multi["miou"] == pytest.approx(single["miou"], abs=1e-9)


def test_predict_cityscapes_test_split_lays_out_the_benchmark_folder(trained: dict, tiny_cfg, tmp_path: Path) -> None:
    # the public test split has images only; predictions keep each file's size and city folder
    img = tmp_path / "cs" / "leftImg8bit" / "test" / "berlin" / "berlin_000000_000019_leftImg8bit.png"
    img.parent.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 80, 3), dtype=np.uint8)).save(img)
    cfg = tiny_cfg(
        "stage=predict",
        "dataset=cityscapes",
        f"dataset.root={tmp_path / 'cs'}",
        "split=test",
        f"ckpt={trained['best_ckpt']}",
    )
    assert run_predict(cfg)["num_images"] == 1
    out = Path(cfg.paths.output_dir) / "predictions" / "labelIds" / "berlin" / "berlin_000000_000019_labelIds.png"
    assert Image.open(out).size == (80, 40)


def test_predict_batches_give_the_same_files_and_report_throughput(trained: dict, tiny_cfg, tmp_path: Path) -> None:
    _write_inputs(tmp_path / "in")
    rng = np.random.default_rng(2)
    for i in range(2):  # same size as the aachen image: a batch of 3 puts these through the network together
        Image.fromarray(rng.integers(0, 256, (37, 70, 3), dtype=np.uint8)).save(
            tmp_path / "in" / "aachen" / f"x{i}.png"
        )
    written = {}
    for batch in (1, 3):
        cfg = tiny_cfg(
            "stage=predict",
            f"ckpt={trained['best_ckpt']}",
            f"predict.input={tmp_path / 'in'}",
            f"predict.batch_size={batch}",
            "predict.num_workers=1",
            out=tmp_path / f"b{batch}",
        )
        result = run_predict(cfg)
        report = json.loads((tmp_path / f"b{batch}" / "predict.json").read_text())
        assert report["num_images"] == result["num_images"] == 5 and report["batch_size"] == batch
        assert report["images_per_s"] > 0 and report["seconds"] > 0
        written[batch] = {
            p.relative_to(tmp_path / f"b{batch}"): p.read_bytes()
            for p in sorted((tmp_path / f"b{batch}" / "predictions").rglob("*.png"))
        }
    assert len(written[1]) == 10 and written[1] == written[3]  # 5 labelIds + 5 overlays, byte-identical


# input file -> its overlay under predictions/overlay/, its labelIds under predictions/labelIds/;
# each input has its own size, so an overwritten file shows up as a wrong size
COLLISIONS = {
    "a/x.png": ("a/x.png", "a/x_labelIds.png"),  # same name in two folders
    "b/x.png": ("b/x.png", "b/x_labelIds.png"),
    "x.png": ("x.png.png", "in/x.png_labelIds.png"),  # same stem, another extension
    "x.jpg": ("x.jpg.png", "in/x.jpg_labelIds.png"),
    "c/y_leftImg8bit.png": ("c/y_leftImg8bit.png.png", "c/y_leftImg8bit.png_labelIds.png"),  # same benchmark stem
    "c/y.png": ("c/y.png.png", "c/y.png_labelIds.png"),
    "d/X.png": ("d/X.png.png", "d/X.png_labelIds.png"),  # names differing only in case
    "d/x.png": ("d/x.png.png", "d/x.png_labelIds.png"),
    "w.png": ("w.png.png", "in/w.png_labelIds.png"),  # w.jpg keeps its extension, w.jpg.png then must too
    "w.jpg": ("w.jpg.png", "in/w.jpg_labelIds.png"),
    "w.jpg.png": ("w.jpg.png.png", "in/w.jpg.png_labelIds.png"),
    "aachen/aachen_000000_000019_leftImg8bit.png": (
        "aachen/aachen_000000_000019.png",
        "aachen/aachen_000000_000019_labelIds.png",
    ),
}


def test_predict_mirrors_the_input_tree_and_never_writes_a_file_twice(
    trained: dict, tiny_cfg, tmp_path: Path, monkeypatch
) -> None:
    import rspnet.stages.predict as predict

    rng = np.random.default_rng(3)
    for i, name in enumerate(COLLISIONS):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(rng.integers(0, 256, (20 + i, 30 + i, 3), dtype=np.uint8))
        image.save(tmp_path / "in" / name, format="JPEG" if name.endswith(".jpg") else "PNG")
    written = []
    real = predict.atomic_write_bytes
    monkeypatch.setattr(predict, "atomic_write_bytes", lambda path, data: written.append(path) or real(path, data))
    cfg = tiny_cfg("stage=predict", f"ckpt={trained['best_ckpt']}", f"predict.input={tmp_path / 'in'}")
    report = run_predict(cfg)
    assert len(written) == len(set(written)) == 2 * len(COLLISIONS)  # no path written twice
    out = Path(cfg.paths.output_dir) / "predictions"
    for i, (overlay_name, ids_name) in enumerate(COLLISIONS.values()):
        assert Image.open(out / "overlay" / overlay_name).size == (30 + i, 20 + i), overlay_name
        assert Image.open(out / "labelIds" / ids_name).size == (30 + i, 20 + i), ids_name
    on_disk = {kind: sum(1 for f in (out / kind).rglob("*") if f.is_file()) for kind in ("overlay", "labelIds")}
    assert report["num_images"] == len(COLLISIONS) and report["files"] == on_disk == {
        "labelIds": len(COLLISIONS),
        "overlay": len(COLLISIONS),
    }
    assert json.loads((out.parent / "predict.json").read_text())["files"] == on_disk


def test_inputs_that_would_share_an_output_even_with_extensions_are_refused(
    trained: dict, tiny_cfg, tmp_path: Path
) -> None:
    # in/z.png (class maps go to labelIds/in/, the input folder's name) and in/in/z.png
    for name in ("z.png", "in/z.png"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "in" / name)
    cfg = tiny_cfg("stage=predict", f"ckpt={trained['best_ckpt']}", f"predict.input={tmp_path / 'in'}")
    with pytest.raises(DataError, match=r"in/in/z\.png and .*in/z\.png would be written to the same prediction file"):
        run_predict(cfg)
    assert not any(Path(cfg.paths.output_dir).iterdir())  # refused before anything was written


def test_a_previous_predict_output_is_refused_or_replaced_whole(trained: dict, tiny_cfg, tmp_path: Path) -> None:
    from rspnet.errors import ConfigError

    for folder, names in (("one", ["p.png", "q.png"]), ("two", ["r.png"])):
        (tmp_path / folder).mkdir()
        for name in names:
            Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / folder / name)
    common = ["stage=predict", f"ckpt={trained['best_ckpt']}"]
    out = tmp_path / "out"
    run_predict(tiny_cfg(*common, f"predict.input={tmp_path / 'one'}", out=out))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=r"out/predictions holds a previous predict's output; pass predict.overwrite"):
        run_predict(tiny_cfg(*common, f"predict.input={tmp_path / 'two'}", out=out))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # refused: nothing touched
    report = run_predict(tiny_cfg(*common, f"predict.input={tmp_path / 'two'}", "predict.overwrite=true", out=out))
    left = sorted(p.relative_to(out / "predictions").as_posix() for p in (out / "predictions").rglob("*.png"))
    assert left == ["labelIds/two/r_labelIds.png", "overlay/r.png"] and report["num_images"] == 1  # no mixing
    assert sorted(p.name for p in out.iterdir()) == ["predict.json", "predictions"]  # no partial/old folders


def test_a_failed_predict_leaves_no_predictions_folder(trained: dict, tiny_cfg, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_bytes(b"not a png")  # fails after a.png's files were written
    cfg = tiny_cfg(
        "stage=predict", f"ckpt={trained['best_ckpt']}", f"predict.input={tmp_path / 'in'}", "predict.batch_size=1"
    )
    with pytest.raises(DataError, match=r"b\.png: cannot read image"):
        run_predict(cfg)
    assert not (Path(cfg.paths.output_dir) / "predictions").exists()
    assert not (Path(cfg.paths.output_dir) / ".predictions.partial").exists()


def test_eval_on_the_selection_split_reproduces_the_selection_score(trained: dict, tiny_cfg) -> None:
    # split=select: the held-out slice of train the run picked its checkpoint on (same train.holdout_* options),
    # e.g. to choose the inference scale on it (issue 25) and never on val
    train_json = json.loads((trained["out"] / "train.json").read_text())
    cfg = tiny_cfg("stage=eval", f"ckpt={trained['best_ckpt']}", "split=select")
    run_eval(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    dm = build_datamodule(cfg)
    dm.setup("fit")
    assert dm.holdout_dataset is not None and len(dm.holdout_dataset) >= 1
    assert metrics["split"] == "select" and metrics["num_images"] == len(dm.holdout_dataset)
    # train.json names the monitored selection score best_val_miou (its historic key)
    assert metrics["miou"] == pytest.approx(train_json["best_val_miou"], abs=1e-4)
    with pytest.raises(ConfigError, match="split=select"):
        run_eval(
            tiny_cfg(
                "stage=eval",
                f"ckpt={trained['best_ckpt']}",
                "split=select",
                "train.select=last",
                "train.holdout_fraction=0",
            )
        )
