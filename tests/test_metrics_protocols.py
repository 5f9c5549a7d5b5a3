"""Metrics against scikit-learn / hand-computed values; protocol counts and determinism."""
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score

from oneclass import metrics, protocols
from oneclass.data.images import ImageData
from oneclass.errors import DataError


def test_auroc_and_aupr_against_hand_computed_values_with_ties():
    labels = [0, 0, 1, 1]
    scores = [0.1, 0.4, 0.4, 0.8]  # one tie between classes counts one half
    assert metrics.auroc(labels, scores) == pytest.approx(0.875)
    # AP = Σ (R_n − R_{n−1}) P_n: thresholds 0.8 (P=1, R=.5), 0.4 (P=2/3, R=1)
    assert metrics.aupr(labels, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_metrics_match_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = rng.normal(size=500) + labels
    assert metrics.auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    best, thr = metrics.f1_best(labels, scores)
    brute = max(f1_score(labels, scores >= t) for t in np.unique(scores))
    assert best == pytest.approx(brute)
    assert metrics.f1_at(labels, scores, thr) == pytest.approx(best)


@pytest.mark.parametrize("outlier_fraction", [0.1, 0.5])
def test_f1_with_the_normal_class_positive(outlier_fraction):
    rng = np.random.default_rng(1)
    n_out = int(400 * outlier_fraction)
    labels = np.r_[np.zeros(400 - n_out, int), np.ones(n_out, int)]
    scores = np.round(rng.normal(size=400) + labels, 1)  # rounded: many ties
    best, thr = metrics.f1_best(labels, scores, positive="normal")
    # brute force: every "score >= t is novel" rule, the normal class's F1 from scikit-learn
    cuts = np.r_[np.unique(scores), np.inf]
    brute = max(f1_score(1 - labels, (scores < t).astype(int)) for t in cuts)
    assert best == pytest.approx(brute)
    assert metrics.f1_at(labels, scores, thr, positive="normal") == pytest.approx(best)
    # calling everything normal already scores 2(1 − p)/(2 − p): the baseline this F1 is read against
    assert best >= 2 * (1 - outlier_fraction) / (2 - outlier_fraction) - 1e-12
    with pytest.raises(ValueError, match="positive"):
        metrics.f1_best(labels, scores, positive="inliers")


def test_eer_perfect_random_and_interpolated():
    assert metrics.eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == pytest.approx(0.0)
    assert metrics.eer([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])[0] == pytest.approx(1.0)
    # the crossing at the first finite threshold: that threshold, never one made from +inf
    assert metrics.eer([0, 1], [0.9, 0.1]) == (pytest.approx(1.0), pytest.approx(0.9))
    # 4 normal, 4 novel, one of each on the wrong side: FPR = FNR = 0.25 at the crossing
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.65, 0.6, 0.7, 0.8, 0.9]
    rate, thr = metrics.eer(labels, scores)
    assert rate == pytest.approx(0.25)
    fpr = np.mean(np.array(scores)[:4] >= thr)
    assert fpr in (0.0, 0.25)
    # tied scores make the ROC jump diagonally from (FPR, FNR) = (0, 0.5) to (0.5, 0): the
    # crossing lies half-way, at 0.25 and threshold 0.7 (snapping to a point would give 0.5)
    rate, thr = metrics.eer([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9])
    assert rate == pytest.approx(0.25) and thr == pytest.approx(0.7)
    rate, _ = metrics.eer([0, 1], [0.5, 0.5])
    assert rate == pytest.approx(0.5)
    # a crossing on a diagonal segment away from the axes: (FPR, FNR) from (1/3, 2/3) at 0.8 to
    # (2/3, 1/3) at the tie 0.5 crosses at 1/2, half-way, threshold 0.65
    rate, thr = metrics.eer([0, 1, 1, 0, 0, 1], [0.9, 0.8, 0.5, 0.5, 0.2, 0.1])
    assert rate == pytest.approx(0.5) and thr == pytest.approx(0.65)
    # a crossing exactly on a ROC point: that point's rate and threshold
    assert metrics.eer([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]) == (pytest.approx(0.5), pytest.approx(0.6))
    # ... also when that point lies on a straight run of the curve (two ties of one normal and one
    # novel sample): the threshold is that point's own 0.6, not one interpolated between corners
    labels, scores = [1, 1, 0, 1, 0, 1, 0, 0], [0.95, 0.9, 0.6, 0.6, 0.4, 0.4, 0.2, 0.1]
    assert metrics.eer(labels, scores) == (pytest.approx(0.25), pytest.approx(0.6))


