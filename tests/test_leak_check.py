"""scripts/leak_check.py: the test set with training images swapped in, as OLED's official
MNIST scripts test (what the swap changes, and what it leaves alone)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import script_module


@pytest.fixture(scope="module")
def leak():
    return script_module("scripts/leak_check.py", "leak_check")


def _images(n: int, start: int) -> torch.Tensor:
    """n 1×2×2 uint8 images, each telling its number (start + i) apart from every other."""
    ids = torch.arange(start, start + n)
    return torch.stack([ids % 256, ids // 256, torch.zeros_like(ids), torch.zeros_like(ids)], 1).reshape(n, 1, 2, 2).to(torch.uint8)


def test_a_share_of_the_inliers_becomes_training_images_each_once_and_the_outliers_stay(leak):
    labels = np.array([0] * 40 + [1] * 12)
    test, train = _images(52, 0), _images(100, 1000)
    leaky, where = leak.swap_in_training_images(test, labels, train, 0.63, seed=3)
    assert len(where) == round(0.63 * 40) and (labels[where] == 0).all()
    keep = np.setdiff1d(np.arange(52), where)
    assert torch.equal(leaky[keep], test[keep])  # every other inlier and every outlier as it was
    as_id = lambda x: (x[:, 0, 0, 0].long() + 256 * x[:, 0, 0, 1].long()).tolist()  # noqa: E731
    swapped = as_id(leaky[where])
    assert all(1000 <= i < 1100 for i in swapped) and len(set(swapped)) == len(swapped)
    again, where_again = leak.swap_in_training_images(test, labels, train, 0.63, seed=3)
    assert torch.equal(again, leaky) and (where_again == where).all()  # seeded
    other, _ = leak.swap_in_training_images(test, labels, train, 0.63, seed=4)
    assert not torch.equal(other, leaky)
    untouched, none = leak.swap_in_training_images(test, labels, train, 0.0, seed=3)
    assert torch.equal(untouched, test) and len(none) == 0
    with pytest.raises(ValueError, match="share must lie in"):
        leak.swap_in_training_images(test, labels, train, 1.2, seed=3)
    with pytest.raises(ValueError, match="only 10 training images"):
        leak.swap_in_training_images(test, labels, train[:10], 0.63, seed=3)


def test_the_shares_are_the_official_scripts_counts(leak):
    shares = leak.official_shares()
    assert sorted(shares) == list(range(10)) and shares[0] == 0.0  # digit 0's official test set is clean
    assert all(0.61 <= shares[d] <= 0.64 for d in range(1, 10))
    assert shares[1] == pytest.approx(1658 / 2626)
