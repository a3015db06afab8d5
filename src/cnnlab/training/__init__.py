"""Training a network: the LightningModule, its optimizer groups and schedules, TTA, the LR finder,
the fit."""
