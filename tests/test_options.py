"""Every option value a method accepts either fits and scores, or is refused when the detector
is created — never accepted and then failing after training (LSA estimator='none' once did)."""
import numpy as np
import pytest
import torch

import oneclass
from oneclass.errors import OneClassError
from oneclass.registry import detector_class, methods


def _data(det, n):
    """n inputs in the detector's own convention (clips for video presets)."""
    g = torch.Generator().manual_seed(0)
    if getattr(det, "is_video", False):
        size = det.image_size if isinstance(det.image_size, tuple) else (det.image_size,) * 2
        return torch.randint(0, 256, (n, det.channels, int(det.config["frames"]), *size), generator=g,
                             dtype=torch.uint8)
    train, _ = oneclass.datasets.embedded()
    return train.images[:n]


CASES = [(m, key, value) for m in methods() for key, allowed in detector_class(m).choices.items()
         for value in allowed]


@pytest.mark.slow
@pytest.mark.parametrize("method, key, value", CASES, ids=[f"{m}-{k}={v}" for m, k, v in CASES])
def test_every_accepted_choice_fits_and_scores(method, key, value):
    cls = detector_class(method)
    accepted = 0
    for preset in cls.presets:
        if preset == "shanghaitech":
            continue  # 3×16×256×512 clips: the same code path as ped2, too large for a unit test
        neural = "epochs" in cls.defaults
        try:
            det = oneclass.create(method, preset, device="cpu", **{key: value},
                                  **({"epochs": 1, "batch_size": 8} if neural else {}),
                                  **({"pretrain_epochs": 1} if "pretrain_epochs" in cls.defaults else {}))
        except OneClassError as e:
            assert key in str(e) or str(value) in str(e), e  # the refusal names the option
            continue
        accepted += 1
        n = 12 if getattr(det, "is_video", False) else 24
        x = _data(det, n)
        det.fit(x, progress=False) if neural else det.fit(x)
        comps = det.score_components(x[:4])
        assert set(comps) == set(det.components) and det.headline in comps
        assert all(c.shape == (4,) and np.isfinite(c).all() for c in comps.values())
        break  # the first preset that accepts the value is enough
    assert accepted or value == "shanghaitech", f"no preset of {method} accepts {key}={value!r}"


IMAGE_METHODS = [m for m in methods() if "epochs" in detector_class(m).defaults]


@pytest.mark.slow
@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_every_image_size_and_channel_count_fits_and_scores_or_is_refused_at_creation(method):
    """A user's own images at their own size (64×64 inspection crops, say): each method's networks
    take them, or creation says which sizes they take — never a shape error deep inside torch."""
    cls = detector_class(method)
    taken = 0
    for preset in ("mnist", "cifar10"):
        for size in (8, 16, 27, 28, 32, 40):
            for channels in (1, 3):
                try:
                    det = oneclass.create(method, preset, device="cpu", epochs=1, batch_size=8, size=size,
                                          channels=channels, **({"pretrain_epochs": 1} if method == "deep-svdd" else {}),
                                          **({"search_steps": 2} if method == "anogan" else {}))
                except OneClassError as e:
                    # the refusal names the option at fault (Pix-CNN's filters per colour channel, say)
                    assert "size=" in str(e) or "channels" in str(e), e
                    continue
                x = torch.randint(0, 256, (20, channels, size, size), generator=torch.Generator().manual_seed(0),
                                  dtype=torch.uint8)
                det.fit(x, progress=False)
                s = det.score_samples(x[:3])
                assert s.shape == (3,) and np.isfinite(s).all()
                if getattr(cls, "map_headline", None):
                    assert next(iter(det.score_maps(x[:2]).values())).shape == (2, size, size)
                taken += 1
    assert taken >= 2  # at least each preset's own images


