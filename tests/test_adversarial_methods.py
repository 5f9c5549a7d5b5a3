"""ALOCC, OLED/CAE and the attention + entropy AE: the maths that is easy to get wrong."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import oneclass
from oneclass.errors import OneClassError
from oneclass.models.attn_entropy import ChannelAttention, UNetGenerator, entropy_loss
from oneclass.models.oled import masked_losses, random_square_mask, threshold_unit
from oneclass.training import StepContext


def built(method, preset="mnist", **kw):
    det = oneclass.create(method, preset, device="cpu", **kw)
    det._build()
    det.train_mode(True)
    return det


def params(net):
    return [p.detach().clone() for p in net.parameters()]


def changed(before, net):
    return any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


@pytest.fixture(scope="module")
def batch(embedded_split):
    return embedded_split.train.images[:32]


# ---- ALOCC -----------------------------------------------------------------------------------
def test_alocc_updates_alternate(batch):
    det = built("alocc")
    x = det.inputs(batch)
    noisy = det.noisy(x, torch.Generator().manual_seed(0))
    R, D = det.networks["R"], det.networks["D"]
    r0, d0 = params(R), params(D)
    det.d_step(x, noisy)
    assert changed(d0, D) and not changed(r0, R)
    r1, d1 = params(R), params(D)
    det.r_step(x, noisy)
    assert changed(r1, R) and not changed(d1, D)


def test_alocc_reconstruction_term_scale(batch):
    x = built("alocc").inputs(batch)
    out = torch.zeros_like(x)
    mean = built("alocc")._rec_loss(out, x)
    total = built("alocc", rec_reduction="sum")._rec_loss(out, x)
    assert mean == pytest.approx(x.pow(2).mean().item())
    assert total == pytest.approx(mean.item() * x[0].numel(), rel=1e-5)  # ‖X − R‖² per image, batch mean
    with pytest.raises(OneClassError, match="rec_reduction='median'.*'mean', 'sum'"):
        oneclass.create("alocc", rec_reduction="median")


def test_alocc_scores_and_shapes(batch):
    for preset, (c, s) in {"mnist": (1, 28), "cifar10": (3, 32), "ped2": (1, 30)}.items():
        det = built("alocc", preset)
        x = torch.zeros(2, c, s, s)
        assert det.networks["R"](x).shape == x.shape and det.networks["D"](x).shape == (2,)
    det = built("alocc")
    det.train_mode(False)
    with torch.no_grad():
        out = det.raw_scores(det.inputs(batch))
    assert set(out) == {"d_x", "d_rx", "rec"}
    assert not torch.allclose(out["d_x"], out["d_rx"])
    assert ((out["d_rx"] >= 0) & (out["d_rx"] <= 1)).all()


def test_alocc_stopping_rule(embedded_split):
    det = oneclass.create("alocc", "mnist", epochs=5, device="cpu", batch_size=64, stop_rec=10.0)
    det.fit(embedded_split.train.images[:128], embedded_split.val.images[:32], progress=False)
    assert det.fit_info["epochs_run"] == 1 and det.fit_info["stopped_early"]


# ---- OLED ------------------------------------------------------------------------------------
def test_threshold_unit_masks_exact_fraction_with_ties():
    a = torch.rand(5, 1, 28, 28)
    a[0] = 0.0                        # all tied (a ReLU map that is zero everywhere)
    a[1, 0, :14] = 1.0                # half the pixels tied at the top
    m = threshold_unit(a, keep=0.875)
    k = round(0.125 * 784)
    assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
    assert ((m == 0).flatten(1).sum(1) == k).all()
    # on untied maps, exactly the k largest activations are masked
    top = a[2].flatten().topk(k).indices
    assert (m[2].flatten()[top] == 0).all()


def test_threshold_unit_is_continuous_and_passes_gradients():
    a = torch.rand(2, 1, 8, 8, requires_grad=True)
    m = threshold_unit(a, keep=0.75, eps=1e-3)
    (m * torch.randn_like(m)).sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    # the gradient is eq. 2's: d/dA of ReLU(s − A) / (ReLU(s − A) + ε) = −ε / (s − A + ε)² below s
    a = torch.tensor([[[[0.9, 0.5, 0.2, 0.1]]]], requires_grad=True)  # keep 0.75: the top one is masked
    m = threshold_unit(a, keep=0.75, eps=1e-3)
    assert m.detach().flatten().tolist() == [0.0, 1.0, 1.0, 1.0]
    m.sum().backward()
    s, eps = 0.9, 1e-3
    below = [-eps / (s - v + eps) ** 2 for v in (0.5, 0.2, 0.1)]
    expected = [-sum(below)] + below  # s is the top activation itself: its gradient collects theirs
    torch.testing.assert_close(a.grad.flatten(), torch.tensor(expected), rtol=1e-4, atol=1e-7)


def test_masking_and_context_loss_touch_masked_pixels_only():
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    mask = threshold_unit(torch.rand(3, 1, 32, 32))
    xm = x * mask
    assert (xm[mask.expand_as(x) == 0] == 0).all()           # every channel zeroed where masked
    assert torch.equal(xm[mask.expand_as(x) == 1], x[mask.expand_as(x) == 1])
    recon = x.clone()
    recon[mask.expand_as(x) == 1] += 0.5                        # errors only where NOT masked
    assert torch.allclose(masked_losses(x, recon, mask)["cont"], torch.zeros(3))
    recon2 = x.clone()
    recon2[mask.expand_as(x) == 0] += 0.5                       # errors only where masked
    assert (masked_losses(x, recon2, mask)["cont"] > 0).all()


def test_oled_mm_ascends_and_r_descends(batch):
    det = built("oled", lr=1e-3)
    x = det.inputs(batch)
    g = torch.Generator().manual_seed(0)

    def objective():  # on the fixed batch, with batch statistics as in training
        with torch.no_grad():
            mask = det.make_mask(x)
            return float(det.adversarial_objective(masked_losses(x, det.networks["R"](x * mask), mask)))

    r_before = objective()
    for _ in range(3):
        det.r_step(x, StepContext(1, 0, g))
    assert objective() < r_before
    mg0, r0 = params(det.networks["MG"]), params(det.networks["R"])
    before = objective()
    for _ in range(5):
        det.mm_step(x, StepContext(1, 0, g))
    assert changed(mg0, det.networks["MG"]) and not changed(r0, det.networks["R"])
    assert objective() > before


def test_cae_masks_one_square_and_scores_stably(batch):
    m = random_square_mask((4, 1, 28, 28), 10, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert ((m == 0).flatten(1).sum(1) == 100).all()
    det = oneclass.create("cae", "mnist", epochs=1, device="cpu", batch_size=16)
    det.fit(batch[:24], batch[24:], progress=False)
    full = det.score_samples(batch)
    np.testing.assert_allclose(det.score_samples(batch[5:9]), full[5:9], rtol=1e-5)  # batch-independent


def test_oled_labelled_selection(embedded_data):
    train, test = embedded_data
    split = oneclass.protocols.memae(train, test, 3, seed=0, selection=20)
    assert len(split.selection) == 40 and split.selection_labels.sum() == 20
    det = oneclass.create("oled", "mnist", epochs=2, device="cpu", batch_size=64, select="val_auroc")
    with pytest.raises(oneclass.OneClassError, match="selection set"):
        det.fit(split.train.images[:64], split.val.images[:32], progress=False)
    det.fit(split.train.images[:64], split.val.images[:32], progress=False,
            selection=(split.selection.images, split.selection_labels))
    hist = det.fit_info["history"]
    assert all(-1 <= h["val"]["val_auroc"] <= 0 for h in hist)
    assert det.fit_info["best_epoch"] == min(hist, key=lambda h: h["val"]["val_auroc"])["epoch"]


# ---- attention + entropy ---------------------------------------------------------------------
def test_channel_attention_formula():
    torch.manual_seed(0)
    att = ChannelAttention(32, ratio=8)
    assert att.mlp[0].out_features == 4 and att.mlp[2].out_features == 32
    x = torch.randn(2, 32, 5, 5)
    mlp = att.mlp
    expected = x * torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[:, :, None, None]
    torch.testing.assert_close(att(x), expected)
    # one weight per channel: the ratio out/in is constant over each channel's pixels
    ratio = att(x) / x
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio), atol=1e-5)


def test_entropy_loss_values():
    h = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    assert entropy_loss(h)[0] == pytest.approx(math.log(4))    # uniform softmax: log t
    p = torch.softmax(h[1], 0)
    assert entropy_loss(h)[1] == pytest.approx(float(-(p * p.log()).sum()), rel=1e-6)
    peaked = torch.tensor([[50.0, 0.0, 0.0, 0.0]])                # ~one-hot softmax: ~0
    assert entropy_loss(peaked)[0] < 1e-6 < entropy_loss(h)[1]


def test_generator_shapes_and_ablation_switches():
    for attention in (True, False):
        g = UNetGenerator(3, attention=attention)
        out, code = g(torch.zeros(2, 3, 32, 32))
        assert out.shape == (2, 3, 32, 32) and code.shape == (2, 512, 1, 1)
        n_att = sum(isinstance(m, ChannelAttention) for m in g.modules())
        assert n_att == (9 if attention else 0)
    plain, unet = UNetGenerator(1), UNetGenerator(1, skips=True)
    for g in (plain, unet):
        out, _ = g(torch.zeros(2, 1, 32, 32))
        assert out.shape == (2, 1, 32, 32)
    assert plain.out.in_channels == 64 and unet.out.in_channels == 128  # U-Net concatenates the 64 encoder maps
    # the latent length t is an option (the paper gives none): the code h and the decoder's input follow it
    for skips in (False, True):
        small = UNetGenerator(1, skips=skips, latent=100)
        out, code = small(torch.zeros(2, 1, 32, 32))
        assert out.shape == (2, 1, 32, 32) and code.shape == (2, 100, 1, 1)
        assert small.up[0][0].in_channels == 100 and small.down[-1][0].out_channels == 100
    det = built("attn-entropy", latent=64)
    _, code = det.networks["G"](det.inputs(det.prepare(oneclass.datasets.embedded()[0].images[:4])))
    assert code.shape[1] == 64 and det.config["latent"] == 64
    # the entropy switch removes the latent entropy term from the generator's loss
    batch = oneclass.datasets.embedded()[0].images[:8]
    for entropy in (True, False):
        det = built("attn-entropy", entropy=entropy)
        out = det.train_step(det.prepare(batch), StepContext(1, 0, torch.Generator().manual_seed(0)))
        assert ("inf" in out) is entropy and det.image_size == 32


# ---- score combinations: each component min-max scaled on the validation set, then combined ----
@pytest.mark.parametrize("method, combine", [
    ("oled", lambda n: {"avg": (n["rec"] + n["mask"] + n["cont"]) / 3}),
    ("cae", lambda n: {"avg": (n["rec"] + n["mask"] + n["cont"]) / 3}),
    ("attn-entropy", lambda n: {"a": 0.9 * n["con"] + 0.1 * n["fea"]}),
])
def test_combined_scores_are_built_from_validation_normalised_components(embedded_split, method, combine):
    s = embedded_split
    x, val, test = s.train.images[:64], s.val.images[:40], s.test.images[::50]
    det = oneclass.create(method, "mnist", epochs=1, device="cpu", batch_size=32).fit(x, val, progress=False)
    raw_val, raw_test = det._raw(det.prepare(val)), det._raw(det.prepare(test))
    normalised = {k: (raw_test[k] - raw_val[k].min()) / (raw_val[k].max() - raw_val[k].min()) for k in raw_test}
    got = det.score_components(test)
    for name, expected in combine(normalised).items():
        np.testing.assert_allclose(got[name], expected, rtol=1e-6, atol=1e-9)
    for k in normalised:  # the parts are reported normalised as well
        np.testing.assert_allclose(got[k], normalised[k], rtol=1e-6, atol=1e-9)
    assert got[det.headline].shape == (len(test),)



def test_attention_a_raw_is_eq7_of_the_raw_terms_then_scaled_as_a_whole(embedded_split):
    """The paper's A (eq. 7) adds the raw con and fea, and eq. 8 then scales A itself: `a_raw` is
    that sum, min-max scaled on the validation inliers; the headline `a` instead adds the terms
    after scaling each, which weighs them differently wherever their raw ranges differ."""
    s = embedded_split
    x, val, test = s.train.images[:64], s.val.images[:40], s.test.images[::50]
    det = oneclass.create("attn-entropy", "mnist", epochs=1, device="cpu", batch_size=32).fit(x, val, progress=False)
    raw_val, raw_test = det._raw(det.prepare(val)), det._raw(det.prepare(test))
    for raw in (raw_val, raw_test):
        np.testing.assert_allclose(raw["a_raw"], 0.9 * raw["con"] + 0.1 * raw["fea"], rtol=1e-6)
    lo, hi = raw_val["a_raw"].min(), raw_val["a_raw"].max()
    got = det.score_components(test)
    np.testing.assert_allclose(got["a_raw"], (raw_test["a_raw"] - lo) / (hi - lo), rtol=1e-6, atol=1e-9)
    scaled = {k: (raw_test[k] - raw_val[k].min()) / (raw_val[k].max() - raw_val[k].min()) for k in ("con", "fea")}
    np.testing.assert_allclose(got["a"], 0.9 * scaled["con"] + 0.1 * scaled["fea"], rtol=1e-6, atol=1e-9)


def test_attention_a_mse_is_skip_ganomaly_codes_score(embedded_split):
    """Skip-GANomaly's test code scores 0.9·mean((x − x̂)²) + 0.1·mean((f(x) − f(x̂))²): `con_mse` is
    the squared pixel error per image (against a hand computation from G's output), `a_mse` that sum,
    scaled as a whole on the validation inliers; neither is a training loss in the logs."""
    s = embedded_split
    x, val, test = s.train.images[:64], s.val.images[:40], s.test.images[::50]
    det = oneclass.create("attn-entropy", "mnist", epochs=1, device="cpu", batch_size=32).fit(x, val, progress=False)
    inputs = det.inputs(det.prepare(test))
    with torch.inference_mode():
        det.train_mode(False)
        fake = det.networks["G"](inputs)[0]
    raw_val, raw_test = det._raw(det.prepare(val)), det._raw(det.prepare(test))
    np.testing.assert_allclose(raw_test["con_mse"], ((fake - inputs) ** 2).mean((1, 2, 3)).numpy(), rtol=1e-5)
    for raw in (raw_val, raw_test):
        np.testing.assert_allclose(raw["a_mse"], 0.9 * raw["con_mse"] + 0.1 * raw["fea"], rtol=1e-6)
    lo, hi = raw_val["a_mse"].min(), raw_val["a_mse"].max()
    np.testing.assert_allclose(det.score_components(test)["a_mse"], (raw_test["a_mse"] - lo) / (hi - lo),
                               rtol=1e-6, atol=1e-9)
    assert set(det.fit_info["history"][-1]["val"]) == {"con", "fea", "inf"}  # the losses of eq. 6


def test_alocc_f1_at_tau_half_counts_low_d_as_novel():
    """1 − D(R(X)) above 0.5 (D below τ = 0.5) is novel: F1 of the novel class and of the
    target class at that threshold, on scores whose answer is known."""
    from oneclass.data.images import ImageData
    from oneclass.evaluation import _score_and_measure
    from oneclass.protocols import Split

    class Stub:
        name, headline = "alocc", "d_rx"

        def score_components(self, images):
            s = np.array([0.9, 0.4, 0.2, 0.1])  # 1 − D: the first is called novel at τ = 0.5
            return {"d_rx": s, "d_x": s, "rec": s * 100}

    images = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    data = ImageData(images, torch.zeros(4, dtype=torch.long), ["0"])
    split = Split(data, data, data, np.array([1, 1, 0, 0]))
    metrics = _score_and_measure(Stub(), split, {k: np.zeros(4) for k in ("d_rx", "d_x", "rec")})["metrics"]
    for name in ("d_rx", "d_x"):
        assert metrics[name]["f1_at_tau_0.5"] == pytest.approx(2 / 3)       # novel: 1 TP, 1 FN, no FP
        assert metrics[name]["f1_normal_at_tau_0.5"] == pytest.approx(0.8)  # target: 2 TP, 1 FP (the missed novel)
    # τ = 0.5 is a threshold on D: ALOCC's reconstruction error gets none
    assert "f1_at_tau_0.5" not in metrics["rec"] and "f1_normal_at_tau_0.5" not in metrics["rec"]


def test_alocc_components_are_one_minus_d_of_x_and_of_r_x(tiny_fitted, embedded_data):
    """d_x = 1 − D(X) (eq. 6's D alone), d_rx = 1 − D(R(X)) (eq. 7), rec = mean (R(X) − X)²:
    each computed here from the networks themselves."""
    det = tiny_fitted["alocc"]
    images = embedded_data[1].images[::100]
    comps = det.score_components(images)
    with torch.no_grad():
        x = det.inputs(det.prepare(images))
        R, D = det.networks["R"], det.networks["D"]
        rx = R(x)
        expected = {"d_x": 1 - torch.sigmoid(D(x)), "d_rx": 1 - torch.sigmoid(D(rx)),
                    "rec": (rx - x).pow(2).flatten(1).mean(1)}
    for name, value in expected.items():
        np.testing.assert_allclose(comps[name], value.numpy().ravel(), rtol=1e-5, atol=1e-6, err_msg=name)
    assert not np.allclose(comps["d_x"], comps["d_rx"])


def test_oled_adversarial_objective_is_l_mask_plus_gamma_l_cont():
    """Eqs. 6–7: MM ascends and R descends the batch mean of L_mask + γ·L_cont (γ = 50)."""
    det = oneclass.create("oled", "mnist", device="cpu")
    losses = {"mask": torch.tensor([0.2, 0.4]), "cont": torch.tensor([0.01, 0.03])}
    assert det.config["gamma"] == 50.0
    assert float(det.adversarial_objective(losses)) == pytest.approx((0.2 + 50 * 0.01 + 0.4 + 50 * 0.03) / 2)


def test_threshold_unit_keeping_everything_masks_nothing():
    a = torch.rand(2, 1, 4, 4)
    assert (threshold_unit(a, keep=1.0) == 1).all() and threshold_unit(a, keep=1.0).shape == a.shape


def _selection_metrics(det, embedded_data):
    """`epoch_metrics` of a fitted detector on a labelled selection set (every 20th embedded test
    digit, novel = not 3), with those labels and the raw component scores of the set."""
    test = embedded_data[1]
    images = det.prepare(test.images[::20])
    labels = (test.labels[::20] != 3).numpy().astype(np.int64)
    det._selection = (images, labels)
    try:
        return det.epoch_metrics(), labels, det._raw(images)
    finally:
        det._selection = None


def test_labelled_epoch_choice_scores_s_avg_of_components_scaled_on_the_selection_set(tiny_fitted, embedded_data):
    """OLED's select=val_auroc (the official code's epoch choice): −AUROC of s_avg, whose three
    components are each min-max scaled over the labelled selection set itself."""
    from oneclass.metrics import MinMax, auroc
    metrics, labels, raw = _selection_metrics(tiny_fitted["oled"], embedded_data)
    got = metrics["val_auroc"]
    scaled = {k: MinMax.fit(v)(v) for k, v in raw.items()}
    assert got == pytest.approx(-auroc(labels, (scaled["rec"] + scaled["mask"] + scaled["cont"]) / 3))
    assert got != pytest.approx(-auroc(labels, (raw["rec"] + raw["mask"] + raw["cont"]) / 3))


def test_labelled_epoch_choice_logs_each_components_selection_auroc(tiny_fitted, embedded_data):
    """Beside the headline's negated AUROC the trainer minimises, each other component's AUROC on
    the selection set (positive: for reading, not for the choice)."""
    from oneclass.metrics import auroc
    got, labels, raw = _selection_metrics(tiny_fitted["oled"], embedded_data)
    assert set(got) == {"val_auroc", "selection_auroc_rec", "selection_auroc_mask", "selection_auroc_cont"}
    for k in ("rec", "mask", "cont"):
        assert got[f"selection_auroc_{k}"] == pytest.approx(auroc(labels, raw[k]))
    assert len({round(v, 9) for v in got.values()}) == 4  # four different quantities, none negated twice


def test_attention_init_dcgan_starts_as_skip_ganomalys_init_weights():
    """`init="dcgan"`: every convolution and linear weight of G and D drawn from N(0, 0.02) with
    zero biases, batch-norm scales from N(1, 0.02) with zero shifts (Skip-GANomaly's
    `init_weights`); the default keeps PyTorch's, and the choice is seeded like the rest of the run."""
    dcgan, default = built("attn-entropy", init="dcgan"), built("attn-entropy")
    for name in ("G", "D"):
        layers = [m for m in dcgan.networks[name].modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
        flat = torch.cat([m.weight.detach().flatten() for m in layers])
        assert abs(float(flat.mean())) < 1e-3 and float(flat.std()) == pytest.approx(0.02, rel=0.02)
        assert all(float(m.bias.detach().abs().max()) == 0.0 for m in layers if m.bias is not None)
        norms = [m for m in dcgan.networks[name].modules() if isinstance(m, nn.BatchNorm2d)]
        scales = torch.cat([m.weight.detach() for m in norms])
        assert float(scales.std()) == pytest.approx(0.02, rel=0.2) and abs(float(scales.mean()) - 1) < 0.01
        assert all(float(m.bias.detach().abs().max()) == 0.0 for m in norms)
        torch_convs = [m.weight for m in default.networks[name].modules() if isinstance(m, nn.Conv2d)]
        assert float(torch_convs[0].detach().std()) > 0.05  # PyTorch's default: 1/sqrt(fan_in) bounds
    mlp = [m for m in dcgan.networks["G"].modules() if isinstance(m, nn.Linear)]
    assert mlp and float(torch.cat([m.weight.detach().flatten() for m in mlp]).std()) == pytest.approx(0.02, rel=0.05)
    again = built("attn-entropy", init="dcgan")
    assert all(torch.equal(a, b) for a, b in zip(dcgan.networks.state_dict().values(), again.networks.state_dict().values()))
    with pytest.raises(OneClassError, match="init"):
        oneclass.create("attn-entropy", "mnist", init="xavier")


def test_attention_skip_ganomaly_discriminator_vector_and_loss(batch, monkeypatch):
    """`d_features="vector"`: f(x) is a 100-value vector from a 4×4 conv on the 256×4×4 map, the
    logit a 3×3 conv on it; `d_loss="skip-ganomaly"`: D minimises BCE(real) + BCE(fake) + λ_fea·L_fea,
    and is re-initialised when that loss falls under 1e-5."""
    import copy
    import torch.nn.functional as F
    from oneclass.models import attn_entropy
    det = built("attn-entropy", d_features="vector", d_loss="skip-ganomaly", w_fea=3.0)
    x = det.inputs(det.prepare(batch))
    D = det.networks["D"]
    logit, f = D(x)
    assert logit.shape == (len(x),) and f.shape == (len(x), 100, 1, 1)
    assert built("attn-entropy").networks["D"](x)[1].shape == (len(x), 256, 4, 4)
    assert det._parts(x)["fea"].shape == (len(x),)
    fake = x.flip(0).detach()
    before = copy.deepcopy(D)
    with torch.no_grad():
        (r, fr), (g, fg) = before(x), before(fake)
    expected = (F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
                + F.binary_cross_entropy_with_logits(g, torch.zeros_like(g)) + 3.0 * (fg - fr).pow(2).mean())
    ctx = StepContext(1, 0, torch.Generator().manual_seed(0))
    assert float(det.d_step(x, fake, ctx)) == pytest.approx(float(expected), rel=1e-5)
    gan = built("attn-entropy")
    with torch.no_grad():
        (r, _), (g, _) = copy.deepcopy(gan.networks["D"])(x), copy.deepcopy(gan.networks["D"])(fake)
    assert float(gan.d_step(x, fake, ctx)) == pytest.approx(0.5 * float(
        F.binary_cross_entropy_with_logits(r, torch.ones_like(r)) + F.binary_cross_entropy_with_logits(g, torch.zeros_like(g))), rel=1e-5)
    # a discriminator that has won (loss under 1e-5) starts again from Skip-GANomaly's initialisation
    monkeypatch.setattr(attn_entropy, "real_fake_loss", lambda r, g: 0.0 * (r.sum() + g.sum()))
    for m in D.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.weight, 0.5)
    det.d_step(x, x, ctx)
    convs = torch.cat([m.weight.detach().flatten() for m in D.modules() if isinstance(m, nn.Conv2d)])
    assert float(convs.std()) == pytest.approx(0.02, rel=0.05)
