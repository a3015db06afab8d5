"""What a run prints: log lines as the message alone (warnings and errors marked as such), and
Lightning's lines each once, without its chatter and the warnings users cannot act on."""

from __future__ import annotations

import logging
import warnings


class ConsoleFormatter(logging.Formatter):
    """``message`` for INFO, ``warning: message`` / ``error: message`` above (train.log keeps the details)."""

    def __init__(self) -> None:
        super().__init__("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


class DropLightningChatter(logging.Filter):
    """Lightning's start-up lines that say nothing about this run (tips, absent accelerators)."""

    NOISE = (
        "💡 Tip",
        "GPU available",
        "TPU available",
        "HPU available",
        "Trainer already configured with model summary",
        "Loading `train_dataloader` to estimate",
        "`Trainer.fit` stopped",
        "Restoring states from the checkpoint",
        "Restored all states from the checkpoint",  # the resume line says where the run continues
        "Loaded model weights from the checkpoint",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


def quiet_library_noise() -> None:
    """Print each Lightning log line once, drop its chatter, and hide warnings users cannot act on.

    The run's own first line names the device (see ``config_line``).
    """
    if logging.getLogger().handlers:
        # `import lightning` gives its logger its own console handler; under Hydra the root logger
        # already prints to the console and train.log, so every line would appear twice.
        logging.getLogger("lightning").handlers.clear()
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropLightningChatter) for f in logger.filters):
            logger.addFilter(DropLightningChatter())
    # short runs: the training loss is logged per epoch anyway, and every log_every_n_steps steps
    warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # the COCO evaluator prints its whole 12-line summary at every validation
    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)
    # testing a checkpoint of an EMA run: its state_dict already holds the averaged weights
    warnings.filterwarnings("ignore", message=r".*WeightAveraging callback, but loading a checkpoint outside")
