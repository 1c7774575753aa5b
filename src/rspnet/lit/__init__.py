"""LightningModules: the bi-level search module and the fixed-architecture segmentation module."""

from rspnet.utils.loggers import quiet_lightning

quiet_lightning()  # also in spawned DDP ranks, which import this package to unpickle the module
