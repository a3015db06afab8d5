"""`python -m evaluate ckpt_path=<path> [data=<name>] [output_dir=...]`: a checkpoint's test-set analysis."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cnnlab.configs import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def run(cfg: DictConfig) -> float | None:
    from cnnlab.errors import exit_on_user_error
    from cnnlab.runs.record import resolve_checkpoint_path
    from cnnlab.tasks import classical_run, task_of_trained

    with exit_on_user_error():
        task = task_of_trained(cfg.ckpt_path)
        if task is not None:  # model=hog_svm: a fitted sklearn pipeline, no checkpoint
            metrics = task.resolve("evaluate")(
                classical_run(cfg.ckpt_path),
                cfg.output_dir,
                cfg.overwrite,
                dataset=cfg.data.get("name"),
                data_root=cfg.data.root,
                download=cfg.data.download,
            )
        else:
            # a wrong path stops here, before the heavy imports; a run directory is resolved (and its
            # fallback checkpoint named) once
            checkpoint = resolve_checkpoint_path(cfg.ckpt_path)
            from cnnlab.analysis.evaluation import evaluate_checkpoint

            metrics = evaluate_checkpoint(
                checkpoint,
                output_dir=cfg.output_dir,
                overwrite=cfg.overwrite,
                dataset=cfg.data.get("name"),
                data_root=cfg.data.root,
                download=cfg.data.download,
                batch_size=cfg.batch_size,
                device=cfg.device,
                tensorboard=cfg.tensorboard,
            )
    return metrics.get("accuracy")


def main() -> None:
    from cnnlab.errors import hydra_errors_in_one_line

    with hydra_errors_in_one_line(CONFIG_DIR, "evaluate"):
        run()


if __name__ == "__main__":
    main()
