"""`python -m evaluate ckpt_path=<path> [data=<name>] [output_dir=...]`: a checkpoint's test-set analysis."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

# conf/ beside src/ (editable install); absolute so Hydra finds it however this module is imported
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    from cnnlab.analysis.evaluation import evaluate_checkpoint
    from cnnlab.errors import exit_on_user_error

    with exit_on_user_error():
        metrics = evaluate_checkpoint(
            cfg.ckpt_path,
            output_dir=cfg.output_dir,
            overwrite=cfg.overwrite,
            dataset=cfg.data.get("name"),
            data_root=cfg.data.root,
            batch_size=cfg.batch_size,
            device=cfg.device,
            tensorboard=cfg.tensorboard,
        )
    return metrics.get("accuracy")


if __name__ == "__main__":
    main()
