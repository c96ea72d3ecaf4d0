"""Task metrics: semantic segmentation (confusion matrix, IoU, pixel accuracy) and depth (AbsRel, RMSE, delta).

Both accumulate over batches so a test split never has to sit in memory as
predictions; :meth:`SegMetrics.summary` / :meth:`DepthMetrics.summary` give
the figures.  Depth is compared in metres on pixels whose ground truth is
finite and positive.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SegMetrics:
    """Confusion matrix ``confusion[true, pred]`` (int64) over ``num_classes`` classes."""

    num_classes: int
    confusion: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.confusion is None:
            self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred: np.ndarray, true: np.ndarray) -> None:
        """Add predicted and true class ids (same shape, integers in 0..num_classes-1)."""
        pred, true = np.asarray(pred).ravel().astype(np.int64), np.asarray(true).ravel().astype(np.int64)
        if pred.shape != true.shape:
            raise ValueError(f"prediction has {pred.size} pixels, ground truth {true.size}")
        k = self.num_classes
        if pred.size and (pred.min() < 0 or pred.max() >= k or true.min() < 0 or true.max() >= k):
            raise ValueError(f"class ids must lie in 0..{k - 1}")
        self.confusion += np.bincount(true * k + pred, minlength=k * k).reshape(k, k)

    def iou(self) -> np.ndarray:
        """Per-class IoU = TP / (TP + FP + FN); NaN for a class absent from both prediction and truth."""
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def summary(self) -> dict:
        """``miou`` (mean over classes present), ``pixel_acc`` and ``iou`` (per class), all fractions in [0, 1]."""
        iou = self.iou()
        total = self.confusion.sum()
        return {"miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
                "pixel_acc": float(np.trace(self.confusion) / total) if total else float("nan"),
                "iou": iou.tolist()}


@dataclass
class DepthMetrics:
    """Running sums for AbsRel = mean |d - d*| / d*, RMSE (metres) and delta1 = share of max(d/d*, d*/d) < 1.25.

    With ``num_classes``, :meth:`update` also takes each pixel's true class and
    keeps AbsRel per class: where the depth error is, not only how large.
    """

    num_classes: int = 0
    pixels: int = 0
    abs_rel_sum: float = 0.0
    sq_err_sum: float = 0.0
    delta1_count: int = 0
    class_pixels: np.ndarray = field(default=None)  # type: ignore[assignment]
    class_abs_rel_sum: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.class_pixels is None:
            self.class_pixels = np.zeros(self.num_classes, np.int64)
        if self.class_abs_rel_sum is None:
            self.class_abs_rel_sum = np.zeros(self.num_classes, np.float64)

    def update(self, pred_m: np.ndarray, true_m: np.ndarray, labels: np.ndarray | None = None) -> None:
        """Add predicted and true depth in metres (same shape); predictions are clipped to > 0.

        ``labels``: the pixels' true class ids (same shape), required when
        the metrics keep classes (``num_classes`` > 0).
        """
        pred, true = np.asarray(pred_m, np.float64).ravel(), np.asarray(true_m, np.float64).ravel()
        if pred.shape != true.shape:
            raise ValueError(f"prediction has {pred.size} pixels, ground truth {true.size}")
        if self.num_classes and labels is None:
            raise ValueError(f"depth metrics per class ({self.num_classes}) need the pixels' labels")
        valid = np.isfinite(true) & (true > 0)
        pred, true = np.maximum(pred[valid], 1e-3), true[valid]
        rel = np.abs(pred - true) / true
        self.pixels += int(true.size)
        self.abs_rel_sum += float(np.sum(rel))
        self.sq_err_sum += float(np.sum((pred - true) ** 2))
        self.delta1_count += int(np.sum(np.maximum(pred / true, true / pred) < 1.25))
        if self.num_classes:
            lab = np.asarray(labels).ravel().astype(np.int64)
            if lab.shape != valid.shape:
                raise ValueError(f"labels have {lab.size} pixels, ground truth {valid.size}")
            lab = lab[valid]
            if lab.size and (lab.min() < 0 or lab.max() >= self.num_classes):
                raise ValueError(f"class ids must lie in 0..{self.num_classes - 1}")
            self.class_pixels += np.bincount(lab, minlength=self.num_classes)
            self.class_abs_rel_sum += np.bincount(lab, weights=rel, minlength=self.num_classes)

    def summary(self) -> dict:
        """``abs_rel``, ``rmse_m`` and ``delta1`` (fraction); with classes also ``abs_rel_by_class`` (NaN where absent)."""
        n = self.pixels
        by_class = {}
        if self.num_classes:
            with np.errstate(invalid="ignore", divide="ignore"):
                by_class = {"abs_rel_by_class": np.where(self.class_pixels > 0, self.class_abs_rel_sum
                                                         / np.maximum(self.class_pixels, 1), np.nan).tolist()}
        if not n:
            return {"abs_rel": float("nan"), "rmse_m": float("nan"), "delta1": float("nan"), **by_class}
        return {"abs_rel": self.abs_rel_sum / n, "rmse_m": float(np.sqrt(self.sq_err_sum / n)),
                "delta1": self.delta1_count / n, **by_class}
