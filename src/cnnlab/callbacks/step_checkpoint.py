"""last.ckpt every N optimizer steps, so a killed run loses at most N steps."""

from __future__ import annotations

from cnnlab.callbacks.model_checkpoint import ModelCheckpoint


class StepCheckpoint(ModelCheckpoint):
    """The project's ModelCheckpoint used for step checkpoints only (``save_top_k=0``, ``save_last``):
    it writes last.ckpt as a file of its own, replacing a link to an epoch's checkpoint rather than
    writing through it."""
