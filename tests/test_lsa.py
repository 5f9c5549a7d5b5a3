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


def test_mfc_stack_is_table_2_layer_by_layer():
    """Table 2 of the supplement: MFC 1→32 (type A), 3 × MFC 32→32 (B), MFC 32→B (B), a
    LeakyReLU between layers. (Type A on another layer than the first, or a layer dropped, can
    keep the stack causal: only the layer list tells them apart.)"""
    from torch import nn

    def layers(est):
        return [(m.mask_type, m.c_in, m.c_out) for m in est.net if isinstance(m, MaskedFullyConnection)]
    est = MFCEstimator(64)
    assert layers(est) == [("A", 1, 32), ("B", 32, 32), ("B", 32, 32), ("B", 32, 32), ("B", 32, 100)]
    assert [type(m) for m in est.net][1::2] == [nn.LeakyReLU] * 4
    assert layers(MFCEstimator(6, hidden=(3, 5, 2), bins=4)) == [("A", 1, 3), ("B", 3, 5), ("B", 5, 2), ("B", 2, 4)]


def test_mfc_layer_is_masked_weight_times_input_plus_bias_and_keeps_no_mask_in_its_state():
    torch.manual_seed(1)
    layer = MaskedFullyConnection("A", 4, 2, 3)
    torch.nn.init.normal_(layer.bias)
    x = torch.rand(5, 4, 2)
    expected = x.reshape(5, -1) @ (layer.weight * layer.mask).t() + layer.bias
    torch.testing.assert_close(layer(x), expected.view(5, 4, 3))
    # the mask is rebuilt from the shape: saved models hold weights and biases only
    assert set(layer.state_dict()) == {"weight", "bias"}
    with pytest.raises(ValueError, match="^mask_type must be 'A' or 'B'$"):
        MaskedFullyConnection("C", 4, 1, 1)


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
    # outside [0, 1] (a code that is not a sigmoid's) still lands in a bin, the nearest one
    assert quantise(torch.tensor([[-0.3, 1.7]]), 100).tolist() == [[0, 99]]


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
    # the normalisation does not depend on what is scored with it (refitting it on the scored
    # batch would move scores by tenths; the tolerance allows only the convolutions' batch-size-
    # dependent rounding, seen up to 1e-4 with one thread)
    np.testing.assert_allclose(det.score_components(test[:10])["ns"], comps["ns"][:10], rtol=0, atol=1e-3)
    det.save(tmp_path / "m.oneclass")
    again = oneclass.load(tmp_path / "m.oneclass", device="cpu")
    np.testing.assert_allclose(again.score_components(test)["ns"], comps["ns"], rtol=1e-6)


# ---- video: MSC, causal 3D convolutions, clip and frame scores ---------------------------------
from oneclass.models.lsa_video import CausalConv3d, MaskedStackedConvolution, MSCEstimator  # noqa: E402


def _dependency_video(f, t: int, d: int) -> np.ndarray:
    """dep[s, j, s2, i]: output (step s, position j) depends on input (step s2, position i)."""
    z = torch.rand(2, t, d, requires_grad=True)
    out = f(z)  # (B, t, d, K)
    dep = np.zeros((t, d, t, d), dtype=bool)
    for s in range(t):
        for j in range(d):
            (g,) = torch.autograd.grad(out[:, s, j].sum(), z, retain_graph=True)
            dep[s, j] = (g.abs().sum(0) > 0).numpy()
    return dep


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_single_msc_layer_sees_previous_step_and_current_up_to_i(mask_type):
    torch.manual_seed(0)
    t, d = 4, 5
    layer = MaskedStackedConvolution(mask_type, d, 1, 3)
    dep = _dependency_video(lambda z: layer(z.unsqueeze(-1)), t, d)
    for s in range(t):
        for j in range(d):
            expected = np.zeros((t, d), dtype=bool)
            if s > 0:
                expected[s - 1] = True                      # the whole previous step
            expected[s, :j if mask_type == "A" else j + 1] = True  # current step up to j
            assert (dep[s, j] == expected).all(), (s, j)