def test_single_class_and_bad_inputs_raise_clear_errors():
    with pytest.raises(DataError, match="only normal samples"):
        metrics.auroc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="only novel samples"):
        metrics.evaluate([1, 1], [0.1, 0.2])
    with pytest.raises(DataError, match="3 labels but 2 scores"):
        metrics.auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(DataError, match="^1 scores are NaN or infinite$"):
        metrics.auroc([0, 1, 0], [0.1, np.nan, 0.3])
    with pytest.raises(DataError, match="^2 scores are NaN or infinite$"):
        metrics.eer([0, 1, 0], [np.inf, np.nan, 0.3])
    with pytest.raises(DataError, match="only novel samples"):
        metrics.auroc([1], [0.3])  # a single sample
    with pytest.raises(DataError, match="^no samples to evaluate$"):
        metrics.auroc([], [])
    with pytest.raises(DataError, match=r"^labels must be 0 \(normal\) or 1 \(novel\)$"):
        metrics.f1_best([0, 2, 1], [0.1, 0.2, 0.3])
    # scores that numpy can read as numbers are accepted as they come (strings from a CSV)
    assert metrics.auroc([0, 1], ["0.1", "0.7"]) == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_best_f1_is_the_best_over_every_threshold(seed):
    """Against brute force with scikit-learn's f1_score at every distinct score, both
    conventions, on poor detectors too (best F1 below 0.5) and with a normal sample on top."""
    from sklearn.metrics import f1_score
    rng = np.random.default_rng(seed)
    labels = (rng.random(40) < 0.3).astype(int)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(size=40) + (0.4 - 0.3 * seed) * labels, 1)  # ties, some inverted
    scores[0] = scores.max() + 1.0  # a normal sample scored most novel
    for positive in ("novel", "normal"):
        best, thr = metrics.f1_best(labels, scores, positive=positive)
        def f1(t):
            novel = (scores >= t).astype(int)
            return f1_score(labels, novel, zero_division=0) if positive == "novel" else \
                f1_score(1 - labels, 1 - novel, zero_division=0)
        candidates = list(np.unique(scores)) + [np.inf]
        assert best == pytest.approx(max(f1(t) for t in candidates))
        assert f1(thr) == pytest.approx(best)

def test_minmax_uses_reference_statistics_only():
    norm = metrics.MinMax.fit([2.0, 4.0, 6.0])
    np.testing.assert_allclose(norm([2.0, 6.0, 8.0, 0.0]), [0.0, 1.0, 1.5, -0.5])
    assert metrics.MinMax.fit([3.0])([3.0, 4.0]).tolist() == [0.0, 1.0]  # constant reference: shift only
    with pytest.raises(DataError, match="^cannot fit a normalisation on an empty reference set$"):
        metrics.MinMax.fit([])
    with pytest.raises(DataError, match="^the normalisation reference set contains NaN or infinite scores$"):
        metrics.MinMax.fit([0.5, np.inf])


def test_sum_of_normalised_scores_differs_from_raw_sum():
    # why LSA normalises: a score on a large scale would otherwise dominate the sum
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(200), np.ones(200)]
    informative = labels + rng.normal(0, 0.5, 400)
    noisy_large = rng.normal(0, 100, 400)
    raw = metrics.auroc(labels, informative + noisy_large)
    ref = np.arange(400) < 100
    norm = (metrics.MinMax.fit(informative[ref])(informative) + metrics.MinMax.fit(noisy_large[ref])(noisy_large))
    assert metrics.auroc(labels, norm) > raw + 0.1


