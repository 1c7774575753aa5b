"""Bad input of every kind is one clear error line (ConfigError/DataError/ArtifactError), through
the CLI as `rspnet: error: ...` with exit status 2 and no traceback; nothing is written half-way
and the artifacts of a previous run stay intact."""

from __future__ import annotations

import copy
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rspnet.data import build_dataset
from rspnet.errors import ArtifactError, ConfigError, DataError
from rspnet.genotype import Genotype
from rspnet.stages import run_stage as run
from rspnet.stages.train import run as run_train
from tests.conftest import CELL, OPS, TRAIN, macro_doc

pytestmark = pytest.mark.reliability

TRAIN_IMG = "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


def _previous_run(out: Path) -> dict[Path, bytes]:
    """Artifacts of an earlier run in `out`, its config.yaml included (contents to compare afterwards)."""
    files = {
        out / "train.json": b'{"best_val_miou": 0.5}\n',
        out / "checkpoints" / "last.ckpt": b"previous checkpoint",
        out / "config.yaml": b"seed: 123\n",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def _assert_intact(out: Path, files: dict[Path, bytes]) -> None:
    """Byte-identical: every previous file unchanged and no file added (config.yaml included)."""
    assert all(path.read_bytes() == data for path, data in files.items())
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted(
        {p.relative_to(out).as_posix() for p in files} | {"checkpoints"}
    )


# --- images ------------------------------------------------------------------------------


def _truncated_png(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:-200])


def _corrupt_jpeg(path: Path) -> None:
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    "damage", [_truncated_png, _corrupt_jpeg, _empty], ids=["truncated_png", "corrupt_jpeg", "empty_file"]
)
def test_unreadable_image_names_the_file(make_cfg, cityscapes_root: Path, damage) -> None:
    damage(cityscapes_root / TRAIN_IMG)
    ds = build_dataset(make_cfg("dataset=cityscapes", f"dataset.root={cityscapes_root}"), "train", True)
    with pytest.raises(DataError) as err:
        ds[0]
    assert str(cityscapes_root / TRAIN_IMG) in one_line(err) and "cannot read image" in one_line(err)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P"])
