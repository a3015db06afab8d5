"""k-fold cross-validation: which training files form the validation fold (stratified, seeded)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold

from cnnlab.errors import ConfigError


def check_fold(folds: int | None, fold: int | None) -> None:
    """Reject a fold setting before any file is read; ``folds=None`` means no cross-validation."""
    if folds is None:
        return
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(
            f"data.folds={folds} is invalid; use data.folds >= 2 (or null for a plain hold-out)"
        )
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(f"data.fold={fold} is invalid for data.folds={folds}; use 0 <= data.fold < {folds}")


def fold_split(labels: np.ndarray, folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, validation indices), sorted, of fold ``fold`` of a stratified, shuffled K-fold.

    The partition depends only on the labels, ``folds`` and ``seed`` (``data.split_seed``), so the K runs
    of one cross-validation see disjoint validation folds that together cover every training file, each
    with the class proportions of the whole.
    """
    check_fold(folds, fold)
    labels = np.asarray(labels)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    try:
        splits = list(splitter.split(np.zeros(len(labels)), labels))
    except ValueError as error:  # e.g. more folds than images of every class
        raise ConfigError(
            f"data.folds={folds} cannot split {len(labels)} images: {error}; use fewer folds"
        ) from error
    train_indices, val_indices = splits[fold]
    return np.sort(train_indices), np.sort(val_indices)
