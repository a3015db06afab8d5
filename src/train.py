"""`python -m train [overrides]`: train, test and record one model; `--multirun` sweeps."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

# conf/ beside src/ (editable install); absolute so Hydra finds it however this module is imported
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    from cnnlab.errors import exit_on_user_error
    from cnnlab.training import train

    with exit_on_user_error():
        record = train(cfg)
    # the value a Hydra sweeper (e.g. Optuna) optimises
    return record.get("best_val_acc")


if __name__ == "__main__":
    main()
