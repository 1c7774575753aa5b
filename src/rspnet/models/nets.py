"""The `net` config group: which network family a run trains (conf/net/*.yaml).

An entry is `name`, a `_target_` (hydra.utils.instantiate) and that builder's keyword arguments; the
class count is passed in as `num_classes`. `net=rspnet` (the default) is the searched derived network:
`searched: true` says its builder also takes the run's config (the `model`, `rsp` and `head` groups size
it) and the genotype + macro artifacts. Any other entry is built from its keys alone, so a baseline is
`rspnet stage=train net=enet`, trained by the same SegModule recipe.

A checkpoint stores its entry (`checkpoint["rspnet"]["net"]["config"]`) and eval/predict/export rebuild
the network from it; a file may name only the builders in REBUILDABLE (a checkpoint cannot run code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from rspnet.errors import ArtifactError, ConfigError

SPEC_KEYS = ("name", "searched")  # the entry's own keys; everything else goes to the builder
# conf/net/rspnet.yaml, also the network of configs written before the group existed (old checkpoints)
RSPNET_SPEC: dict[str, Any] = {
    "name": "rspnet",
    "_target_": "rspnet.models.derived.DerivedNet.from_cfg",
    "searched": True,
}
# the builders a checkpoint's `net.config` may name (searched nets are rebuilt from genotype + macro instead)
REBUILDABLE = ("rspnet.models.enet.ENet", "rspnet.models.nets.monai_unet")


def monai_unet(num_classes: int, features: Sequence[int] = (32, 32, 64, 128, 256, 32)) -> nn.Module:
    """MONAI's 2-D BasicUNet (library default widths, random init) for `num_classes` classes."""
    from monai.networks.nets import BasicUNet

    net = BasicUNet(spatial_dims=2, in_channels=3, out_channels=int(num_classes), features=tuple(features))
    net.class_layers = ("final_conv",)  # the class-shaped layer (train.init_skip=classifiers)
    return net


def net_spec(cfg: DictConfig) -> dict[str, Any]:
    """The run's `net` entry as plain data, checked (a bad entry is one ConfigError); rspnet when absent."""
    node = cfg.get("net")
    if node is None:
        return dict(RSPNET_SPEC)
    spec = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    if not isinstance(spec, dict) or not isinstance(spec.get("_target_"), str) or not spec["_target_"]:
        raise ConfigError(
            f"net: expected a mapping with a `_target_` (the network builder), got {spec!r}; "
            "see conf/net/*.yaml (net=rspnet|enet|monai_unet)"
        )
    return spec


def is_searched(spec: Mapping[str, Any]) -> bool:
    """The entry is the searched rspnet net (built from genotype + macro + model/rsp/head)."""
    return bool(spec.get("searched", False))


def build_net(
    cfg: DictConfig, spec: Mapping[str, Any], num_classes: int, genotype: Any = None, macro: Any = None
) -> nn.Module:
    """The network of `spec` for `num_classes`; a searched one also gets `cfg` and the Genotype + MacroArch."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    name, target = spec.get("name", "?"), spec["_target_"]
    kwargs = {k: v for k, v in spec.items() if k not in SPEC_KEYS}
    try:
        factory = instantiate(kwargs, _partial_=True)
    except InstantiationException as e:
        raise ConfigError(f"net={name}: cannot load _target_ {target} ({_first_line(e)}); check net._target_") from e
    if is_searched(spec):
        if genotype is None or macro is None:
            raise ConfigError(f"net={name} is built from a genotype and a macro; pass genotype= (and macro_arch=)")
        return factory(cfg, genotype, macro, int(num_classes))
    try:
        return factory(num_classes=int(num_classes))
    except TypeError as e:
        raise ConfigError(f"net={name}: {target} rejects its arguments ({_first_line(e)}); check the net.* keys") from e


def check_rebuildable(net: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A checkpoint's stored `net.config`: a mapping naming one of REBUILDABLE (one ArtifactError otherwise)."""
    spec = net.get("config")
    target = spec.get("_target_") if isinstance(spec, dict) else None
    if target not in REBUILDABLE or is_searched(spec):
        raise ArtifactError(
            f"{source}: net.config names builder {target!r}, which rspnet does not rebuild from a file "
            f"(it rebuilds {', '.join(REBUILDABLE)}); load its net.* weights with "
            "rspnet.utils.checkpoint.net_state into that network yourself"
        )
    return spec


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]
