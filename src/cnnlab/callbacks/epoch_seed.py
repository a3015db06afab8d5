"""Each epoch's randomness from (seed, epoch) alone: two runs with one seed agree, and a resumed run
replays the epoch it lost."""

from __future__ import annotations

import lightning as L
from lightning.fabric.utilities.seed import seed_everything

from cnnlab.runs.determinism import rng_states, set_rng_states


class EpochSeed(L.Callback):
    """Reseed torch, numpy and random (and the DataLoader workers' base seed) at every epoch start.

    Lightning's checkpoints do not hold the random generators' states, so without this a run resumed
    from the end of epoch N would shuffle and augment epoch N+1 differently from an uninterrupted run.
    (DataLoader workers augment each image from its own seed, drawn by the training sampler:
    ``cnnlab.data.resumable``.) A checkpoint saved mid-epoch (step checkpoints) also carries the
    generators' states, which a resume restores: dropout and MixUp continue where they were.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._seeded_epoch: int | None = None

    def _seed(self, epoch: int) -> None:
        # distinct per epoch and per run seed; 2**31 - 1 is prime, so nearby seeds do not collide
        seed_everything((self.seed * 1_000_003 + epoch) % (2**31 - 1), workers=True, verbose=False)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # On resume Lightning creates the data iterator of the epoch it continues (drawing the shuffle
        # order) before on_train_epoch_start: seed that epoch here, where an uninterrupted run seeds it.
        progress = (
            checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
        )
        if trainer.training and "processed" in progress:
            self._seeded_epoch = int(progress["processed"])
            self._seed(self._seeded_epoch)
            if "cnnlab_mid_epoch_rng" in checkpoint:
                set_rng_states(checkpoint["cnnlab_mid_epoch_rng"])

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        served = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        if trainer.training and 0 < served < trainer.num_training_batches:
            checkpoint["cnnlab_mid_epoch_rng"] = rng_states()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._seeded_epoch != trainer.current_epoch:
            self._seed(trainer.current_epoch)
        self._seeded_epoch = None
