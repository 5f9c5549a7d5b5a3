"""The public detector API: fit / score / threshold / predict / save / load, and bad input."""
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import oneclass
from oneclass.errors import DataError, ModelFileError, NotFittedError, OneClassError
from oneclass.training import numeric_config


@pytest.fixture(scope="module")
def small(embedded_split):
    # 200 normal training images, a mixed test set: enough for a real, fast fit
    s = embedded_split
    return s.train.images[:200], s.val.images, s.test.images[::10], s.test_labels[::10]


@pytest.fixture(scope="module")
def fitted(small):
    x, val, _, _ = small
    det = oneclass.create("dae", "mnist", epochs=2, seed=0, device="cpu", batch_size=64, lr=1e-3)
    return det.fit(x, val, progress=False)


def test_methods_registry_lists_descriptions():
    m = oneclass.methods()
    assert {"lsa", "dae", "ocsvm", "kde"} <= set(m)
    assert all(isinstance(v, str) and v for v in m.values())


@pytest.mark.parametrize("call, message", [
    (lambda: oneclass.create("nope"), "known methods: "),
    (lambda: oneclass.create("dae", "imagenet"), "^method 'dae' has no preset 'imagenet'; presets: mnist, cifar10, ped2"),
    (lambda: oneclass.create("dae", "mnist", colour="red"), "unknown option"),
    (lambda: oneclass.create("dae", "mnist", epochs=0), "epochs=0 .* must be greater than 0"),
    (lambda: oneclass.create("dae", "mnist", device="tpu"), "unknown device 'tpu'"),
    # a device torch knows but oneclass is not built for: refused here, not deep inside a layer
    (lambda: oneclass.create("dae", "mnist", device="mps"), "device 'mps': oneclass runs on cpu or cuda"),
    # numpy's generators refuse negative seeds (at fit), and int() would cut 1.5 to 1 unsaid
    (lambda: oneclass.create("dae", "mnist", seed=-1), r"seed=-1: give a whole number ≥ 0"),
    (lambda: oneclass.create("dae", "mnist", seed=1.5), r"seed=1.5: give a whole number ≥ 0"),
    (lambda: oneclass.create("dae", "mnist", seed="0"), r"seed='0': give a whole number ≥ 0"),
])
def test_bad_construction_names_the_problem(call, message):
    with pytest.raises(OneClassError, match=message):
        call()


def test_a_misspelt_device_fails_at_creation_and_a_missing_gpu_at_use():
    with pytest.raises(OneClassError, match="unknown device 'cpuu'"):
        oneclass.create("dae", "mnist", device="cpuu")
    det = oneclass.create("dae", "mnist", device="cuda")  # planned here, trained where CUDA is
    if not torch.cuda.is_available():
        with pytest.raises(OneClassError, match="no CUDA device is available"):
            _ = det.device
    beyond = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU
    if torch.cuda.is_available():
        with pytest.raises(OneClassError, match=f"'{beyond}' asked for, but this machine has"):
            _ = oneclass.create("dae", "mnist", device=beyond).device
    assert oneclass.create("dae", "mnist", seed=np.int64(3)).seed == 3  # a numpy integer is a seed


def test_score_shapes_and_components(fitted, small):
    _, _, test, labels = small
    comps = fitted.score_components(test)
    assert set(comps) == {"rec"}
    s = fitted.score_samples(test)
    assert s.shape == (len(test),) and s.dtype == np.float64 and np.isfinite(s).all()
    np.testing.assert_array_equal(s, comps["rec"])
    # (detection quality itself is asserted by the quickstart test, which trains long enough)


def test_inputs_in_any_accepted_form_give_the_same_scores(fitted, small):
    test = small[2][:16]
    base = fitted.score_samples(test)
    as_float = test.float() / 255.0
    np.testing.assert_allclose(fitted.score_samples(as_float), base, rtol=1e-5)
    np.testing.assert_allclose(fitted.score_samples(test.numpy()[:, 0]), base, rtol=1e-5)  # N×H×W
    # a larger RGB image is converted to the detector's 1×28×28 convention
    rgb = torch.nn.functional.interpolate(test.float(), size=(56, 56), mode="nearest").repeat(1, 3, 1, 1)
    assert fitted.score_samples(rgb.to(torch.uint8)).shape == (16,)


