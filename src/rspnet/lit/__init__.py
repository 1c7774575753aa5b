"""LightningModules: the bi-level search module and the fixed-architecture segmentation module."""