def test_grayscale_and_alpha_images_are_converted_to_rgb(make_cfg, cityscapes_root: Path, mode: str) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (16, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert(mode).save(cityscapes_root / TRAIN_IMG)
    image, mask = build_dataset(make_cfg("dataset=cityscapes", f"dataset.root={cityscapes_root}"), "train", False)[0]
    assert image.shape == (3, 16, 32) and image.dtype == torch.float32 and torch.isfinite(image).all()
    assert mask.shape == (16, 32)


# --- genotype / macro files through a stage ------------------------------------------------


def _genotype_doc(edit) -> str:  # noqa: ANN001
    doc = Genotype.from_ops(OPS, rsp=True).to_dict()
    edit(doc)
    return json.dumps(doc)


GENOTYPES = {
    "empty_file": ("", "not valid JSON"),
    "truncated": ('{"format": "rspnet.genotype/1", "edges": [', "not valid JSON"),
    "not_an_object": ("[1, 2, 3]", "'format'"),
    "nan_weight": (
        _genotype_doc(lambda d: d["edges"][0]["weights"].__setitem__(0, float("nan"))),
        "'edges[0].weights'",
    ),
    "short_weights": (_genotype_doc(lambda d: d["edges"][0].__setitem__("weights", [0.25] * 4)), "'edges[0].weights'"),
    "not_an_edge": (_genotype_doc(lambda d: d["edges"][2].__setitem__("src", 2)), "'edges[2].src/dst'"),
    "edges_not_a_list": (_genotype_doc(lambda d: d.__setitem__("edges", "conv")), "'edges'"),
    "op_not_a_string": (_genotype_doc(lambda d: d["edges"][0].__setitem__("op", 3)), "'edges[0].op'"),
    "unknown_op": (_genotype_doc(lambda d: d["edges"][0].__setitem__("op", "sep_conv_7x7")), "'edges[0].op'"),
    "other_format": (_genotype_doc(lambda d: d.__setitem__("format", "rspnet.genotype/9")), "'format'"),
}


@pytest.mark.parametrize("case", sorted(GENOTYPES))
def test_bad_genotype_file_stops_the_stage_before_anything_is_written(make_cfg, tmp_path: Path, case: str) -> None:
    text, field = GENOTYPES[case]
    bad, out = tmp_path / "genotype.json", tmp_path / "run"
    bad.write_text(text)
    previous = _previous_run(out)
    with pytest.raises(ArtifactError) as err:
        run(make_cfg(*TRAIN, f"genotype={bad}", out=out))
    assert str(bad) in one_line(err) and field in one_line(err)
    _assert_intact(out, previous)


def _macro_doc(edit) -> str:  # noqa: ANN001
    doc = macro_doc()
    edit(doc)
    return json.dumps(doc)


MACROS = {
    "valid": (_macro_doc(lambda d: None), None),
    "empty_file": ("", "not valid JSON"),
    "node_past_the_last_layer": (_macro_doc(lambda d: d["nodes"][3].__setitem__("layer", 9)), "'nodes[3].layer'"),
    "duplicate_node": (_macro_doc(lambda d: d["nodes"].append(copy.deepcopy(d["nodes"][0]))), "'nodes[4]'"),
    "input_from_a_later_layer": (
        _macro_doc(lambda d: d["nodes"][0]["inputs"][0].__setitem__("layer", 2)),
        "'nodes[0].inputs[0].layer'",
    ),
    "nan_score": (
        _macro_doc(lambda d: d["nodes"][0]["inputs"][0].__setitem__("score", float("nan"))),
        "'nodes[0].inputs[0].score'",
    ),
    "no_inputs": (_macro_doc(lambda d: d["nodes"][0].__setitem__("inputs", [])), "'nodes[0].inputs'"),
    "layers_not_an_int": (_macro_doc(lambda d: d.__setitem__("layers", "2")), "'layers'"),
}


@pytest.mark.parametrize("case", sorted(MACROS))
def test_bad_macro_file_stops_the_stage_before_anything_is_written(
    make_cfg, tmp_path: Path, searched_genotype_file: Path, case: str
) -> None:
    text, field = MACROS[case]
    bad, out = tmp_path / "macro.json", tmp_path / "run"
    bad.write_text(text)
    if field is None:  # the valid file really is accepted: the failures below are the file's fault
        from rspnet.stages.train import training_architecture

        cfg = make_cfg(*TRAIN, "model.layers=2", f"genotype={searched_genotype_file}", f"macro_arch={bad}", out=out)
        _, macro = training_architecture(
            cfg
        )  # (model.layers must match the file: tests/stages/test_train_architecture.py)
        assert macro.layers == 2
        return
    previous = _previous_run(out)
    with pytest.raises(ArtifactError) as err:
        run(make_cfg(*TRAIN, f"genotype={searched_genotype_file}", f"macro_arch={bad}", out=out))
    assert str(bad) in one_line(err) and field in one_line(err)
    _assert_intact(out, previous)


# --- checkpoints ----------------------------------------------------------------------------


def test_resuming_a_checkpoint_of_another_preset_lists_the_mismatched_keys(
    make_cfg, tmp_path: Path, searched_genotype_file: Path
) -> None:
    first = tmp_path / "first"
    run_train(
        make_cfg(
            *TRAIN,
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=1",
            f"genotype={searched_genotype_file}",
            out=first,
        )
    )
    ckpt = first / "checkpoints" / "last.ckpt"
    before = ckpt.read_bytes()
    # the run identity in the checkpoint names the differing key first
    with pytest.raises(ConfigError) as err:
        run_train(
            make_cfg(
                *TRAIN,
                "model.base_width=8",
                f"ckpt_path={ckpt}",
                f"genotype={searched_genotype_file}",
                out=tmp_path / "other",
            )
        )
    msg = one_line(err)
    assert (
        f"ckpt_path={ckpt}" in msg and "checkpoint of another run" in msg and "model.base_width=4 (this run: 8)" in msg
    )
    assert ckpt.read_bytes() == before and not (tmp_path / "other" / "checkpoints").exists()
    # a checkpoint without an identity (an older rspnet): the weights that do not fit are listed
    old = _without_run_identity(ckpt, tmp_path / "old.ckpt")
    with pytest.raises(ArtifactError) as err:
        run_train(
            make_cfg(
                *TRAIN,
                "model.base_width=8",
                f"ckpt_path={old}",
                f"genotype={searched_genotype_file}",
                out=tmp_path / "other",
            )
        )
    msg = one_line(err)
    assert f"ckpt_path={old}" in msg and "shape mismatch: net.head" in msg and "[32, 12, 1, 1] vs [32, 24, 1, 1]" in msg
    assert not (tmp_path / "other" / "checkpoints").exists()


def _without_run_identity(ckpt: Path, dst: Path) -> Path:
    """A copy of `ckpt` as an rspnet before the run identity wrote it."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state.pop("rspnet_run")
    torch.save(state, dst)
    return dst


def test_cell_search_resume_from_another_preset_seed_or_arch_split_is_refused(make_cfg, tmp_path: Path) -> None:
    first = tmp_path / "first"
    run(make_cfg(*CELL, "trainer.max_epochs=1", "trainer.limit_train_batches=1", out=first))
    ckpt = first / "checkpoints" / "last.ckpt"
    # another preset, seed or arch split is another run: one line naming the differing key
    for override, named in (("model.base_width=8", "model.base_width=4"), ("seed=5", "seed=0")):
        with pytest.raises(ConfigError, match=rf"checkpoint of another run .*{named}") as err:
            run(make_cfg(*CELL, override, f"ckpt_path={ckpt}", out=tmp_path / "other"))
        one_line(err)
    with pytest.raises(ConfigError, match=r"checkpoint of another run .*search.arch_split=0.5") as err:
        run(make_cfg(*CELL, "search.arch_split=0.25", f"ckpt_path={ckpt}", out=tmp_path / "resplit"))
    one_line(err)
    assert not (tmp_path / "resplit" / "genotype.json").exists() and not (tmp_path / "resplit" / "config.yaml").exists()
    # a checkpoint without an identity (an older rspnet): the network and the data split are still checked
    old = _without_run_identity(ckpt, tmp_path / "old.ckpt")
    with pytest.raises(ArtifactError, match=r"weights do not fit this network .*shape mismatch: net\.") as err:
        run(make_cfg(*CELL, "model.base_width=8", f"ckpt_path={old}", out=tmp_path / "other"))
    one_line(err)
    assert not (tmp_path / "other" / "genotype.json").exists()
    # another seed means another weight/arch split of the train images: resuming would mix them
    with pytest.raises(ConfigError, match="different weight/arch data split"):
        run(make_cfg(*CELL, "seed=5", f"ckpt_path={old}", out=tmp_path / "reseeded"))
    with pytest.raises(ConfigError, match="different weight/arch data split") as err:
        run(make_cfg(*CELL, "search.arch_split=0.25", f"ckpt_path={old}", out=tmp_path / "resplit"))
    one_line(err)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not a zip", b"garbage"], ids=["empty", "bad_zip", "garbage"])
def test_corrupt_checkpoint_is_one_clear_error(make_cfg, tmp_path: Path, content: bytes) -> None:
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(content)
    with pytest.raises(ArtifactError, match="cannot read checkpoint") as err:
        run(make_cfg("stage=eval", f"ckpt={ckpt}", out=tmp_path / "eval"))
    assert str(ckpt) in one_line(err)
    assert not (tmp_path / "eval" / "metrics.json").exists()


# --- output dir and disk ---------------------------------------------------------------------


def test_output_dir_not_writable(make_cfg, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "readonly"
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == out else real_access(p, mode, **kw))
    with pytest.raises(ConfigError, match=r"paths.output_dir=.*readonly: folder is not writable") as err:
        run(make_cfg(*CELL, out=out))
    one_line(err)
    assert not any(out.iterdir())
    (tmp_path / "file").write_text("a regular file")
    with pytest.raises(ConfigError, match="cannot create it"):
        run(make_cfg(*CELL, out=tmp_path / "file" / "run"))


def test_disk_full_during_a_search_keeps_the_previous_genotype(make_cfg, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "run"
    previous = Genotype.from_ops(OPS, rsp=True).save(out / "genotype.json").read_bytes()
    real_write = Path.write_text

    def write_text(self: Path, data: str, *args, **kwargs) -> int:
        if self.name.startswith(".genotype.json."):  # the temp file of the atomic writer
            real_write(self, data[:20])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(
        ArtifactError, match=r"genotype\.json: No space left on device; the previous file .* intact"
    ) as err:
        run(make_cfg(*CELL, "trainer.max_epochs=1", "trainer.limit_train_batches=1", out=out))
    one_line(err)
    assert (out / "genotype.json").read_bytes() == previous
    assert not list(out.glob(".genotype.json.*"))


# --- through the CLI: one line, exit 2, no traceback -------------------------------------------


def _expect_cli_error(proc, *needles: str) -> str:  # noqa: ANN001
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rspnet: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_cli_bad_genotype_keeps_the_previous_run(cli, tmp_path: Path) -> None:
    bad, out = tmp_path / "genotype.json", tmp_path / "run"
    bad.write_text(GENOTYPES["unknown_op"][0])
    previous = _previous_run(out)
    _expect_cli_error(
        cli(*TRAIN, f"genotype={bad}", f"paths.output_dir={out}"), str(bad), "'edges[0].op'", "sep_conv_7x7"
    )
    # Hydra writes its run record (.hydra/, <job>.log) before rspnet runs; nothing else may change
    hydra_record = {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.relative_to(out).parts[0] == ".hydra" or p.name == "rspnet.log"
    }
    assert hydra_record <= {".hydra", ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "rspnet.log"}
    for extra in sorted(hydra_record, reverse=True):
        (out / extra).rmdir() if (out / extra).is_dir() else (out / extra).unlink()
    _assert_intact(out, previous)


def test_cli_output_dir_under_a_regular_file(cli, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a regular file")
    _expect_cli_error(
        cli(*CELL, f"paths.output_dir={tmp_path / 'file' / 'run'}"), "paths.output_dir=", "cannot create it"
    )


# a file dataset, not debug=tiny's synthetic one
ON_FILES = (
    tuple(o for o in CELL if not o.startswith("debug="))
    + ("trainer.enable_progress_bar=false", "logger=none")
    + (
        "dataset.crop_size=[16,32]",
        "dataset.batch_size=1",
        "dataset.val_batch_size=1",
        "train.select=last",
        "train.holdout_fraction=0",
    )
)  # the file fixtures hold 2 train images: both go to the search halves


@pytest.mark.slow
def test_cli_corrupt_image_during_a_search(cli, tmp_path: Path, cityscapes_root: Path) -> None:
    _truncated_png(cityscapes_root / TRAIN_IMG)
    proc = cli(
        *ON_FILES, "dataset=cityscapes", f"dataset.root={cityscapes_root}", f"paths.output_dir={tmp_path / 'run'}"
    )
    _expect_cli_error(proc, str(cityscapes_root / TRAIN_IMG), "cannot read image")
    assert not (tmp_path / "run" / "genotype.json").exists()


@pytest.mark.slow
def test_cli_missing_mapillary_config(cli, tmp_path: Path, make_mapillary) -> None:
    root = make_mapillary("v1.2")
    (root / "config_v1.2.json").unlink()
    proc = cli(*ON_FILES, "dataset=mapillary", f"dataset.root={root}", f"paths.output_dir={tmp_path / 'run'}")
    _expect_cli_error(proc, "config_v1.2.json", "not found")


@pytest.mark.slow
def test_cli_empty_split_folder(cli, tmp_path: Path, camvid_root: Path) -> None:
    for f in (camvid_root / "train").iterdir():
        f.unlink()
    proc = cli(*ON_FILES, "dataset=camvid", f"dataset.root={camvid_root}", f"paths.output_dir={tmp_path / 'run'}")
    _expect_cli_error(proc, str(camvid_root / "train"), "no images")


class _Broken(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> torch.Tensor:
        raise DataError(f"/data/img{index}.png: cannot read image (image file is truncated)")


def test_an_error_from_a_dataloader_worker_is_still_one_line() -> None:
    from rspnet.cli import _message

    loader = torch.utils.data.DataLoader(_Broken(), num_workers=1)
    with pytest.raises(DataError) as err:
        next(iter(loader))
    assert "Original Traceback" in str(err.value)  # how torch re-raises a worker's exception
    assert _message(err.value) == "/data/img0.png: cannot read image (image file is truncated)"


def test_config_is_saved_before_the_first_checkpoint(make_cfg, tmp_path: Path, monkeypatch) -> None:
    """config.yaml is deferred past the input checks, but a run killed after its first checkpoint has it."""
    from rspnet.utils.checkpoint import AtomicCheckpointIO

    out, seen = tmp_path / "run", []
    original = AtomicCheckpointIO.save_checkpoint
    monkeypatch.setattr(
        AtomicCheckpointIO,
        "save_checkpoint",
        lambda self, ckpt, path, storage_options=None: (
            seen.append((out / "config.yaml").is_file()),
            original(self, ckpt, path),
        )[1],
    )
    run(make_cfg(*CELL, "trainer.max_epochs=1", "trainer.limit_train_batches=1", "seed=7", out=out))
    assert seen and all(seen)
    assert "seed: 7" in (out / "config.yaml").read_text().splitlines()