def test_a_read_only_array_is_scored_without_a_warning(fitted, small, tmp_path):
    """np.load(..., mmap_mode="r") of a large set, or a broadcast view, is read-only: scored like
    the array itself, with no torch warning about sharing memory it may not write."""
    import warnings
    test = small[2][:20].numpy()
    np.save(tmp_path / "x.npy", test)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert not mapped.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(fitted.score_samples(mapped), fitted.score_samples(test))
        one = np.broadcast_to(test[:1], (3, *test.shape[1:]))
        np.testing.assert_array_equal(fitted.score_samples(one), fitted.score_samples(test[[0, 0, 0]]))


def test_photos_come_as_a_list_of_pil_images_or_arrays_of_any_size(fitted, small):
    """What a user holds after opening files with PIL: a list of images, of several modes and sizes.
    Each is converted and resized as an array batch would be, so equal images score equally."""
    from oneclass.data.images import conform
    test = small[2][:4]                                        # uint8 4×1×28×28
    base = fitted.score_samples(test)
    grey = [Image.fromarray(a[0].numpy()) for a in test]
    np.testing.assert_array_equal(fitted.score_samples(grey), base)
    np.testing.assert_array_equal(fitted.score_samples(tuple(grey)), base)
    np.testing.assert_array_equal(fitted.score_samples(grey[1]), base[1:2])  # one PIL image: a batch of one
    # modes and sizes mixed in one list: each image as if it had come alone in a batch of its own
    big = torch.nn.functional.interpolate(test[2:3].float(), size=(40, 56), mode="nearest").to(torch.uint8)
    mixed = [grey[0].convert("RGBA"), test[1, 0].numpy(), big[0].permute(1, 2, 0).numpy(),
             grey[3].convert("P")]
    one_by_one = np.concatenate([fitted.score_samples(test[:2]), fitted.score_samples(conform(big, 1, 28)),
                                 fitted.score_samples(test[3:4])])
    np.testing.assert_allclose(fitted.score_samples(mixed), one_by_one, rtol=1e-6)
    # floats: [0, 1] only when every float image of the list is, as for one array
    floats = [test[0, 0].numpy() / 255.0, test[1, 0, :20].numpy() / 255.0]
    np.testing.assert_allclose(fitted.score_samples(floats)[:1], base[:1], rtol=1e-5)
    dark = [np.full((28, 28), 0.6), np.full((20, 20), 200.0)]  # 0.6 of 255 (1 once rounded), not 60 % white
    # a batch of two against a batch of one: the CPU's kernels may sum in another order (Intel Xeon: 1.5e-8)
    np.testing.assert_allclose(fitted.score_samples(dark)[:1],
                               fitted.score_samples(np.ones((1, 28, 28), np.uint8)), rtol=1e-6)


@pytest.mark.parametrize("bad, message", [
    ([np.zeros((28, 28), np.uint8), np.zeros((2, 28, 28), np.uint8)], r"image 1: expected one image shaped"),
    ([np.zeros((28, 28), np.uint8), np.zeros((0, 9), np.uint8)], r"image 1: an image with no pixels"),
    ([np.zeros((28, 28)), np.full((9, 9), np.nan)], r"image 1: 1 sample\(s\) contain NaN"),
    ([np.zeros((28, 28)), np.full((9, 9), 256.0)], r"image 1: pixel values must lie in"),
    ([[1, 2], [3]], r"image 0: expected one image shaped"),
    (np.zeros((28, 28), np.uint8), r"one image needs a batch axis"),
    ([np.zeros((28, 28), np.uint8), Image.fromarray(np.zeros((9, 9), np.float32))], r"image 1 has 32-bit float pixels"),
])
def test_a_bad_image_of_a_list_is_named_by_its_place(fitted, bad, message):
    with pytest.raises(DataError, match=message):
        fitted.score_samples(bad)


@pytest.mark.parametrize("bad, message", [
    (np.full((4, 1, 28, 28), np.nan, dtype=np.float32), "NaN"),
    (np.zeros((0, 1, 28, 28), dtype=np.uint8), "empty|no images|0 images"),
    (np.zeros((4, 7), dtype=np.uint8), "shape"),
    (np.zeros((2, 1, 28, 28), dtype=np.float32) - 0.5, "must lie in"),
    ("not an array", "array|tensor"),
])
def test_bad_inputs_are_named(fitted, bad, message):
    with pytest.raises(DataError, match=message):
        fitted.score_samples(bad)


def test_fit_refuses_too_little_data():
    det = oneclass.create("dae", "mnist", epochs=1, device="cpu")
    with pytest.raises(DataError, match="at least"):
        det.fit(np.zeros((1, 28, 28), dtype=np.uint8), np.zeros((1, 28, 28), dtype=np.uint8))
    with pytest.raises(DataError, match="at least 10"):
        det.fit(np.zeros((5, 28, 28), dtype=np.uint8))


