"""`python -m bench [overrides]`: training / inference throughput, framework overhead, data-path speed;
`python -m bench suite=gpu`: a prepared list of such measurements and runs (conf/suites/)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from cnnlab.configs import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="bench")
def run(cfg: DictConfig) -> None:
    from cnnlab.errors import exit_on_user_error
    from cnnlab_bench.throughput import run_benchmark

    with exit_on_user_error():
        if cfg.get("suite"):
            from cnnlab_bench.suite import run_suite

            run_suite(cfg, Path(CONFIG_DIR), Path(cfg.paths.output_dir))
        else:
            run_benchmark(cfg, Path(cfg.paths.output_dir))


def main() -> None:
    from cnnlab.errors import hydra_errors_in_one_line

    with hydra_errors_in_one_line(CONFIG_DIR, "bench"):
        run()


if __name__ == "__main__":
    main()
