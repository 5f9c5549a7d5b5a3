"""Metrics of novelty detection (label 1 = novel, higher score = more novel) and the min-max
normalisation used to add scores that live on different scales (LSA eq. 10).

ROC and PR curves come from scikit-learn; only what it lacks (EER, best F1 over thresholds)
is derived here from its curves."""
from __future__ import annotations

from typing import Any

from dataclasses import dataclass
import numpy as np
from sklearn.metrics import (average_precision_score, confusion_matrix, f1_score, precision_recall_curve,
                             precision_score, recall_score, roc_auc_score, roc_curve)

from .errors import DataError


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise DataError(f"{labels.size} labels but {scores.size} scores")
    if labels.size == 0:
        raise DataError("no samples to evaluate")
    if not np.isin(labels, (0, 1)).all():
        raise DataError("labels must be 0 (normal) or 1 (novel)")
    if not np.isfinite(scores).all():
        raise DataError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or infinite")
    if labels.min() == labels.max():
        which = "novel" if labels[0] == 1 else "normal"
        raise DataError(f"only {which} samples in the evaluation set: AUROC/EER need both normal and novel")
    return labels.astype(np.int64), scores


def auroc(labels, scores) -> float:
    labels, scores = _check(labels, scores)
    return float(roc_auc_score(labels, scores))


def aupr(labels, scores) -> float:
    """Average precision with the novel class as positive."""
    labels, scores = _check(labels, scores)
    return float(average_precision_score(labels, scores))


def eer(labels, scores) -> tuple[float, float]:
    """Equal error rate and its threshold: where FPR = FNR (= 1 − TPR), linearly interpolated
    between the two ROC points that bracket the crossing."""
    labels, scores = _check(labels, scores)
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # rises from −1 to +1 along the curve
    # the first point at or past the crossing; never the first point, which is (FPR, FNR) = (0, 1)
    # at threshold +inf, so the bracket (i − 1, i) always exists and thr[i] is finite
    i = int(np.flatnonzero(diff >= 0)[0])
    a = diff[i - 1] / (diff[i - 1] - diff[i])  # fraction of the way from point i−1 to i (1 when on i)
    rate = fpr[i - 1] + a * (fpr[i] - fpr[i - 1])
    t_lo = thr[i - 1] if np.isfinite(thr[i - 1]) else thr[i]
    threshold = t_lo + a * (thr[i] - t_lo)
    return float(rate), float(threshold)


def _check_positive(positive: str) -> None:
    if positive not in ("novel", "normal"):
        raise ValueError(f"positive must be 'novel' or 'normal', got {positive!r}")


def f1_at(labels, scores, threshold: float, positive: str = "novel") -> float:
    """F1 when `score >= threshold` is called novel; `positive="normal"` scores the normal class
    as the positive one (ALOCC's outlier-detection F1 may count that way: the paper does not say)."""
    _check_positive(positive)
    labels, scores = _check(labels, scores)
    novel = (scores >= threshold).astype(np.int64)
    if positive == "normal":
        return float(f1_score(1 - labels, 1 - novel, zero_division=0.0))
    return float(f1_score(labels, novel, zero_division=0.0))


def f1_best(labels, scores, positive: str = "novel") -> tuple[float, float]:
    """Best F1 over all thresholds and the threshold giving it: `score >= threshold` is novel.
    With `positive="normal"` the F1 is the normal class's."""
    _check_positive(positive)
    labels, scores = _check(labels, scores)
    if positive == "normal":
        # normal is the positive class and higher −score means "more normal"; the curve's
        # thresholds t call score <= −t normal, i.e. score >= next-larger score novel
        precision, recall, thr = precision_recall_curve(1 - labels, -scores)
    else:
        precision, recall, thr = precision_recall_curve(labels, scores)
    p, r = precision[:-1], recall[:-1]  # the last point has no threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    i = int(np.argmax(f1))
    if positive == "novel":
        return float(f1[i]), float(thr[i])
    # normal iff score <= −thr[i]: the novel threshold is the smallest score above it
    above = scores[scores > -thr[i]]
    return float(f1[i]), float(above.min()) if above.size else float(np.inf)


def at_threshold(labels, scores, threshold: float) -> dict[str, Any]:
    """What a deployed model does at its threshold, calling `score > threshold` novel as `predict`
    does: counts, precision, recall and F1 of the novel class, and the share of normal samples
    flagged (false alarms) and of novel ones let through (misses)."""
    labels, scores = _check(labels, scores)
    called = (scores > threshold).astype(np.int64)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(labels, called, labels=[0, 1]).ravel())
    return {"threshold": float(threshold), "flagged": tp + fp, "true_novel": tp, "false_alarms": fp,
            "missed": fn, "true_normal": tn,
            "precision": float(precision_score(labels, called, zero_division=0.0)),
            "recall": float(recall_score(labels, called, zero_division=0.0)),
            "f1": float(f1_score(labels, called, zero_division=0.0)),
            "false_alarm_rate": fp / max(fp + tn, 1), "miss_rate": fn / max(fn + tp, 1)}