def test_msc_stack_is_autoregressive_over_time_and_code():
    torch.manual_seed(0)
    t, d = 3, 4
    dep = _dependency_video(MSCEstimator(d, hidden=(2, 2), bins=5), t, d)
    for s in range(t):
        for j in range(d):
            assert not dep[s, j, s + 1:].any()            # never a later step
            assert not dep[s, j, s, j:].any()             # never position ≥ j of its own step
            assert dep[s, j, :s].any() or s == 0          # the past is used


@pytest.mark.parametrize("d,ci,co", [(4, 1, 3), (8, 2, 5), (16, 4, 100)])
def test_msc_parameter_count_formula(d, ci, co):
    b = MaskedStackedConvolution("B", d, ci, co)
    assert b.effective_parameters() == (3 * d * d + d) // 2 * ci * co + d * co
    a = MaskedStackedConvolution("A", d, ci, co)
    assert a.effective_parameters() == (3 * d * d - d) // 2 * ci * co + d * co


def test_causal_conv3d_ignores_future_frames():
    torch.manual_seed(0)
    conv = CausalConv3d(1, 2)
    x = torch.rand(1, 1, 6, 5, 5, requires_grad=True)
    out = conv(x)
    (g,) = torch.autograd.grad(out[:, :, 2].sum(), x)
    assert g[:, :, 3:].abs().sum() == 0 and g[:, :, :3].abs().sum() > 0


def test_video_lsa_trains_and_scores_synthetic_clips():
    torch.manual_seed(0)
    # normal clips: a bright square drifting right; novel: random noise
    t = torch.arange(8).view(1, 1, 8, 1, 1)
    cols = torch.arange(32).view(1, 1, 1, 1, 32)
    start = torch.randint(0, 16, (60, 1, 1, 1, 1))
    normal = (((cols >= start + t) & (cols < start + t + 8)).float().expand(60, 1, 8, 32, 32) * 200).to(torch.uint8)
    det = oneclass.create("lsa", "ped2", epochs=1, device="cpu", batch_size=16)
    det.fit(normal[:48], normal[48:], progress=False)
    comps = det.score_components(normal[:4])
    assert set(comps) == {"rec", "llk", "ns"} and all(v.shape == (4,) for v in comps.values())
    with pytest.raises(oneclass.DataError, match="N×1×8×32×32"):
        det.score_samples(torch.zeros(2, 1, 8, 28, 28, dtype=torch.uint8))
    # a clip model's maps come from its patches in the video path, not from score_maps
    with pytest.raises(oneclass.OneClassError, match="video models map patches"):
        det.score_maps(normal[:2])


def test_lsa_objective_is_rec_plus_lambda_llk_and_training_lowers_llk(embedded_split):
    """Eq. 4: REC + λ·LLK per sample (λ = 1 for MNIST, 0.1 for CIFAR-10), and training on it
    lowers the estimator's surprisal (a loss that left LLK out or subtracted it would not)."""
    from oneclass.training import StepContext
    losses = {"rec": torch.tensor([2.0, 4.0]), "llk": torch.tensor([10.0, 30.0])}
    assert oneclass.create("lsa", "mnist", device="cpu")._total(losses).tolist() == [12.0, 34.0]
    assert oneclass.create("lsa", "cifar10", device="cpu")._total(losses).tolist() == pytest.approx([3.0, 7.0])
    det = oneclass.create("lsa", "mnist", seed=0, device="cpu", lr=1e-3)
    det._build()
    batch = embedded_split.train.images[:64]
    with torch.no_grad():
        llk_before = float(det.validation_losses(batch)["llk"].mean())
    g = torch.Generator().manual_seed(0)
    for step in range(15):
        det.train_mode(True)
        det.train_step(batch, StepContext(1, step, g))
    with torch.no_grad():
        det.train_mode(False)
        llk_after = float(det.validation_losses(batch)["llk"].mean())
    assert llk_after < llk_before - 1.0, (llk_before, llk_after)
