"""Hydra configs shipped as package data (`rspnet.conf`, see rspnet.resources)."""