def auroc_by_group(labels, scores, groups, names: list[str] | None = None) -> dict[str, float]:
    """AUROC of the normal samples against each group of novel ones alone (`groups`: an integer
    per sample, e.g. its class; `names` of the groups): which kinds of novelty are told apart."""
    labels, scores = _check(labels, scores)
    groups = np.asarray(groups)
    if groups.shape != labels.shape:
        raise DataError(f"{len(labels)} labels but groups of shape {groups.shape}")
    novel = labels == 1
    out = {}
    for g in np.unique(groups[novel]):
        keep = ~novel | (groups == g)
        out[names[g] if names is not None and g < len(names) else str(g)] = auroc(labels[keep], scores[keep])
    return out


def evaluate(labels, scores) -> dict[str, float]:
    """The standard set of metrics for one score component."""
    e, e_thr = eer(labels, scores)
    f1, f1_thr = f1_best(labels, scores)
    f1_normal, f1_normal_thr = f1_best(labels, scores, positive="normal")
    out = {"auroc": auroc(labels, scores), "aupr": aupr(labels, scores), "eer": e,
           "eer_threshold": e_thr, "f1_best": f1, "f1_best_threshold": f1_thr,
           "f1_best_normal": f1_normal, "f1_best_normal_threshold": f1_normal_thr}
    if not np.isfinite(f1_normal_thr):
        # the normal class's best F1 calls every sample normal: no score is the threshold
        out["f1_best_normal_threshold"] = None
        out["f1_best_normal_threshold_note"] = "every sample called normal (no finite threshold)"
    return out


def curves(labels, scores, points: int = 101, bins: int = 30) -> dict[str, Any]:
    """What a report draws of one score, small enough to keep with the run's record: the ROC
    curve's TPR at `points` evenly spaced FPRs (the step curve's upper value at each), and
    histograms of the normal and novel scores over shared bins (1st to 99th percentile, the
    tails counted in the end bins)."""
    labels, scores = _check(labels, scores)
    fpr, tpr, _ = roc_curve(labels, scores)
    grid = np.linspace(0.0, 1.0, points)
    tpr_at = np.interp(grid, fpr, tpr, right=1.0)
    # a vertical step of the ROC at an FPR on the grid: take its top, as the curve reaches it
    for j, f in enumerate(grid):
        on = tpr[fpr == f]
        if on.size:
            tpr_at[j] = on.max()
    lo, hi = np.percentile(scores, [1.0, 99.0])
    if hi <= lo:
        lo, hi = float(scores.min()), float(scores.max()) + 1e-12
    edges = np.linspace(lo, hi, bins + 1)
    clipped = np.clip(scores, lo, hi)
    hist = lambda part: np.histogram(clipped[labels == part], edges)[0].astype(int).tolist()  # noqa: E731
    return {"roc": {"fpr": [round(float(f), 4) for f in grid], "tpr": [round(float(t), 5) for t in tpr_at]},
            "histogram": {"edges": [float(f"{e:.6g}") for e in edges], "normal": hist(0), "novel": hist(1)}}


@dataclass
class MinMax:
    """Min-max scaling fitted on a reference set: (s − min) / (max − min) (LSA eq. 10, with the
    misprinted numerator corrected). Scores beyond the reference range map outside [0, 1];
    that is deliberate, a test sample can be more novel than anything seen in validation."""

    low: float
    high: float

    @classmethod
    def fit(cls, reference) -> "MinMax":
        reference = np.asarray(reference, dtype=np.float64).ravel()
        if reference.size == 0:
            raise DataError("cannot fit a normalisation on an empty reference set")
        if not np.isfinite(reference).all():
            raise DataError("the normalisation reference set contains NaN or infinite scores")
        return cls(float(reference.min()), float(reference.max()))

    @property
    def span(self) -> float:
        """The divisor: max − min, or 1 for a constant reference (e.g. a single sample), which
        cannot set a scale and is only shifted."""
        return self.high - self.low if self.high > self.low else 1.0

    def __call__(self, scores) -> np.ndarray:
        return (np.asarray(scores, dtype=np.float64) - self.low) / self.span

    def scale_part(self, scores, parts: int = 1) -> np.ndarray:
        """The scaling applied to one of `parts` equal shares of a score (a pixel of a map whose
        pixels sum to the score): the shares of the scaled score add up to the scaled score."""
        return (np.asarray(scores, dtype=np.float64) - self.low / parts) / self.span

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}
