"""Pix-CNN, AnoGAN and GANomaly: the maths that is easy to get wrong — the PixelCNN's causality
(no logit sees its own pixel or a later one, and no blind spot), its likelihood, AnoGAN's
latent search and score, GANomaly's code distance and discriminator restart."""
import numpy as np
import pytest
import torch

import oneclass
from oneclass.errors import OneClassError
from oneclass.models import anogan, ganomaly, pixel_cnn


def _dependence(net: torch.nn.Module, x: torch.Tensor, c: int, r: int, col: int) -> torch.Tensor:
    """|∂ logits[c, r, col] / ∂ x| summed over the 256 levels: C×H×W, nonzero where the logit
    of that pixel and channel reads the input."""
    x = x.clone().requires_grad_(True)
    net(x)[0, c, :, r, col].sum().backward()
    return x.grad[0].abs()


@pytest.mark.parametrize("channels", [1, 3])
def test_no_logit_sees_its_own_pixel_or_a_later_one(channels):
    torch.manual_seed(0)
    net = pixel_cnn.GatedPixelCNN(channels, filters=6 * channels, layers=4).double()
    for p in net.parameters():  # large weights: any leak shows as a nonzero gradient
        torch.nn.init.normal_(p, 0, 0.5)
    x = torch.rand(1, channels, 9, 9, dtype=torch.float64)
    h, w = 9, 9
    raster = torch.arange(h * w).view(h, w)
    for r, col in [(0, 0), (4, 4), (4, 8), (8, 0), (8, 8)]:
        for c in range(channels):
            dep = _dependence(net, x, c, r, col)
            later = raster > raster[r, col]
            assert (dep[:, later] == 0).all(), f"pixel ({r}, {col}) channel {c} reads a later pixel"
            # its own pixel: only the earlier colours (R → G → B)
            assert (dep[c:, r, col] == 0).all(), f"channel {c} of ({r}, {col}) reads itself or a later colour"
            if c > 0:
                assert (dep[:c, r, col] > 0).all(), "a later colour must read the earlier ones of its pixel"
    # no blind spot: the pixel above and to the right — which the first PixelCNN's masked
    # stack cannot see — and the one just left are read
    dep = _dependence(net, x, 0, 4, 4)
    assert dep[:, 3, 5].sum() > 0 and dep[:, 2, 6].sum() > 0 and dep[:, 4, 3].sum() > 0 and dep[:, 3, 4].sum() > 0


def test_masks_are_the_colour_order():
    g = pixel_cnn.channel_groups(6, 3)
    np.testing.assert_array_equal(g, [0, 0, 1, 1, 2, 2])
    # a gated layer's two halves carry the same groups, in the same order
    np.testing.assert_array_equal(pixel_cnn.channel_groups(12, 3, period=6), [0, 0, 1, 1, 2, 2] * 2)
    a = pixel_cnn.centre_mask(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), "A")
    b = pixel_cnn.centre_mask(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), "B")
    assert a.tolist() == [[False, False, False], [True, False, False], [True, True, False]]
    assert b.tolist() == [[True, False, False], [True, True, False], [True, True, True]]


def test_nll_is_minus_the_log_softmax_of_each_pixel_summed():
    torch.manual_seed(0)
    det = oneclass.create("pixel-cnn", "mnist", device="cpu", filters=4, layers=2)
    det._build()
    det.normalisers = {}
    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    logits = det.networks["pixelcnn"](x.float() / 255)
    logp = torch.log_softmax(logits, dim=2)  # N×C×256×H×W
    by_hand = -logp.gather(2, x.long()[:, :, None]).squeeze(2).flatten(1).sum(1)
    ours = det._raw(x)["nll"]
    np.testing.assert_allclose(ours, by_hand.detach().numpy(), rtol=1e-5)
    # a likelihood: over the 256 values of one pixel whose successors are ignored, the
    # probabilities sum to 1 (the first pixel reads nothing: its distribution is the bias's)
    assert torch.allclose(logp[:, 0, :, 0, 0].exp().sum(1), torch.ones(3))


@pytest.mark.parametrize("nhwc", [False, True])
def test_the_nll_of_each_pixel_and_colour_is_its_own(nhwc):
    """`pixel_nll` reshapes the logits to rows of 256: each map entry must be the NLL of its own
    pixel and colour, for plain and NHWC feature maps (where the reshape is a view)."""
    torch.manual_seed(0)
    out = torch.randn(2, 3 * 256, 5, 4)
    if nhwc:
        out = out.contiguous(memory_format=torch.channels_last)
    logits = out.view(2, 3, 256, 5, 4)
    x = torch.randint(0, 256, (2, 3, 5, 4), dtype=torch.uint8)
    by_hand = -torch.log_softmax(logits, dim=2).gather(2, x.long()[:, :, None]).squeeze(2)
    torch.testing.assert_close(pixel_cnn.pixel_nll(logits, x), by_hand)


def test_pixel_cnn_learns_the_training_density(embedded_data):
    train, test = embedded_data
    ones = train.images[train.labels == 1][:96]
    det = oneclass.create("pixel-cnn", "mnist", device="cpu", epochs=6, batch_size=16, filters=8, layers=3, seed=0,
                          lr=1e-2)
    det.fit(ones, progress=False)
    nll = det.score_samples(test.images[:200])
    labels = test.labels[:200].numpy()
    # well below the 8 bits per pixel of a uniform guess, and other digits less likely than 1s
    assert det.fit_info["history"][-1]["train"]["bits_per_dim"] < 3
    assert nll[labels == 1].mean() < 0.7 * nll[labels != 1].mean()


