"""Lightning's loggers, adapted: the CSV logger continues ``metrics.csv`` on resume instead of deleting
it; the TensorBoard logger keeps one event file per process."""

from __future__ import annotations

import csv
import os
import tempfile
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class CSVLogger(LightningCSVLogger):
    """``resume_step``: keep the rows logged before this global step (the checkpoint's) and append.

    Rows at or after it were logged after the checkpoint was saved; the resumed run logs them again.
    Without ``resume_step`` it behaves as Lightning's (an existing metrics.csv is replaced).
    """

    def __init__(self, *args: Any, resume_step: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and self.resume_step is not None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(self.log_dir, self.resume_step)
        return super().experiment


class _ContinuedWriter(ExperimentWriter):
    def __init__(self, log_dir: str, resume_step: int) -> None:
        self.resume_step = resume_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # Lightning's deletes metrics.csv here
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as file:
            reader = csv.DictReader(file)
            header = list(reader.fieldnames or [])
            kept = [row for row in reader if int(float(row.get("step") or 0)) < self.resume_step]
        with tempfile.NamedTemporaryFile(
            "w", dir=self.log_dir, delete=False, newline="", suffix=".tmp"
        ) as file:
            writer = csv.DictWriter(file, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(file.name, self.metrics_file_path)
        self.metrics_keys = header  # later rows are appended under the same columns


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger whose event file stays open after ``fit`` and ``test``.

    Lightning closes the writer at the end of each stage; the next write (the test metrics, the
    hparams, the evaluation's images) then opens another event file in the same folder. This one only
    flushes there; the run closes the writer when it is done (``close``).
    """

    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self.experiment.flush()
        if status == "success":
            self.save()  # hparams.yaml, as Lightning's does

    def close(self) -> None:
        if self._experiment is not None:
            self.experiment.close()
