"""`python -m export ckpt_path=<path> format=onnx|torchscript out=<file>`: a classifier as one
self-describing, checked file."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cnnlab.configs import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def run(cfg: DictConfig) -> None:
    from cnnlab.analysis.export import check_request, export_checkpoint
    from cnnlab.errors import CheckpointError, exit_on_user_error
    from cnnlab.runs.record import resolve_checkpoint_path
    from cnnlab.tasks import task_of_trained

    with exit_on_user_error():
        check_request(cfg.format, cfg.out, cfg.overwrite, str(cfg.precision))
        task = task_of_trained(cfg.ckpt_path)
        if task is not None and task.export_refusal:  # a HOG + SVM run
            raise CheckpointError(f"{cfg.ckpt_path} is {task.export_refusal}")
        # a wrong path stops here, before the model is built; a run directory is resolved (and its fallback
        # checkpoint named) once
        checkpoint = resolve_checkpoint_path(cfg.ckpt_path)
        export_checkpoint(
            checkpoint,
            cfg.format,
            cfg.out,
            overwrite=cfg.overwrite,
            precision=str(cfg.precision),
            data_root=cfg.data.root,
            check_images=cfg.check_images,
            tolerance=cfg.tolerance,
        )


def main() -> None:
    from cnnlab.errors import hydra_errors_in_one_line

    with hydra_errors_in_one_line(CONFIG_DIR, "export"):
        run()


if __name__ == "__main__":
    main()