def test_an_image_size_the_networks_cannot_take_is_refused_at_creation():
    for method, options, message in [
            ("dae", {"size": 27}, "side is a multiple of 8, at least 16"),
            ("lsa", {"channels": 1}, "cifar10 networks take 3-channel images"),
            ("vae", {"size": 30}, "multiple of 8"),
            ("oled", {"size": 30}, "multiple of 4, at least 8"),
            ("attn-entropy", {"size": 48}, "multiple of 32"),
            ("deep-svdd", {"size": 64}, "cifar10 networks take 32×32 images"),
            ("anogan", {"size": 64}, "DCGAN networks take 32×32 images"),
            ("ganomaly", {"size": 28}, "DCGAN networks take 32×32 images")]:
        with pytest.raises(OneClassError, match=message):
            oneclass.create(method, "cifar10", **options)
    # LSA's networks (DAE's, the VAE's) now take any multiple of their downsampling, e.g. 64×64
    det = oneclass.create("dae", "cifar10", size=64, epochs=1, batch_size=8, device="cpu")
    x = torch.randint(0, 256, (12, 3, 64, 64), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert det.fit(x, progress=False).score_maps(x[:2])["rec"].shape == (2, 64, 64)


def test_lsa_without_estimator_is_refused_with_the_method_to_use():
    with pytest.raises(OneClassError, match="estimator='none'.*'mfc', 'lstm'"):
        oneclass.create("lsa", estimator="none")
    with pytest.raises(OneClassError, match="arch='cifar10'.*preset 'mnist'"):
        oneclass.create("lsa", "mnist", arch="cifar10")


OPTION_CASES = [(m, p, k) for m in methods() for p in list(detector_class(m).presets)[:1]
                for k in detector_class(m)(p, device="cpu").config]


@pytest.mark.parametrize("method, preset, key", OPTION_CASES, ids=[f"{m}-{k}" for m, _, k in OPTION_CASES])
def test_every_option_refuses_a_value_of_the_wrong_type_by_name(method, preset, key):
    """`--option lr=fast` once reached the optimiser as a string: every option of every method
    now refuses a value of the wrong type at creation, in one line naming the option."""
    default = detector_class(method)(preset, device="cpu").config[key]
    # a value no option takes: a dict; and a text where the default is not text
    bad = [{"x": 1}] + (["fast"] if not isinstance(default, str) and key != "gamma" else [])
    for value in bad:
        with pytest.raises(OneClassError, match=f"option {key}=.* of method '{method}'"):
            oneclass.create(method, preset, device="cpu", **{key: value})
    # the default itself is always accepted
    oneclass.create(method, preset, device="cpu", **{key: default})


@pytest.mark.parametrize("method, key, value, message", [
    ("lsa", "lr", "fast", "must be a finite number"),
    ("lsa", "lr", -0.001, "must be greater than 0"),
    ("lsa", "lr", float("nan"), "must be a finite number"),
    ("lsa", "batch_size", 2.5, "must be a whole number"),
    ("lsa", "batch_size", 0, "must be greater than 0"),
    ("lsa", "batch_size", True, "must be a whole number"),
    ("lsa", "noise_std", -0.1, "must not be negative"),
    ("dae", "patience", "3", "must be a whole number or null"),
    ("oled", "keep", 1.5, r"must lie in \(0, 1\]"),
    ("oled", "keep", 0.0, r"must lie in \(0, 1\]"),
    ("alocc", "betas", [0.5], "must have 2 values"),
    ("alocc", "betas", [0.5, 1.0], r"must lie in \[0, 1\)"),
    ("alocc", "r_widths", [32, -64, 128], "must be greater than 0"),
    ("attn-entropy", "attention", "yes", "must be true or false"),
    ("ocsvm", "gamma", [1], "must be a name or a number"),
    ("ocsvm", "nu", 0, r"must lie in \(0, 1\]"),
    # scikit-learn's PCA reads 1 as one component and refuses 1.0: a share of the variance is below 1
    ("ocsvm", "pca_variance", 1, r"must lie in \(0, 1\)"),
    ("kde", "pca_variance", 1.0, r"must lie in \(0, 1\)"),
])
def test_option_values_out_of_range_are_refused_with_what_is_allowed(method, key, value, message):
    with pytest.raises(OneClassError, match=f"option {key}=.*{message}"):
        oneclass.create(method, device="cpu", **{key: value})


def test_accepted_values_of_other_types_still_work():
    lr = oneclass.create("lsa", device="cpu", lr=1).config["lr"]                  # an int for a float:
    assert lr == 1 and isinstance(lr, float)                                      # held as the float
    assert oneclass.create("ocsvm", device="cpu", gamma=2).config["gamma"] == 2.0
    assert isinstance(oneclass.create("ocsvm", device="cpu", gamma=2).config["gamma"], float)
    assert oneclass.create("alocc", device="cpu", betas=[0, 0.9]).config["betas"] == [0.0, 0.9]
    assert isinstance(oneclass.create("alocc", device="cpu", betas=[0, 0.9]).config["betas"][0], float)
    assert oneclass.create("ocsvm", device="cpu", gamma=0.5).config["gamma"] == 0.5
    assert oneclass.create("dae", device="cpu", patience=None).config["patience"] is None
    assert oneclass.create("dae", device="cpu", patience=3).config["patience"] == 3
    assert oneclass.create("alocc", "ped2", device="cpu", max_train_samples=100).config["max_train_samples"] == 100


def test_cli_option_of_the_wrong_type_is_one_line(tmp_path):
    from click.testing import CliRunner

    from oneclass.cli import main
    r = CliRunner().invoke(main, ["fit", "--method", "dae", "--dataset", "mnist-embedded", "--normal-class", "0",
                                  "--option", "lr=fast", "--out", str(tmp_path / "m.oneclass")])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "option lr='fast' of method 'dae': must be a finite number" in r.output
    assert not (tmp_path / "m.oneclass").exists()