def _tiny_anogan(**kw):
    torch.manual_seed(0)
    det = oneclass.create("anogan", "mnist", device="cpu", width=8, code=6, **kw)
    det._build()
    for p in det.networks["G"].parameters():  # a generator whose images differ with z (an untrained
        torch.nn.init.normal_(p, 0, 0.3)      # DCGAN at 0.02 paints every z the same grey)
    det.normalisers = {}
    det.train_mode(False)
    return det


def _generated(det, n: int) -> torch.Tensor:
    """Images the generator itself makes from n different codes: each has its own best z."""
    z = torch.rand(n, 6, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        return ((det.networks["G"](z) + 1) * 127.5).round().to(torch.uint8)


def test_latent_search_lowers_the_loss_and_the_score_is_its_weighted_terms():
    det = _tiny_anogan(search_steps=60)
    x = _generated(det, 4)
    start = _tiny_anogan(search_steps=0)._raw(x)
    searched = det._raw(x)
    assert (searched["a"] < 0.8 * start["a"]).all()  # every image's own z moved to a much better fit
    np.testing.assert_allclose(searched["a"], 0.9 * searched["residual"] + 0.1 * searched["discrimination"],
                               rtol=1e-6)
    # the residual is Σ|x − G(z)| at the final z: the map adds up to it
    maps = det._batched(det.raw_maps, x)
    np.testing.assert_allclose(maps["residual"].reshape(4, -1).sum(1), searched["residual"], rtol=1e-5)


def test_the_scores_recorded_along_a_search_are_those_of_shorter_searches():
    """`record_at` measures how the score moves with the step budget in one pass: the score after
    k steps of a 40-step search is the score of a k-step search."""
    x = _generated(_tiny_anogan(), 3)
    long = _tiny_anogan(search_steps=40)
    with torch.no_grad():
        after = long.search(long.inputs(x), record_at=(5, 20, 40))["a_after"]
    assert sorted(after) == [5, 20, 40]
    for k in (5, 20, 40):
        np.testing.assert_allclose(after[k].numpy(), _tiny_anogan(search_steps=k)._raw(x)["a"], rtol=1e-5)
    assert (after[40] < after[5]).all()


def test_an_image_scores_the_same_alone_or_in_a_batch():
    det = _tiny_anogan(search_steps=30)
    x = _generated(det, 5)
    together = det._raw(x)["a"]
    alone = np.array([det._raw(x[i:i + 1])["a"][0] for i in range(5)])
    np.testing.assert_allclose(alone, together, rtol=1e-4)


def test_anogan_lam_and_export_are_refused_by_name():
    with pytest.raises(OneClassError, match=r"option lam=1.5 .* must lie in \[0, 1\]"):
        oneclass.create("anogan", lam=1.5)
    from oneclass.export import exportable
    assert "gradient search of the latent space" in exportable(oneclass.create("anogan"))


def test_ganomaly_score_is_the_distance_between_the_two_codes():
    torch.manual_seed(0)
    for norm in ("l1", "l2"):
        det = oneclass.create("ganomaly", "mnist", device="cpu", width=8, code=5, score_norm=norm)
        det._build()
        det.normalisers = {}
        x = torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8)
        scores = det._raw(x)
        det.train_mode(False)
        with torch.no_grad():
            fake, z, z_rec = det.networks["G"](det.inputs(x))
        d = (z - z_rec).numpy()
        expected = np.abs(d).sum(1) if norm == "l1" else (d ** 2).mean(1)
        np.testing.assert_allclose(scores["enc"], expected, rtol=1e-5)
        np.testing.assert_allclose(scores["con"], (fake - det.inputs(x)).abs().flatten(1).mean(1).numpy(), rtol=1e-5)
        assert z.shape == (3, 5) and fake.shape == (3, 1, 32, 32)


def test_ganomaly_restarts_a_discriminator_that_has_won(monkeypatch):
    det = oneclass.create("ganomaly", "mnist", device="cpu", width=8, code=5, batch_size=8)
    det._build()
    before = det.networks["D"].final.weight.detach().clone()
    # a discriminator loss below 1e-5 re-initialises D's weights (the official code's rule)
    monkeypatch.setattr(ganomaly, "real_fake_loss", lambda real, fake: (real.sum() + fake.sum()) * 0)
    ctx = oneclass.training.StepContext(1, 0, torch.Generator().manual_seed(1))
    det.train_mode(True)
    det.train_step(torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8), ctx)
    after = det.networks["D"].final.weight.detach()
    assert not torch.equal(before, after) and abs(float(after.std()) - 0.02) < 0.005


def test_dcgan_shapes_and_initialisation():
    enc, dec = anogan.DCGANEncoder(3, 7), anogan.DCGANDecoder(3, 7)
    anogan.dcgan_init(enc)
    out, f = enc(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 7) and f.shape == (2, 256, 4, 4)
    assert dec(torch.zeros(2, 7)).shape == (2, 3, 32, 32)
    w = enc.features[0].weight.detach()
    assert abs(float(w.mean())) < 0.005 and abs(float(w.std()) - 0.02) < 0.003


def test_generative_baselines_fit_score_save_and_load(tmp_path, embedded_data):
    train, test = embedded_data
    x = train.images[train.labels == 7][:64]
    for method, kw in [("pixel-cnn", {"filters": 4, "layers": 2}), ("anogan", {"width": 8, "search_steps": 3}),
                       ("ganomaly", {"width": 8})]:
        det = oneclass.create(method, "mnist", device="cpu", epochs=1, batch_size=16, seed=0, **kw).fit(x, progress=False)
        s = det.score_samples(test.images[:6])
        assert s.shape == (6,) and np.isfinite(s).all()
        det.save(tmp_path / f"{method}.oneclass")
        np.testing.assert_allclose(oneclass.load(tmp_path / f"{method}.oneclass").score_samples(test.images[:6]), s,
                                   rtol=1e-5)
