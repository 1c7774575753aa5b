"""The model zoo as package data (`rspnet.model_zoo`: zoo.yaml and the published weights, see rspnet.resources)."""