def test_unfitted_and_unthresholded_use_is_refused(fitted, small):
    det = oneclass.create("dae", "mnist", device="cpu")
    with pytest.raises(NotFittedError, match="fit"):
        det.score_samples(small[2])
    with pytest.raises(NotFittedError, match="fit"):
        det.save("never.oneclass")
    fresh = oneclass.create("dae", "mnist", epochs=1, device="cpu", batch_size=64)
    fresh.fit(small[0][:40], small[1][:10], progress=False)
    # predict works after fit, as scikit-learn's and PyOD's detectors do: the threshold is the
    # 0.95 quantile of the held-out normal images' scores, as `oneclass fit` sets it
    assert fresh.threshold == pytest.approx(np.quantile(fresh.score_samples(small[1][:10]), 0.95), rel=1e-6)
    assert fresh.threshold_rule == {"quantile": 0.95, "of": "10 validation images"}  # the x_val given
    assert fresh.predict(small[2]).shape == (len(small[2]),)
    fresh.threshold = None  # a model saved without one (a video model fitted without a quantile)
    with pytest.raises(NotFittedError, match="set_threshold"):
        fresh.predict(small[2])


def test_a_refit_drops_the_old_threshold(small):
    """A threshold is in the units of the model it was set on: after fit() on other data,
    predict uses the new fit's own threshold, never the old one."""
    x, val, test, _ = small
    det = oneclass.create("ocsvm", "mnist").fit(x)
    assert det.threshold_rule["quantile"] == 0.95  # without a held-out set: the seeded 10% of x
    assert det.threshold == np.quantile(det.validation_scores["score"], 0.95)
    det.set_threshold(val, quantile=0.9)
    old = det.threshold
    assert det.predict(test).shape == (len(test),)
    det.fit(test)
    assert det.threshold_rule == {"quantile": 0.95, "of": f"{round(0.1 * len(test))} held-out training images"}
    assert det.threshold != old and det.threshold == np.quantile(det.validation_scores["score"], 0.95)
    # a refit that fails part-way leaves no model that looks fitted
    with pytest.raises(DataError, match="every image is the same"):
        det.fit(np.zeros((30, 28, 28), dtype=np.uint8))
    with pytest.raises(NotFittedError, match="not fitted yet"):
        det.score_samples(test)


def test_threshold_units(fitted, small):
    _, val, test, _ = small
    val_scores = fitted.score_samples(val)
    thr = fitted.set_threshold(val, quantile=0.9)
    assert thr == pytest.approx(np.quantile(val_scores, 0.9))
    # quantile 0.9 of the reference set: about 10% of it is flagged
    assert fitted.predict(val).mean() == pytest.approx(0.1, abs=1.5 / len(val))
    # contamination c is the same threshold as quantile 1 − c
    assert fitted.set_threshold(val, contamination=0.1) == pytest.approx(thr)
    labels = fitted.predict(test)
    np.testing.assert_array_equal(labels, (fitted.score_samples(test) > thr).astype(int))
    with pytest.raises(OneClassError, match="^give exactly one of quantile= or contamination=$"):
        fitted.set_threshold(val)
    with pytest.raises(OneClassError, match=r"^quantile=1.5: give a number in \[0, 1\]$"):
        fitted.set_threshold(val, quantile=1.5)
    with pytest.raises(OneClassError, match=r"^contamination=-0.5: give a number in \[0, 1\]$"):
        fitted.set_threshold(val, contamination=-0.5)
    with pytest.raises(OneClassError, match=r"^quantile='0.9': give a number in \[0, 1\]$"):
        fitted.set_threshold(val, quantile="0.9")
    # a value in score units, read off a histogram: no data needed, and the rule says so
    assert fitted.set_threshold(value=thr) == thr and fitted.threshold_rule == {"value": thr}
    np.testing.assert_array_equal(fitted.predict(test), labels)
    with pytest.raises(OneClassError, match="give no data, quantile= or contamination= with it"):
        fitted.set_threshold(val, value=thr)
    for bad in (float("nan"), "1", True):
        with pytest.raises(OneClassError, match="give a finite number in score units"):
            fitted.set_threshold(value=bad)
    with pytest.raises(OneClassError, match=r"needs reference data x \(or value=\)"):
        fitted.set_threshold(quantile=0.9)
    assert fitted.threshold == thr  # a refused call leaves the threshold as it was