# ---- protocols ------------------------------------------------------------------------------------
def test_standard_protocol_counts(embedded_data):
    train, test = embedded_data
    s = protocols.standard(train, test, 3, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (450, 50, 2000)
    assert (s.train.labels == 3).all() and (s.val.labels == 3).all()
    assert s.test_labels.sum() == 1800 and s.info["counts"]["test_normal"] == 200
    assert s.info["class_counts"]["test"]["3"] == 200
    again = protocols.standard(train, test, 3, seed=0)
    assert (again.val.images == s.val.images).all()
    other = protocols.standard(train, test, 3, seed=1)
    assert not (other.val.images == s.val.images).all()


def test_memae_protocol_counts(embedded_data):
    train, test = embedded_data
    s = protocols.memae(train, test, 5, seed=0)
    n_normal = 700
    n_test_in = n_normal - round(n_normal * 2 / 3)
    assert len(s.train) + len(s.val) == round(n_normal * 2 / 3)
    assert s.info["counts"]["test_normal"] == n_test_in
    assert s.info["counts"]["test_novel"] == round(0.3 * n_test_in)
    assert (s.test.labels[s.test_labels == 1] != 5).all() and (s.test.labels[s.test_labels == 0] == 5).all()


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_outlier_fraction_protocol(embedded_data, fraction):
    train, test = embedded_data
    s = protocols.outlier_fraction(train, test, 2, seed=0, outlier_fraction=fraction)
    assert s.test_labels.mean() == pytest.approx(fraction, abs=0.002)
    assert s.info["outlier_fraction"] == fraction and s.info["counts"]["test_normal"] == 200


def test_coil_protocol(embedded_data):
    train, test = embedded_data
    s = protocols.coil(train, test, 7, seed=4)
    assert s.info["counts"]["test_normal"] == s.info["counts"]["test_novel"] == 140
    assert len(s.train) + len(s.val) == 560


def test_unknown_protocol_and_missing_class(embedded_data):
    train, test = embedded_data
    with pytest.raises(DataError, match="known protocols: standard, memae"):
        protocols.make("nope", train, test, 0)
    with pytest.raises(DataError, match="no samples of class 11"):
        protocols.standard(train, test, 11)
    # the error names the split each protocol looked in
    flagged = ImageData(test.images, test.labels, list(test.classes), novel=torch.zeros(len(test), dtype=torch.bool))
    for name, where in (("standard", "training"), ("outlier-fraction", "training"), ("mvtec", "training"),
                        ("memae", "pooled"), ("coil", "pooled")):
        with pytest.raises(DataError, match=f"^no samples of class 11 in the {where} split$"):
            protocols.make(name, train, flagged, 11)
    no_threes = flagged.subset(np.flatnonzero(test.labels.numpy() != 3))
    for name in ("outlier-fraction", "mvtec"):
        with pytest.raises(DataError, match="^no samples of class 3 in the test split$"):
            protocols.make(name, train, no_threes, 3)


def _keys(data):
    return {bytes(img.numpy().tobytes()) for img in data.images}


@pytest.mark.parametrize("name, options", [("standard", {"selection": 20}), ("memae", {"selection": 200}),
                                           ("coil", {}), ("outlier-fraction", {"outlier_fraction": 0.3}),
                                           ("coil", {"selection": 30}),
                                           ("outlier-fraction", {"outlier_fraction": 0.5, "selection": 40})])
def test_no_image_is_in_two_parts_of_a_split(embedded_data, name, options):
    """No leakage: training, validation, test and the labelled selection set share no image."""
    train, test = embedded_data
    s = protocols.make(name, train, test, 4, seed=2, **options)
    parts = {"train": _keys(s.train), "val": _keys(s.val), "test": _keys(s.test)}
    assert (s.selection is not None) == ("selection" in options)  # there exactly when asked for
    assert s.info["protocol"] == name and s.info["counts"]["train"] == len(s.train)
    if s.selection is not None:
        parts["selection"] = _keys(s.selection)
        n = options["selection"]
        assert s.selection_labels.sum() == n and (s.selection.labels[s.selection_labels == 0] == 4).all()
    names = sorted(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not parts[a] & parts[b], f"{a} and {b} share images"
    assert len(parts["train"]) == len(s.train)  # (the embedded images are distinct)


def test_evaluate_reports_each_metric_under_its_name():
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(60), np.ones(40)].astype(int)
    scores = labels * 0.8 + rng.normal(0, 0.6, 100)
    m = metrics.evaluate(labels, scores)
    e, e_thr = metrics.eer(labels, scores)
    f1, f1_thr = metrics.f1_best(labels, scores)
    f1n, f1n_thr = metrics.f1_best(labels, scores, positive="normal")
    assert m == {"auroc": metrics.auroc(labels, scores), "aupr": metrics.aupr(labels, scores), "eer": e,
                 "eer_threshold": e_thr, "f1_best": f1, "f1_best_threshold": f1_thr,
                 "f1_best_normal": f1n, "f1_best_normal_threshold": f1n_thr}
    assert f1n != f1  # the two conventions differ here, so swapping them cannot pass
    # when the normal class's best F1 calls every sample normal there is no finite threshold:
    # null in the (standard) JSON, and the reason beside it
    m = metrics.evaluate([0, 0, 0, 1], [0.9, 0.8, 0.7, 0.1])
    assert m["f1_best_normal"] == pytest.approx(6 / 7)
    assert m["f1_best_normal_threshold"] is None
    assert m["f1_best_normal_threshold_note"] == "every sample called normal (no finite threshold)"


def _counts(s):
    return (len(s.train), len(s.val), len(s.test), int(s.test_labels.sum()))


def test_every_protocol_with_its_defaults_gives_the_papers_counts_and_records_them(embedded_data):
    """Defaults as `evaluate` calls them (10% validation; memae: 2:1 split, anomalies 30% of the
    test inliers; outlier-fraction: half; coil: 80/20 with 15% validation), on the embedded
    subset (500 training + 200 test images per digit); the record says exactly that."""
    train, test = embedded_data
    s = protocols.make("standard", train, test, 3)
    assert _counts(s) == (450, 50, 2000, 1800)
    assert {k: v for k, v in s.info.items() if k != "class_counts"} == {
        "protocol": "standard", "normal_class": 3, "normal_class_name": "3", "seed": 0, "val_fraction": 0.1,
        "counts": {"train": 450, "val": 50, "test": 2000, "test_normal": 200, "test_novel": 1800}}
    assert s.info["class_counts"] == {"train": {"3": 450}, "val": {"3": 50}, "test": {str(k): 200 for k in range(10)}}
    m = protocols.make("memae", train, test, 5)   # 700 fives pooled: 467 train+val, 233 test inliers
    assert _counts(m) == (420, 47, 233 + 70, 70)
    assert (m.info["anomaly_ratio"], m.info["val_fraction"], m.info["seed"]) == (0.3, 0.1, 0)
    o = protocols.make("outlier-fraction", train, test, 2)
    assert _counts(o) == (450, 50, 400, 200) and o.info["outlier_fraction"] == 0.5
    test_counts = o.info["class_counts"]["test"]
    assert test_counts["2"] == 200 and sum(v for k, v in test_counts.items() if k != "2") == 200
    c = protocols.make("coil", train, test, 7)    # 700 sevens: 560 train+val (15% val), 140 + 140 test
    assert _counts(c) == (476, 84, 280, 140)
    assert (c.info["train_fraction"], c.info["val_fraction"], c.info["protocol"]) == (0.8, 0.15, "coil")
    for name in ("standard", "memae", "outlier-fraction", "coil"):
        a, b, other = (protocols.make(name, train, test, 1, seed=k) for k in (4, 4, 5))
        assert (a.test.images == b.test.images).all() and (a.val.images == b.val.images).all()
        assert not (a.val.images == other.val.images).all()
        assert a.info["seed"] == 4 and a.info["normal_class"] == 1


def test_selection_sets_come_out_of_training_and_errors_name_the_numbers(embedded_data):
    train, test = embedded_data
    s = protocols.make("standard", train, test, 3, selection=20)
    assert _counts(s) == (430, 50, 2000, 1800) and s.info["selection"] == 20
    assert (s.selection.labels[:20] == 3).all() and (s.selection.labels[20:] != 3).all()
    assert s.selection_labels.tolist() == [0] * 20 + [1] * 20
    m = protocols.make("memae", train, test, 5, selection=20)
    assert _counts(m) == (400, 47, 303, 70) and m.info["selection"] == 20
    assert "selection" not in protocols.make("standard", train, test, 3).info
    with pytest.raises(DataError, match=r"^a selection set of 300 \+ 300 images needs more training data "
                                        r"\(450 normal, 4500 of the other training classes\)$"):
        protocols.make("standard", train, test, 3, selection=300)
    with pytest.raises(DataError, match=r"^outlier fraction must lie in \(0, 1\), got 1.0$"):
        protocols.make("outlier-fraction", train, test, 2, outlier_fraction=1.0)
    with pytest.raises(DataError, match=r"^2022 outliers needed but only 1800 other-class test samples$"):
        protocols.make("outlier-fraction", train, test, 2, outlier_fraction=0.91)
    tiny = train.subset(np.flatnonzero(train.labels.numpy() == 0)[:2])
    with pytest.raises(DataError, match=r"^only 2 normal training samples: too few to hold out a validation set$"):
        protocols.make("standard", tiny, test, 0)


def test_selection_set_sizes_at_their_bounds_and_its_own_generator(embedded_data):
    """The labelled selection set: absent unless asked for; one image a side is already a set; up
    to half the normal training images and every other-class image may go into it, each drawn
    once; the same seed draws the same set, and drawing it leaves the validation split as it was."""
    train, test = embedded_data
    keys = lambda d: [bytes(img.numpy().tobytes()) for img in d.images]  # noqa: E731
    plain = protocols.make("standard", train, test, 3)
    assert plain.selection is None and plain.selection_labels is None
    one = protocols.make("standard", train, test, 3, selection=1)
    assert len(one.selection) == 2 and len(one.train) == 449
    half = protocols.make("standard", train, test, 3, selection=225)  # of 450 normal training images
    assert len(set(keys(half.selection))) == 450 and len(half.train) == 225
    assert not set(keys(half.train)) & set(keys(half.selection))
    with pytest.raises(DataError, match=r"^a selection set of 226 \+ 226 images needs more training data"):
        protocols.make("standard", train, test, 3, selection=226)
    labels = train.labels.numpy()
    few = train.subset(np.r_[np.flatnonzero(labels == 3), np.flatnonzero(labels == 8)[:30]])
    every_other = protocols.make("standard", few, test, 3, selection=30)  # all 30 other-class images
    assert len(set(keys(every_other.selection))) == 60
    with pytest.raises(DataError, match=r"\(450 normal, 30 of the other training classes\)$"):
        protocols.make("standard", few, test, 3, selection=31)
    a, b = (protocols.make("standard", train, test, 3, seed=1, selection=20) for _ in range(2))
    assert (a.selection.images == b.selection.images).all()
    assert (a.val.images == protocols.make("standard", train, test, 3, seed=1).val.images).all()



def test_every_protocol_with_outliers_to_label_takes_a_selection_set(embedded_data):
    """ALOCC's outlier-fraction protocol (and COIL's) draw the labelled selection set too, from
    data that is neither trained on nor tested: the same set at every outlier fraction, so one
    training is scored on all of them; asking it of a protocol without one, or any option a
    protocol does not take, is an error naming it, not a TypeError."""
    train, test = embedded_data
    keys = lambda d: {bytes(img.numpy().tobytes()) for img in d.images}  # noqa: E731
    plain = protocols.make("outlier-fraction", train, test, 3, outlier_fraction=0.3)
    assert plain.selection is None and "selection" not in plain.info
    low, high = (protocols.make("outlier-fraction", train, test, 3, outlier_fraction=p, selection=20) for p in (0.1, 0.5))
    assert (low.selection.images == high.selection.images).all() and (low.train.images == high.train.images).all()
    assert low.info["selection"] == 20 and low.selection_labels.tolist() == [0] * 20 + [1] * 20
    assert (low.selection.labels[:20] == 3).all() and (low.selection.labels[20:] != 3).all()
    assert len(low.train) == len(plain.train) - 20 and (low.val.images == plain.val.images).all()
    assert not keys(low.selection) & (keys(low.train) | keys(low.val) | keys(high.test))
    coil = protocols.make("coil", train, test, 3, selection=10)
    assert len(coil.selection) == 20 and not keys(coil.selection) & (keys(coil.train) | keys(coil.test))
    assert (coil.test.images == protocols.make("coil", train, test, 3).test.images).all()
    with pytest.raises(DataError, match=r"^protocol 'mvtec' has no labelled selection set"):
        protocols.make("mvtec", train, test, 3, selection=10)
    with pytest.raises(DataError, match=r"^protocol 'standard' takes no option anomaly_ratio; it takes val_fraction, "
                                        r"selection$"):
        protocols.make("standard", train, test, 3, anomaly_ratio=0.3)

def test_hold_out_bounds_and_classes_without_names(embedded_data):
    """A validation part needs one image and leaves at least two to train on; a class without a
    name (labels past the dataset's class list, as a folder of unnamed classes gives) is
    recorded by its number."""
    train, test = embedded_data
    threes = np.flatnonzero(train.labels.numpy() == 3)
    s = protocols.standard(train.subset(threes[:3]), test, 3, val_fraction=0.34)  # 2 train + 1 val
    assert (len(s.train), len(s.val)) == (2, 1)
    with pytest.raises(DataError, match="^only 2 normal training samples: too few"):
        protocols.standard(train.subset(threes[:2]), test, 3, val_fraction=0.5)  # 1 + 1
    named = ImageData(train.images[:30], torch.arange(30) % 3, ["a", "b"])
    r = protocols.standard(named, named, 2).info
    assert r["normal_class_name"] == "2" and r["class_counts"]["test"] == {"a": 10, "b": 10, "2": 10}
    assert protocols.standard(named, named, 1).info["normal_class_name"] == "b"


def test_protocol_details_labels_defaults_and_boundaries(embedded_data):
    """Labels are int64 0/1; no test image is drawn twice; each function's own default seed is 0;
    fractions at their bounds; the missing-class error names the split it looked in."""
    train, test = embedded_data
    keys = lambda d: [bytes(img.numpy().tobytes()) for img in d.images]  # noqa: E731
    for name, fn in protocols.PROTOCOLS.items():
        if name == "mvtec":
            continue
        s = fn(train, test, 4)
        assert s.test_labels.dtype == np.int64 and set(np.unique(s.test_labels)) == {0, 1}
        assert len(set(keys(s.test))) == len(s.test), f"{name}: a test image drawn twice"
        assert (fn(train, test, 4, seed=0).val.images == s.val.images).all() and s.info["seed"] == 0
    sel = protocols.make("memae", train, test, 5, selection=10)
    assert sel.selection_labels.dtype == np.int64
    full = protocols.make("outlier-fraction", train, test, 2, outlier_fraction=0.9)  # every other test image
    assert _counts(full) == (450, 50, 2000, 1800) and len(set(keys(full.test))) == 2000
    assert full.info["val_fraction"] == 0.1 and "selection" not in protocols.make("memae", train, test, 5).info
    many = protocols.make("memae", train, test, 5, anomaly_ratio=3.0)  # 699 outliers: drawn with
    assert len(set(keys(many.test))) == len(many.test) == 233 + 699   # replacement, some would repeat
    with pytest.raises(DataError, match=r"^outlier fraction must lie in \(0, 1\), got 0.0$"):
        protocols.make("outlier-fraction", train, test, 2, outlier_fraction=0.0)
    no_fours = test.subset(np.flatnonzero(test.labels.numpy() != 4))
    with pytest.raises(DataError, match=r"^no samples of class 11 in the training split$"):
        protocols.make("standard", train, test, 11)
    with pytest.raises(DataError, match=r"^no samples of class 11 in the pooled split$"):
        protocols.make("memae", train, test, 11)
    with pytest.raises(DataError, match=r"^no samples of class 4 in the test split$"):
        protocols.make("outlier-fraction", train, no_fours, 4)


def test_pooled_protocols_keep_the_class_names(embedded_data):
    from oneclass.data.images import ImageData
    train, test = embedded_data
    names = [f"digit {i}" for i in range(10)]
    named = [ImageData(d.images, d.labels, names) for d in (train, test)]
    for name in ("memae", "coil"):
        s = protocols.make(name, *named, 5)
        assert s.info["normal_class_name"] == "digit 5" and "digit 5" in s.info["class_counts"]["test"]
