"""Shipped genotypes as package data (`rspnet.genotypes`, see rspnet.resources)."""
