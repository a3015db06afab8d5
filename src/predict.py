"""`python -m predict ckpt_path=<path> image=<file or folder> [output=preds.csv]`: top-5 classes per image."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cnnlab.configs import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def run(cfg: DictConfig) -> None:
    from cnnlab.errors import exit_on_user_error
    from cnnlab.runs.record import resolve_checkpoint_path
    from cnnlab.tasks import classical_run, task_of_trained

    dataset = cfg.get("data", {}).get("name")
    with exit_on_user_error():
        task = task_of_trained(cfg.ckpt_path)
        if task is not None:  # model=hog_svm: a fitted sklearn pipeline, no checkpoint
            run_dir = classical_run(cfg.ckpt_path)
            task.resolve("predict")(run_dir, cfg.image, cfg.output, cfg.overwrite, cfg.top_k, dataset=dataset)
            return
        # a wrong path stops here, before the heavy imports; a run directory is resolved (and its fallback
        # checkpoint named) once
        checkpoint = resolve_checkpoint_path(cfg.ckpt_path)
        from cnnlab.analysis.prediction import predict

        predict(
            checkpoint,
            cfg.image,
            output=cfg.output,
            overwrite=cfg.overwrite,
            top_k=cfg.top_k,
            batch_size=cfg.batch_size,
            device=cfg.device,
            dataset=dataset,
            output_dir=cfg.get("output_dir"),
            min_score=cfg.get("min_score", 0.5),
        )


def main() -> None:
    from cnnlab.errors import hydra_errors_in_one_line

    with hydra_errors_in_one_line(CONFIG_DIR, "predict"):
        run()


if __name__ == "__main__":
    main()
