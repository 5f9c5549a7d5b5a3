"""LSA maths that is easy to get wrong: autoregressive masks, parameter counts, LLK, bins, NS."""
import numpy as np
import pytest
import torch

import oneclass
from oneclass.models.lsa import LSTMEstimator, MaskedFullyConnection, MFCEstimator, quantise, surprisal


def _dependency(f, d: int) -> np.ndarray:
    """dep[j, i] = True when output position j depends on input position i (via gradients)."""
    z = torch.rand(3, d, requires_grad=True)
    out = f(z)  # (B, d, K)
    dep = np.zeros((d, d), dtype=bool)
    for j in range(d):
        (g,) = torch.autograd.grad(out[:, j].sum(), z, retain_graph=True)
        dep[j] = (g.abs().sum(0) > 0).numpy()
    return dep


@pytest.mark.parametrize("mask_type,strict", [("A", True), ("B", False)])
def test_single_mfc_layer_sees_only_allowed_positions(mask_type, strict):
    torch.manual_seed(0)
    d = 7
    layer = MaskedFullyConnection(mask_type, d, 1, 3)
    dep = _dependency(lambda z: layer(z.unsqueeze(-1)), d)
    allowed = np.tril(np.ones((d, d), bool), k=-1 if strict else 0)
    assert (dep == allowed).all()


def test_mfc_stack_is_strictly_autoregressive():
    torch.manual_seed(0)
    d = 10
    est = MFCEstimator(d, hidden=(4, 4), bins=5)
    dep = _dependency(est, d)
    # the first layer is type A, so after any stack of B layers position j sees exactly i < j
    assert (dep == np.tril(np.ones((d, d), bool), k=-1)).all()


def test_lstm_estimator_is_strictly_autoregressive():
    torch.manual_seed(0)
    d = 6
    dep = _dependency(LSTMEstimator(d, hidden=8, bins=5), d)
    assert (dep == np.tril(np.ones((d, d), bool), k=-1)).all()


def test_masked_weights_get_no_gradient():
    layer = MaskedFullyConnection("B", 5, 2, 3)
    layer(torch.rand(4, 5, 2)).sum().backward()
    assert (layer.weight.grad[layer.mask == 0] == 0).all()


@pytest.mark.parametrize("d,ci,co", [(4, 1, 32), (64, 32, 32), (16, 32, 100), (7, 3, 5)])
def test_mfc_parameter_count_matches_supplement_formula(d, ci, co):
    # supplement §12: type B has (d² + d)/2 · ci · co weights + d · co biases; type A (d² − d)/2 · ci · co + d · co
    assert MaskedFullyConnection("B", d, ci, co).effective_parameters() == (d * d + d) // 2 * ci * co + d * co
    assert MaskedFullyConnection("A", d, ci, co).effective_parameters() == (d * d - d) // 2 * ci * co + d * co


def test_quantisation_bins():
    z = torch.tensor([[0.0, 0.999, 1.0, 0.5, 0.0099, 0.01]])
    assert quantise(z, 100).tolist() == [[0, 99, 99, 50, 0, 1]]


def test_llk_is_summed_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4)
    z = torch.tensor([[0.1, 0.6, 0.99], [0.0, 0.3, 0.74]])
    bins = quantise(z, 4)
    logp = torch.log_softmax(logits, -1)
    expected = -torch.stack([sum(logp[b, j, bins[b, j]] for j in range(3)) for b in range(2)])
    assert torch.allclose(surprisal(logits, z), expected)


def test_ns_uses_validation_statistics_saved_with_the_model(tmp_path, embedded_split):
    split = embedded_split
    det = oneclass.create("lsa", "mnist", epochs=1, seed=0, device="cpu", batch_size=64)
    det.fit(split.train.images, split.val.images, progress=False)
    raw = det._raw(split.val.images)
    for k in ("rec", "llk"):
        assert det.normalisers[k].low == pytest.approx(raw[k].min())
        assert det.normalisers[k].high == pytest.approx(raw[k].max())
    test = split.test.images[:300]
    comps = det.score_components(test)
    raw_test = det._raw(test)
    expected = sum((raw_test[k] - raw[k].min()) / (raw[k].max() - raw[k].min()) for k in ("rec", "llk"))
    np.testing.assert_allclose(comps["ns"], expected, rtol=1e-6)
    # the normalisation does not depend on what is scored with it
    np.testing.assert_allclose(det.score_components(test[:10])["ns"], comps["ns"][:10], rtol=1e-6)
    det.save(tmp_path / "m.oneclass")
    again = oneclass.load(tmp_path / "m.oneclass", device="cpu")
    np.testing.assert_allclose(again.score_components(test)["ns"], comps["ns"], rtol=1e-6)
