"""`python -m predict ckpt_path=<path> image=<file or folder> [output=preds.csv]`: top-5 classes per image."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

# conf/ beside src/ (editable install); absolute so Hydra finds it however this module is imported
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    from cnnlab.analysis.prediction import predict
    from cnnlab.errors import exit_on_user_error

    with exit_on_user_error():
        predict(
            cfg.ckpt_path,
            cfg.image,
            output=cfg.output,
            overwrite=cfg.overwrite,
            top_k=cfg.top_k,
            batch_size=cfg.batch_size,
            device=cfg.device,
            dataset=cfg.get("data", {}).get("name"),
            output_dir=cfg.get("output_dir"),
            min_score=cfg.get("min_score", 0.5),
        )


if __name__ == "__main__":
    main()
