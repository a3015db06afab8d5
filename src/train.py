"""`python -m train [overrides]`: train, test and record one model; `--multirun` sweeps."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from cnnlab.configs import CONFIG_DIR
from cnnlab.runs.sweeps import register_resolvers

register_resolvers()  # before Hydra resolves hydra.sweep.subdir


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def run(cfg: DictConfig) -> float | None:
    from cnnlab.errors import exit_on_user_error
    from cnnlab.runs.preflight import check_before_imports
    from cnnlab.runs.sweeps import failure_recorded, sweep_goes_on

    # a failed run records its error in its directory; in a sweep the other jobs still run
    with sweep_goes_on(), exit_on_user_error(), failure_recorded(cfg):
        check_before_imports(cfg)  # data root, learning rate, accelerator: before torch and Lightning load
        from cnnlab.pipeline import train
        from cnnlab.runs.distributed import ranks_join_this_job
        from cnnlab.tasks import task_of_record

        with ranks_join_this_job(cfg):
            # the value a Hydra sweeper (e.g. Optuna) optimises: the task's best validation figure
            record = train(cfg)
            return record.get(task_of_record(record).best_val_field)
    return float("nan")  # a failed sweep job: sweepers count NaN as a failed trial


def main() -> None:
    """``resume=<run dir>`` becomes that run's saved overrides before Hydra parses the command line."""
    from cnnlab.errors import exit_on_user_error, hydra_errors_in_one_line
    from cnnlab.runs.resume import resume_argv

    with exit_on_user_error():
        sys.argv = resume_argv(sys.argv)
    with hydra_errors_in_one_line(CONFIG_DIR, "train"):
        run()


if __name__ == "__main__":
    main()