def test_threshold_ends_and_rule_and_a_score_on_the_threshold(fitted, small, tmp_path):
    """Quantile 1 (contamination 0) flags no reference sample: a score equal to the threshold
    is normal; quantile 0 is allowed and flags all but the lowest. The rule is kept and saved."""
    _, val, _, _ = small
    scores = fitted.score_samples(val)
    assert fitted.set_threshold(val, quantile=1.0) == scores.max()
    labels = fitted.predict(val)
    assert labels.dtype == np.int64 and labels.sum() == 0
    assert fitted.set_threshold(val, quantile=0.0) == scores.min()
    assert fitted.predict(val).sum() == len(val) - (scores == scores.min()).sum()
    assert fitted.threshold_rule == {"quantile": 0.0}
    fitted.set_threshold(val, contamination=0.2)
    assert fitted.threshold_rule == {"contamination": 0.2}
    loaded = oneclass.load(fitted.save(tmp_path / "m.oneclass"), device="cpu")
    assert loaded.threshold_rule == {"contamination": 0.2} and loaded.threshold == fitted.threshold
    with pytest.raises(NotFittedError, match=r"^no threshold: call set_threshold\(x_val, quantile=\.\.\.\) first$"):
        loaded.threshold = None
        loaded.predict(val)


def test_an_interrupted_write_leaves_the_old_file_whole(fitted, tmp_path):
    """Models and results are written atomically: a write cut off half-way (an error, Ctrl-C)
    leaves the previous file as it was and no temporary file beside it."""
    import json
    from oneclass.fileio import atomic_open, write_json
    path = tmp_path / "run.json"
    write_json(path, {"auroc": 0.9})
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(path, "w") as fh:
            fh.write('{"auroc": 0.')
            raise KeyboardInterrupt
    assert json.loads(path.read_text()) == {"auroc": 0.9}
    model = fitted.save(tmp_path / "m.oneclass")
    before = model.read_bytes()
    with pytest.raises(KeyboardInterrupt), atomic_open(model) as fh:
        fh.write(before[:100])
        raise KeyboardInterrupt
    assert model.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.oneclass", "run.json"]


def test_sklearn_clone_gives_an_unfitted_detector_that_trains_the_same_model(fitted, small, tmp_path):
    from sklearn.base import clone
    x, val, test, _ = small
    twin = clone(fitted)
    assert not twin.fitted and twin.threshold is None
    assert (twin.config, twin.seed, twin.device_name) == (fitted.config, fitted.seed, fitted.device_name)
    # the same settings and seed on the same machine train the same weights
    np.testing.assert_array_equal(twin.fit(x, val, progress=False).score_samples(test[:8]),
                                  fitted.score_samples(test[:8]))
    # a loaded model has no constructor call to remember: its arguments come back from its config
    loaded = oneclass.load(fitted.save(tmp_path / "m.oneclass"), device="cpu")
    assert loaded.get_params() == {"preset": "mnist", "epochs": 2, "seed": 0, "device": "cpu",
                                   "batch_size": 64, "lr": 1e-3}
    assert clone(loaded).config == fitted.config


def test_set_params_is_checked_as_at_creation_and_never_discards_a_fitted_model(fitted):
    from sklearn.base import clone
    twin = clone(fitted).set_params(lr=0.01, epochs=3)
    assert (twin.config["lr"], twin.config["epochs"], twin.config["batch_size"]) == (0.01, 3, 64)
    with pytest.raises(OneClassError, match="unknown option"):
        twin.set_params(colour="red")
    with pytest.raises(OneClassError, match="seed=-1"):
        twin.set_params(seed=-1)
    assert (twin.config["lr"], twin.seed) == (0.01, 0)  # a refused change changes nothing
    with pytest.raises(OneClassError, match="would discard its model"):
        fitted.set_params(lr=0.1)
    assert fitted.fitted and fitted.config["lr"] == 1e-3


def test_scoring_shows_a_bar_as_fit_chose_and_none_where_no_one_watches(small, tmp_path, monkeypatch, capsys):
    """A long scoring (AnoGAN searches each image for seconds) shows a bar when fit showed one;
    a quiet fit scores quietly, and a loaded model shows one only on a terminal."""
    from oneclass import neural
    monkeypatch.setattr(neural, "SCORE_BAR_DELAY_S", 0.0)  # every scoring "lasts"
    x, val, test, _ = small
    det = oneclass.create("dae", "mnist", epochs=1, seed=0, device="cpu", batch_size=64)
    det.fit(x[:64], val, progress=True)
    capsys.readouterr()
    det.score_samples(test[:8])
    assert "dae scoring" in capsys.readouterr().err
    det.score_maps(test[:8])
    assert "dae scoring" in capsys.readouterr().err
    det.fit(x[:64], val, progress=False)
    det.score_samples(test[:8])
    assert capsys.readouterr().err == ""
    loaded = oneclass.load(det.save(tmp_path / "m.oneclass"), device="cpu")
    loaded.score_samples(test[:8])  # captured stderr is no terminal
    assert capsys.readouterr().err == ""


