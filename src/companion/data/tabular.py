"""Small real tabular datasets bundled with scikit-learn, split and scaled the production way."""

from __future__ import annotations

import numpy as np
import torch


def digits(val_frac: float = 0.25, n_train: int | None = None, seed: int = 0):
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes) as torch tensors.

    Returns ``(x_train (N, 64) float32, y_train (N,) long), (x_val, y_val)``. Features are
    standardized with statistics of the training split only (fitting on validation data leaks).
    ``n_train`` keeps only the first n training rows, for overfitting experiments.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0 < val_frac < 1:
        raise ValueError(f"val_frac must be in (0, 1), got {val_frac}")
    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=val_frac, random_state=seed, stratify=y)
    if n_train is not None:
        if not 10 <= n_train <= len(x_tr):
            raise ValueError(f"n_train must be in [10, {len(x_tr)}], got {n_train}")
        x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    mean, std = x_tr.mean(0), x_tr.std(0)
    std[std < 1e-8] = 1.0  # pixels that are always blank in training: dividing by ~0 would blow up validation
    as_x = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.tensor(np.asarray(a), dtype=torch.long)  # noqa: E731
    return (as_x(x_tr), as_y(y_tr)), (as_x(x_va), as_y(y_va))


def noisy_labels(y: torch.Tensor, rate: float, n_classes: int, seed: int = 0) -> torch.Tensor:
    """Replace a ``rate`` fraction of the labels by uniformly random classes (maybe the same one).

    ``y (N,) long -> (N,) long``. Noisy labels are the quickest way to make overfitting visible:
    a network that memorises them must get the corresponding validation examples wrong.

        >>> noisy_labels(torch.tensor([0, 1, 2, 3]), rate=0.0, n_classes=4)
        tensor([0, 1, 2, 3])
    """
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.dtype != torch.long:
        raise ValueError(f"y must be a 1-D long tensor of class labels, got {getattr(y, 'shape', type(y))}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"n_classes must be an int >= 1, got {n_classes!r}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"rate must be a number in [0, 1], got {rate!r}")
    if y.numel() and not (0 <= int(y.min()) and int(y.max()) < n_classes):
        raise ValueError(f"y must hold labels in [0, n_classes={n_classes}), got range [{int(y.min())}, {int(y.max())}]")
    g = torch.Generator().manual_seed(seed)
    flip = torch.rand(len(y), generator=g) < rate
    return torch.where(flip, torch.randint(0, n_classes, y.shape, generator=g), y)
