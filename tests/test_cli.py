"""CLI: Hydra composition, output dir conventions, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rspnet.cli import _run_dir
from rspnet.errors import ConfigError
from rspnet.stages import STAGES, get_stage
from rspnet.utils.runtime import output_dir

REPO = Path(__file__).resolve().parents[1]


def test_run_dir_resolver():
    assert _run_dir(None, "outputs/x") == "outputs/x"
    assert _run_dir("/data/run", "outputs/x") == "/data/run"


def test_every_stage_has_a_config_file_and_a_module_of_its_name_with_run():
    for name in STAGES:
        assert (REPO / "conf" / "stage" / f"{name}.yaml").is_file(), name
        assert (REPO / "src" / "rspnet" / "stages" / f"{name}.py").is_file(), name
        assert get_stage(name).__module__ == f"rspnet.stages.{name}" and get_stage(name).__name__ == "run"


def test_debug_tiny_is_the_tiny_synthetic_run_and_command_line_keys_win():
    from rspnet.composition import compose

    cfg = compose("debug=tiny", "dataset.num_val=2", "logger=csv")
    data = cfg.dataset
    assert (data.name, data.num_train, data.num_val, list(data.crop_size)) == ("synthetic", 8, 2, [32, 64])
    assert cfg.logger._target_.endswith("CSVLogger") and not cfg.print_config and not cfg.trainer.enable_progress_bar
    micro = compose("debug=tiny", "model=micro").model
    assert (micro.name, list(micro.scales), micro.layers, micro.search_layers) == ("micro", [4, 8], 1, 1)
    assert micro.cells_per_node == 1


def test_unknown_stage_is_a_config_error():
    with pytest.raises(ConfigError, match="stage=nope is unknown"):
        get_stage("nope")


def test_output_dir_not_creatable(make_cfg, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = make_cfg(f"paths.output_dir={blocker / 'run'}")
    with pytest.raises(ConfigError, match="paths.output_dir=.*cannot create"):
        output_dir(cfg)


def test_composition_defaults(make_cfg):
    cfg = make_cfg("stage=cell_search", "rsp=off", "search.arch_lr=0.003")
    assert cfg.stage.name == "cell_search"
    assert cfg.rsp.enabled is False
    assert cfg.search.arch_lr == pytest.approx(0.003)
    assert cfg.trainer.accelerator == "cpu"


def test_unknown_option_is_one_clear_error(rspnet_cli, tmp_path):
    proc = rspnet_cli("stage=data_stats", "foo=1", f"paths.output_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Could not override 'foo'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_prints_tree_saves_config_and_closes_wandb(make_cfg, tmp_path, capsys, monkeypatch):
    import yaml

    from rspnet.stages import run_stage

    closed = []
    monkeypatch.setattr("rspnet.stages.finish_loggers", lambda: closed.append(True))
    cfg = make_cfg(
        "stage=data_stats",
        "dataset.num_train=2",
        "dataset.num_val=1",
        "print_config=true",
        "stage.workers=1",
        out=tmp_path / "run",
    )
    result = run_stage(cfg)
    assert "CONFIG" in capsys.readouterr().out  # the rich tree
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["stage"]["name"] == "data_stats" and saved["paths"]["output_dir"] == str(tmp_path / "run")
    assert result["splits"]["train"]["num_images"] == 2
    assert closed == [True]


def test_loggers_close_even_when_the_stage_fails(make_cfg, tmp_path, monkeypatch):
    from rspnet.errors import DataError
    from rspnet.stages import run_stage

    closed = []
    monkeypatch.setattr("rspnet.stages.finish_loggers", lambda: closed.append(True))
    cfg = make_cfg("stage=data_stats", "dataset=camvid", f"dataset.root={tmp_path / 'missing'}")
    with pytest.raises(DataError):
        run_stage(cfg)
    assert closed == [True]


BAD_VALUES = [
    ("model.layers=abc", "model.layers=abc is invalid: expected a positive integer"),
    ("model.scales=[4,x]", r"model.scales=\[4,x\] is invalid: expected a list of positive integers"),
    ("dataset.batch_size=0", "dataset.batch_size=0 is invalid"),
    ("dataset.crop_size=[32]", r"dataset.crop_size=\[32\] is invalid: expected a list of 2 positive integers"),
    ("dataset.hflip=maybe", "dataset.hflip=maybe is invalid: expected true or false"),
    ("search.arch_lr=fast", "search.arch_lr=fast is invalid: expected a number >= 0"),
    ("search.select=foo", r"search.select=foo is invalid: expected one of argmax \| perturb"),
    ("search.perturb_split=val", r"search.perturb_split=val is invalid: expected one of arch \| select"),
    ("search.arch_split=1.5", "search.arch_split=1.5 is invalid"),
    ("search.second_order=yes", "search.second_order=yes is invalid"),
    ("macro.top_k=two", "macro.top_k=two is invalid"),
    ("train.lr=[1]", r"train.lr=\[1\] is invalid"),
    ("inference.mode=sliding", "inference.mode=sliding is invalid: expected one of whole | slide | multiscale_flip"),
    ("inference.sw_batch=0", "inference.sw_batch=0 is invalid: expected a positive integer"),
    ("trainer.max_epochs=1.5", "trainer.max_epochs=1.5 is invalid: expected an integer >= -1 or null"),
    ("trainer.limit_train_batches=few", "trainer.limit_train_batches=few is invalid"),
    ("seed=abc", "seed=abc is invalid: expected an integer"),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES, ids=[b[0].split("=")[0] for b in BAD_VALUES])
def test_a_wrong_type_is_one_config_error_naming_the_key(make_cfg, override: str, message: str) -> None:
    from rspnet.stages import run_stage

    with pytest.raises(ConfigError, match=message) as info:
        run_stage(make_cfg("stage=data_stats", override))
    assert "\n" not in str(info.value)


def test_every_shipped_recipe_passes_the_type_check(make_cfg) -> None:
    from rspnet.utils.validate import validate_config

    for recipe in sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")):
        validate_config(make_cfg(f"experiment={recipe}"))
    validate_config(make_cfg("model=paper", "trainer=ddp", "head=ocr", "dataset=mapillary"))


@pytest.mark.parametrize("override", ["model.layers=abc", "trainer.max_epochs=1.5"])
def test_cli_wrong_type_is_one_line(rspnet_cli, tmp_path, override: str) -> None:
    proc = rspnet_cli("stage=cell_search", override, f"paths.output_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rspnet: error:")]
    assert len(errors) == 1 and override.split("=")[0] in errors[0] and "Traceback" not in proc.stderr


def test_moved_inference_keys_are_one_line_naming_the_new_key(rspnet_cli, tmp_path) -> None:
    from rspnet.composition import compose

    proc = rspnet_cli("stage=eval", "train.inference=slide", f"paths.output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "rspnet: error: train.inference moved to the inference group: "
        "use inference.mode=slide (or the preset inference=slide)"
    )
    with pytest.raises(ConfigError, match=r"train.slide_crop moved to the inference group: use inference.slide_crop="):
        compose("train.slide_crop=[8,8]")
    cfg = compose("inference=slide", "inference.sw_batch=2")
    assert (cfg.inference.mode, cfg.inference.sw_batch, cfg.inference.slide_crop) == ("slide", 2, None)


def test_a_config_saved_before_the_inference_group_keeps_its_mode(tmp_path) -> None:
    import yaml

    from rspnet.composition import compose, from_saved

    saved = OmegaConf.to_container(compose("paths.output_dir=" + str(tmp_path / "old")), resolve=True)
    del saved["inference"]
    saved["train"].update(inference="multiscale_flip", scales=[1.0, 1.5])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    cfg = from_saved(tmp_path / "config.yaml", "eval")
    assert cfg.inference.mode == "multiscale_flip" and list(cfg.inference.scales) == [1.0, 1.5]
    assert cfg.inference.sw_batch == compose().inference.sw_batch  # the rest from the group's defaults