def test_save_load_round_trip(fitted, small, tmp_path):
    _, val, test, _ = small
    fitted.set_threshold(val, quantile=0.95)
    path = fitted.save(tmp_path / "m.oneclass")
    assert not list(tmp_path.glob("*.tmp*"))  # the atomic write left no temporary file
    loaded = oneclass.load(path, device="cpu")
    np.testing.assert_array_equal(loaded.score_samples(test), fitted.score_samples(test))
    assert loaded.threshold == fitted.threshold and loaded.config == fitted.config
    np.testing.assert_array_equal(loaded.predict(test), fitted.predict(test))


def test_save_to_a_folder_or_under_a_file_is_refused_naming_the_path(fitted, tmp_path):
    """The Python API checks its output path as the CLI does: a one-line error naming it, and
    no temporary file left beside (or above) it."""
    (tmp_path / "plain").write_text("x")
    for target, said in [(tmp_path, "is a folder; give a file name"),
                         (tmp_path / "plain" / "m.oneclass", "is a regular file, not a folder")]:
        with pytest.raises(OneClassError, match=f"model file {re.escape(str(target))}.*{said}"):
            fitted.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.*"))


def test_lsa_normalisation_is_saved(small, tmp_path):
    x, val, test, _ = small
    det = oneclass.create("lsa", "mnist", epochs=1, seed=0, device="cpu", batch_size=64)
    det.fit(x[:64], val[:32], progress=False)
    det.save(tmp_path / "lsa.oneclass")
    loaded = oneclass.load(tmp_path / "lsa.oneclass")
    a, b = det.score_components(test[:32]), loaded.score_components(test[:32])
    for k in ("rec", "llk", "ns"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6)


def test_corrupt_truncated_and_foreign_files(fitted, tmp_path):
    good = fitted.save(tmp_path / "good.oneclass")
    raw = good.read_bytes()
    (tmp_path / "trunc.oneclass").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "noise.oneclass").write_bytes(b"\x00garbage" * 100)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    for name in ("trunc.oneclass", "noise.oneclass"):
        with pytest.raises(ModelFileError, match=r"not a readable oneclass model \(corrupt file\): not a zip archive \(a truncated copy"):
            oneclass.load(tmp_path / name)
    with pytest.raises(ModelFileError, match="not a oneclass model"):
        oneclass.load(tmp_path / "foreign.pt")
    # one byte of a weight changed: torch.load reads it without complaint, the CRC-32 does not match
    flipped = bytearray(raw)
    flipped[_offset_in_largest_member(good) + 100] ^= 0x40
    (tmp_path / "flipped.oneclass").write_bytes(bytes(flipped))
    with pytest.raises(ModelFileError, match=r"flipped.oneclass is not a readable oneclass model \(corrupt file\): "
                                              r"member archive/data/\d+ fails its CRC-32 check"):
        oneclass.load(tmp_path / "flipped.oneclass")
    with pytest.raises(ModelFileError, match="no model file"):
        oneclass.load(tmp_path / "missing.oneclass")
    # a file of another format version says which version it is, and which this oneclass reads
    payload = torch.load(good, weights_only=True)
    torch.save({**payload, "format_version": 999}, tmp_path / "future.oneclass")
    with pytest.raises(ModelFileError, match=r"has model format 999; this oneclass reads format \d"):
        oneclass.load(tmp_path / "future.oneclass")


def _offset_in_largest_member(path):
    """Where the bytes of the archive's largest member (a weight tensor) begin."""
    import struct
    import zipfile
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def test_load_onto_the_device_asked_for(fitted, small, tmp_path):
    test = small[2][:16]
    path = fitted.save(tmp_path / "m.oneclass")
    assert oneclass.load(path, device="cpu").device_name == "cpu"
    automatic = oneclass.load(path, device=None)  # None means: CUDA where present, else the CPU
    assert automatic.device_name == "auto"
    np.testing.assert_array_equal(automatic.score_samples(test), fitted.score_samples(test))


