"""cnnlab: PyTorch Lightning + Hydra experiments for small-image classification."""

__version__ = "0.1.0"
