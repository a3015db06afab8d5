"""Architectures: one module per model, each selected by a conf/model/<name>.yaml that names its class."""