def test_numpy_numbers_are_accepted_as_options_and_saved_as_plain_ones(small, tmp_path):
    """A sweep over np.linspace / np.arange passes numpy scalars; they were refused as not being
    'a finite number'."""
    x, val, test, _ = small
    det = oneclass.create("dae", "mnist", epochs=np.int64(1), seed=0, device="cpu", lr=np.float32(1e-3),
                          batch_size=np.int32(64))
    assert type(det.config["lr"]) is float and type(det.config["batch_size"]) is int
    assert det.config["epochs"] == 1 and det.config["batch_size"] == 64
    det.fit(x[:64], val[:16], progress=False)
    loaded = oneclass.load(det.save(tmp_path / "m.oneclass"))
    assert loaded.config == det.config
    for bad in (np.bool_(True), np.float32("nan")):
        with pytest.raises(OneClassError, match="must be a finite number"):
            oneclass.create("dae", "mnist", lr=bad)


class _WritesAFile:
    """Unpickling this calls Path.write_text: a model file that would act if loaded unsafely."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "code from a model file ran"))


def test_loading_never_runs_code_from_the_file(tmp_path):
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.oneclass"
    # a genuine torch file, shaped like a model, whose payload runs code when unpickled
    torch.save({"format": "oneclass-model", "format_version": 1, "method": "dae", "state": _WritesAFile(marker)},
               evil)
    torch.load(evil, weights_only=False)  # the payload is live: plain unpickling runs it
    assert marker.read_text() == "code from a model file ran"
    marker.unlink()
    with pytest.raises(ModelFileError, match="not a readable oneclass model"):
        oneclass.load(evil)
    assert not marker.exists()


def test_shallow_baselines_fit_score_save(small, tmp_path):
    x, val, test, labels = small
    for name in ("ocsvm", "kde"):
        det = oneclass.create(name, "mnist", seed=0).fit(x, val)
        s = det.score_samples(test)
        assert s.shape == (len(test),) and oneclass.metrics.auroc(labels, s) > 0.7
        det.save(tmp_path / f"{name}.oneclass")
        np.testing.assert_allclose(oneclass.load(tmp_path / f"{name}.oneclass").score_samples(test), s, rtol=1e-9)


def test_shallow_pca_keeps_a_fixed_number_of_components_when_asked(small):
    """`pca_components` fixes the PCA's size instead of the 90 % of the variance; out of range it
    is refused by name, and at its default (None) it names no run (the committed runs' keys stay)."""
    x, val, test, labels = small
    for name in ("ocsvm", "kde"):
        det = oneclass.create(name, "mnist", seed=0, pca_components=12).fit(x, val)
        assert det.pipeline[0].n_components_ == 12 and det.fit_info["pca_components"] == 12
        assert oneclass.create(name, "mnist", seed=0).fit(x, val).fit_info["pca_components"] > 12
        with pytest.raises(OneClassError, match="pca_components=785"):
            oneclass.create(name, "mnist", pca_components=785).fit(x, val)
        with pytest.raises(OneClassError, match="pca_components"):
            oneclass.create(name, "mnist", pca_components=2.5)
        det = oneclass.create(name, "mnist")
        assert "pca_components" not in numeric_config(det.config, det.added_later)


def test_shallow_baselines_refuse_training_images_without_variance(small):
    """PCA-whitening divides by each kept component's spread: images that are all the same (a
    folder of black frames) or fewer directions than `pca_components` asks for would give NaN or
    infinite features, scored without an error by scikit-learn (OC-SVM then ranked noise as
    normal as the training image). Both are refused by name; one varying pixel is enough."""
    flat = np.zeros((30, 28, 28), dtype=np.uint8)
    one_pixel = flat.copy()
    one_pixel[:, 5, 5] = np.arange(30) * 8
    for name in ("ocsvm", "kde"):
        with pytest.raises(DataError, match="training data: every image is the same"):
            oneclass.create(name, "mnist").fit(flat)
        det = oneclass.create(name, "mnist").fit(one_pixel)
        assert det.fit_info["pca_components"] == 1
        assert np.isfinite(det.score_samples(small[2])).all()
        with pytest.raises(OneClassError, match=r"pca_components=3: the 27 training images span only 1 direction;"):
            oneclass.create(name, "mnist", pca_components=3).fit(one_pixel)


def test_kde_bandwidth_grid_is_the_quarter_decades_written_out():
    """The defaults are literals (a run's identity hashes them): equal to 10^(k/4) to the last
    bit or two, whatever a CPU's pow gives for np.logspace."""
    grid = oneclass.create("kde").config["bandwidths"]
    np.testing.assert_allclose(grid, np.logspace(-1, 1.5, 11), rtol=1e-15)
    assert grid[7] == 5.62341325190349


def test_fit_without_x_val_holds_out_a_seeded_tenth_apart_from_training(small, monkeypatch):
    """The held-out 10% (validation loss, normalisation, early stopping) is no training image,
    together they are all the images, and the seed fixes which."""
    x = small[0]
    seen = []
    cls = type(oneclass.create("ocsvm"))
    monkeypatch.setattr(cls, "_fit", lambda self, train, val, **kw: seen.append((train, val)))
    monkeypatch.setattr(cls, "_score", lambda self, images: {"score": np.zeros(len(images))})  # for the threshold
    for seed in (0, 0, 1):
        oneclass.create("ocsvm", seed=seed).fit(x)
    keys = lambda t: [bytes(img.numpy().tobytes()) for img in t]  # noqa: E731
    train, val = seen[0]
    assert (len(train), len(val)) == (180, 20)
    assert not set(keys(train)) & set(keys(val))
    assert sorted(keys(train) + keys(val)) == sorted(keys(x))
    assert keys(seen[1][1]) == keys(val) and keys(seen[2][1]) != keys(val)


def test_fit_keeps_the_scores_of_its_validation_images(fitted, small, tmp_path):
    """A neural fit scores its validation images anyway (its normalisers, its threshold); it keeps
    those scores, which are score_components(val) exactly, so a threshold or an evaluation need not score them
    again (AnoGAN's latent search takes minutes over a validation set)."""
    _, val, _, _ = small
    again = fitted.score_components(val)
    assert set(fitted.validation_scores) == set(again)
    for k, v in again.items():
        np.testing.assert_array_equal(fitted.validation_scores[k], v)
    fitted.save(tmp_path / "m.oneclass")
    assert oneclass.load(tmp_path / "m.oneclass").validation_scores is None  # the model file holds no data
    # a detector that needs no normaliser scores them in fit for its threshold, once
    shallow = oneclass.create("ocsvm").fit(small[0])
    assert shallow.threshold == np.quantile(shallow.validation_scores["score"], 0.95)


def test_the_cli_fit_scores_the_held_out_images_once(tmp_path, monkeypatch):
    """`oneclass fit` sets its threshold from the validation scores fit made: the held-out images
    are scored once, and the threshold is their quantile as the saved model scores them."""
    from click.testing import CliRunner

    from oneclass.cli import main
    from oneclass.neural import NeuralDetector
    scored, raw = [], NeuralDetector._raw
    monkeypatch.setattr(NeuralDetector, "_raw", lambda self, images, progress=False:
                        scored.append(len(images)) or raw(self, images, progress))
    model = tmp_path / "m.oneclass"
    r = CliRunner().invoke(main, ["fit", "--method", "dae", "--dataset", "mnist-embedded", "--normal-class", "3",
                                  "--epochs", "1", "--option", "batch_size=128", "--quantile", "0.9", "--quiet",
                                  "--out", str(model)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    from oneclass import protocols
    from oneclass.data import load as load_dataset
    train, _ = load_dataset("mnist-embedded")
    _, va = protocols.normal_hold_out(train, 3, 0)
    assert scored.count(len(va)) == 1
    det = oneclass.load(model)
    assert det.threshold == pytest.approx(np.quantile(det.score_samples(train.images[va]), 0.9), rel=1e-9)
    assert det.threshold_rule == {"quantile": 0.9, "of": f"{len(va)} held-out training images"}
    # and an evaluation scores them once too (their 95 % quantile is its F1 threshold)
    from oneclass.evaluation import EvalSpec, evaluate
    scored.clear()
    spec = EvalSpec("dae", "mnist-embedded", classes=[3], epochs=1, device="cpu", options={"batch_size": 128})
    evaluate(spec, None, tmp_path / "results", progress=False, echo=lambda line: None)
    assert scored.count(len(va)) == 1


def test_fit_names_the_input_that_is_wrong():
    det = oneclass.create("dae", "mnist", device="cpu", epochs=1)
    x = np.random.default_rng(0).random((20, 28, 28), dtype=np.float32)
    bad = x.copy()
    bad[3, 4, 5] = np.nan
    with pytest.raises(DataError, match=r"^training data: 1 sample\(s\) contain NaN"):
        det.fit(bad, progress=False)
    with pytest.raises(DataError, match=r"^validation data: 1 sample\(s\) contain NaN"):
        det.fit(x, bad, progress=False)
    with pytest.raises(DataError, match=r"^validation data: no images"):
        det.fit(x, x[:0], progress=False)
    with pytest.raises(DataError, match=r"^only 9 training samples: need at least 10 \(or pass x_val explicitly\)$"):
        det.fit(x[:9], progress=False)
    det.fit(x[:10], progress=False)  # ten is enough: nine to train, one held out
    assert (det.fit_info["n_train"], det.fit_info["n_val"]) == (9, 1)
    with pytest.raises(DataError, match=r"^only 1 training sample\(s\): need at least 2$"):
        det.fit(x[:1], x[1:3], progress=False)
    det.fit(x[:2], x[2:4], progress=False)  # two are enough with a validation set of their own
    assert (det.fit_info["n_train"], det.fit_info["n_val"]) == (2, 2)


def test_a_detector_class_is_usable_on_its_own_like_an_estimator():
    from oneclass.models.lsa import DAEDetector
    det = DAEDetector(device="cpu")  # scikit-learn habit: the class with its defaults, MNIST's preset
    assert det.preset == "mnist" and det.config == oneclass.create("dae", "mnist", device="cpu").config


def test_a_fit_far_under_its_presets_steps_warns_with_the_epochs_that_would_match():
    """At its preset's batch size and step size, a training set far smaller than the one the
    preset was set for makes far fewer optimisation steps: fit warns, naming the count and the
    epochs that would match the preset's; a user who chose the batch or the step is not warned."""
    from oneclass.errors import UndertrainingWarning
    dae = oneclass.create("dae", "mnist", device="cpu")  # 30 epochs × ⌈5,400 / 256⌉ = 660 steps
    why = dae.undertraining(180)
    assert "180 training images in batches of 256 make 30 optimisation steps" in why
    assert "makes 660 on the 5,400 or so images" in why and "epochs=660 at this batch size" in why
    assert dae.undertraining(2699) is None  # 11 steps an epoch: half the preset's, not under it
    assert "make 300 optimisation steps" in dae.undertraining(2560)  # 10 an epoch: under half
    assert oneclass.create("dae", "mnist", device="cpu", epochs=330).undertraining(180) is None
    for chosen in ({"batch_size": 32}, {"lr": 1e-3}):
        assert oneclass.create("dae", "mnist", device="cpu", **chosen).undertraining(180) is None
    assert oneclass.create("dae", "ped2", device="cpu").undertraining(10) is None  # no reference set
    # a pretraining phase counts toward the steps: Deep SVDD's epochs option is what is left to train
    svdd = oneclass.create("deep-svdd", "mnist", device="cpu")
    total = svdd.training_epochs() * 27  # ⌈5,400 / 200⌉ steps an epoch
    assert f"epochs={total - (svdd.training_epochs() - svdd.config['epochs'])} at this" in svdd.undertraining(150)
    # no benchmark protocol's training set is small enough to warn (MemAE's, of MNIST's rarest
    # digit: 2/3 of 6,313 less 10 %, 3,788 images; CIFAR-10: 4,500 a class)
    for name in oneclass.methods():
        det = oneclass.create(name, "mnist", device="cpu")
        if hasattr(det, "undertraining"):
            assert det.undertraining(3788) is None
            assert oneclass.create(name, "cifar10", device="cpu").undertraining(4500) is None
    x = np.random.default_rng(0).random((40, 28, 28), dtype=np.float32)
    with pytest.warns(UndertrainingWarning, match=r"^dae: 36 training images in batches of 256 make 1 optimisation step "):
        oneclass.create("dae", "mnist", device="cpu", epochs=1).fit(x, progress=False)


def test_the_cli_shows_an_undertraining_warning_as_one_line(tmp_path):
    from click.testing import CliRunner

    from oneclass.cli import main
    from oneclass.errors import UndertrainingWarning
    folder = tmp_path / "normal"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(30):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(folder / f"{i}.png")
    with warnings.catch_warnings():
        warnings.simplefilter("default", UndertrainingWarning)  # pyproject.toml silences it elsewhere
        r = CliRunner().invoke(main, ["fit", "--method", "dae", "--train-dir", str(folder), "--epochs", "1",
                                      "--quiet", "--out", str(tmp_path / "m.oneclass")])
    assert r.exit_code == 0, r.output + repr(r.exception)
    lines = [line for line in r.stderr.splitlines() if "warn" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("warning: dae: 27 training images in batches of 256 make 1 ")
