"""cnnlab_bench: the benchmarks and measurements behind docs/speed.md and docs/performance.md.

It imports cnnlab and cnnlab never imports it (an import-linter contract in pyproject.toml), so the
library carries no measuring code. Each module is one benchmark:

- ``throughput``: ``python -m bench``, images/s, framework overhead and data paths of one configuration
- ``suite``: ``python -m bench suite=<name>``, a list of such commands run one by one (conf/suites/)
- ``whole_run`` / ``plain_script``: ``python -m train`` timed end to end against a hand-written script
- ``affine``: batched random affines against torchvision's per-image transform (and kornia)
- ``augment``: one epoch of augmented batches through each data path, model left out
- ``hog_extraction``: the parallel HOG extractor against a per-image loop
- ``export_speed``: an exported classifier in onnxruntime and TorchScript against PyTorch eager
"""
