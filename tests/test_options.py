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
                                  **({"epochs": 1, "batch_size": 8} if neural else {}))
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


def test_lsa_without_estimator_is_refused_with_the_method_to_use():
    with pytest.raises(OneClassError, match="estimator='none'.*'mfc', 'lstm'"):
        oneclass.create("lsa", estimator="none")
    with pytest.raises(OneClassError, match="arch='cifar10'.*preset 'mnist'"):
        oneclass.create("lsa", "mnist", arch="cifar10")
