"""The maths of the baselines that is easy to get wrong: MemAE's hard shrinkage and sparse
addressing, the VAE's ELBO against a hand computation, Deep SVDD's centre, radius, input scaling
and the absence of bias terms."""
import math

import numpy as np
import pytest
import torch
from torch import distributions as D

import oneclass
from oneclass.errors import OneClassError
from oneclass.models import deep_svdd, memae, vae


# ---- MemAE ---------------------------------------------------------------------------------
def test_hard_shrink_keeps_weights_above_the_threshold_and_zeroes_the_rest():
    w = torch.tensor([[0.001, 0.0099, 0.0101, 0.2, 0.7799]], requires_grad=True)
    out = memae.hard_shrink(w, 0.01)
    torch.testing.assert_close(out.detach(), torch.tensor([[0.0, 0.0, 0.0101, 0.2, 0.7799]]), rtol=1e-6, atol=1e-9)
    out.sum().backward()
    # a kept weight passes its gradient (≈ 1), a dropped one passes none
    assert w.grad[0, :2].abs().max() == 0
    assert torch.all(w.grad[0, 2:] > 0.5)


def test_addressing_is_sparse_sums_to_one_and_is_the_softmax_without_shrinkage():
    g = torch.Generator().manual_seed(0)
    query, items = torch.randn(6, 8, generator=g), torch.randn(20, 8, generator=g)
    dense = memae.address(query, items, 0.0)
    torch.testing.assert_close(dense, torch.softmax(query @ items.t(), 1))
    sparse = memae.address(query, items, 1 / 20)
    torch.testing.assert_close(sparse.sum(1), torch.ones(6))
    assert torch.all(sparse[dense <= 1 / 20] == 0)            # small weights are gone …
    kept = dense > 1 / 20
    for row in range(6):                                        # … the rest keep their proportions
        k = kept[row]
        torch.testing.assert_close(sparse[row, k] / sparse[row, k].sum(), dense[row, k] / dense[row, k].sum())
    entropy = memae.addressing_entropy(sparse)
    by_hand = torch.tensor([-sum(float(p) * np.log(float(p)) for p in row if p > 0) for row in sparse])
    torch.testing.assert_close(entropy, by_hand.float(), rtol=1e-5, atol=1e-6)


def test_memae_reads_every_position_from_memory_and_reconstructs_the_input_size():
    for preset, shape in (("mnist", (3, 1, 28, 28)), ("cifar10", (3, 3, 32, 32))):
        det = oneclass.create("memae", preset, device="cpu")
        det._build()
        net = det.networks["memae"]
        out, weights = net(torch.rand(shape))
        assert out.shape == shape
        z = net.encoder(torch.rand(shape))
        assert weights.shape == (3, z.shape[2] * z.shape[3], det.config["memory_size"])
        # what the decoder sees lies in the span of the memory items: rebuilt from them exactly
        read, w = net.memory(z)
        rebuilt = (w.reshape(-1, w.shape[-1]) @ net.memory.items).view(3, z.shape[2], z.shape[3], -1)
        torch.testing.assert_close(read.permute(0, 2, 3, 1), rebuilt)


def test_memae_without_memory_is_the_papers_ae_baseline():
    """memory_size=0: the decoder reads the encoder's z itself (MemAE Table 1's "AE" row), the
    addressing entropy is 0, and the networks are the same but for the memory's items."""
    torch.manual_seed(0)
    plain = oneclass.create("memae", "mnist", device="cpu", memory_size=0)
    plain._build()
    net = plain.networks["memae"]
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    net.eval()
    out, weights = net(x)
    torch.testing.assert_close(out, net.decoder(net.encoder(x)))
    assert float(plain.losses(x)["entropy"].abs().max()) == 0.0
    with_memory = oneclass.create("memae", "mnist", device="cpu")
    with_memory._build()
    names = lambda n: {k for k in n.state_dict() if not k.startswith("memory.")}  # noqa: E731
    assert names(net) == names(with_memory.networks["memae"]) and "memory.items" not in net.state_dict()


def test_memae_layers_are_the_papers_list_with_the_official_codes_activations_and_init():
    """Conv2(k, s, c): MNIST Conv2(1, 2, 16)–Conv2(3, 2, 32)–Conv2(3, 2, 64), Dconv2(3, 2, 64)–
    Dconv2(3, 2, 32)–Dconv2(3, 2, 1); CIFAR-10 64–128–256 and back (MemAE §4.1); LeakyReLU 0.2
    and DCGAN initialisation from the official code; inputs in [−1, 1]."""
    expected = {"mnist": ([(1, 2, 16), (3, 2, 32), (3, 2, 64)], [(3, 2, 64), (3, 2, 32), (3, 2, 1)], [14, 7, 4]),
                "cifar10": ([(3, 2, 64), (3, 2, 128), (3, 2, 256)], [(3, 2, 256), (3, 2, 128), (3, 2, 3)], [16, 8, 4])}
    for preset, (enc, dec, sizes) in expected.items():
        torch.manual_seed(0)
        det = oneclass.create("memae", preset, device="cpu")
        det._build()
        net = det.networks["memae"]
        convs = [m for m in net.encoder if isinstance(m, torch.nn.Conv2d)]
        deconvs = [m for m in net.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
        assert [(m.kernel_size[0], m.stride[0], m.out_channels) for m in convs] == enc
        assert [(m.kernel_size[0], m.stride[0], m.out_channels) for m in deconvs] == dec
        x = torch.zeros(2, det.channels, det.image_size, det.image_size)
        h = x
        for m in net.encoder:
            h = m(h)
            if isinstance(m, torch.nn.Conv2d):
                assert h.shape[-1] == sizes.pop(0)
        assert net(x)[0].shape == x.shape
        acts = [m for m in net.modules() if isinstance(m, (torch.nn.ReLU, torch.nn.LeakyReLU))]
        assert len(acts) == 5 and all(isinstance(a, torch.nn.LeakyReLU) and a.negative_slope == 0.2 for a in acts)
        w = torch.cat([m.weight.detach().flatten() for m in convs + deconvs])
        assert abs(float(w.std()) - 0.02) < 0.002
        assert tuple(det.config["value_range"]) == (-1.0, 1.0)


# ---- VAE ---------------------------------------------------------------------------------------
def test_kl_and_likelihood_match_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mean, logvar = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    q = D.Normal(mean, (0.5 * logvar).exp())
    p = D.Normal(torch.zeros(5), torch.ones(5))
    torch.testing.assert_close(vae.gaussian_kl(mean, logvar), D.kl_divergence(q, p).sum(1))
    logits, x = torch.randn(4, 1, 3, 3, generator=g), torch.rand(4, 1, 3, 3, generator=g).round()
    torch.testing.assert_close(vae.bernoulli_nll(logits, x), -D.Bernoulli(logits=logits).log_prob(x))
    x_hat = torch.randn(4, 1, 3, 3, generator=g)
    gauss = D.Normal(x_hat, 0.5 ** 0.5)  # variance ½: the squared error is its −log-likelihood up to a constant
    torch.testing.assert_close(vae.gaussian_nll(x_hat, x), -gauss.log_prob(x))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_negative_elbo_is_reconstruction_plus_kl_averaged_over_the_fixed_draws(likelihood):
    det = oneclass.create("vae", "mnist", device="cpu", code_length=8, elbo_samples=3, likelihood=likelihood)
    det._build()
    det.train_mode(False)
    x = torch.rand(5, 1, 28, 28)
    noise = det._scoring_noise(torch.device("cpu"))
    with torch.no_grad():
        out = det.terms(x, noise)
        mean, logvar = det.networks["encoder"](x)
        kl = 0.5 * (mean ** 2 + logvar.exp() - logvar - 1).sum(1)
        if likelihood == "bernoulli":
            nll_of = lambda out: torch.nn.functional.binary_cross_entropy_with_logits(  # noqa: E731
                out, x, reduction="none").flatten(1).sum(1)
        else:  # −log N(x; out, ½): the squared error plus (784/2)·log π
            nll_of = lambda out: ((x - out) ** 2).flatten(1).sum(1) + 392 * math.log(math.pi)  # noqa: E731
        nll = [nll_of(det.networks["decoder"](mean + (0.5 * logvar).exp() * eps)) for eps in noise]
        by_hand = sum(nll) / 3 + kl
        rec = nll_of(det.networks["decoder"](mean))
    torch.testing.assert_close(out["elbo"], by_hand)
    torch.testing.assert_close(out["kl"], kl)
    torch.testing.assert_close(out["rec"], rec)
    # a model saved before the likelihood option (no such key in its config) was Bernoulli
    if likelihood == "bernoulli":
        del det.config["likelihood"]
        with torch.no_grad():
            torch.testing.assert_close(det.terms(x, noise)["elbo"], by_hand)
    # the draws are fixed by the seed: a score does not depend on its batch or on when it is taken
    torch.testing.assert_close(det._scoring_noise(torch.device("cpu")), noise)
    assert not torch.equal(oneclass.create("vae", "mnist", device="cpu", code_length=8, elbo_samples=3,
                                           seed=1)._scoring_noise(torch.device("cpu")), noise)


# ---- Deep SVDD ---------------------------------------------------------------------------------
@pytest.mark.parametrize("preset,shape", [("mnist", (2, 1, 28, 28)), ("cifar10", (2, 3, 32, 32))])
def test_deep_svdd_network_has_no_bias_and_the_autoencoder_mirrors_it(preset, shape):
    det = oneclass.create("deep-svdd", preset, device="cpu")
    det._build()
    enc = det.networks["encoder"]
    names = [n for n, _ in enc.named_parameters()]
    assert names and all(n.endswith("weight") for n in names)  # conv and linear kernels only
    assert all(not m.affine for m in enc.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    assert not any(n.endswith("bias") for n, _ in det.networks["decoder"].named_parameters())
    x = torch.rand(shape)
    assert enc(x).shape == (2, det.config["rep_dim"])
    assert det.networks["decoder"](enc(x)).shape == shape


def test_centre_is_the_mean_representation_after_pretraining_with_small_coordinates_pushed_out():
    torch.testing.assert_close(deep_svdd.adjust_centre(torch.tensor([0.05, -0.02, 0.0, 0.3, -0.4])),
                               torch.tensor([0.1, -0.1, 0.1, 0.3, -0.4]))
    train, _ = oneclass.datasets.embedded()
    x = train.images[:200]
    det = oneclass.create("deep-svdd", "mnist", device="cpu", epochs=1, pretrain_epochs=1, batch_size=50)
    det._build()
    det.on_epoch_start(1, x)  # pretraining: scaling set, no centre yet
    assert not bool(det.networks["sphere"].ready)
    g = deep_svdd.global_contrast_normalise(x.float())
    torch.testing.assert_close(det.networks["sphere"].scale, torch.stack([g.min(), g.max()]))
    det.on_epoch_start(2, x)
    det.networks["encoder"].eval()
    with torch.no_grad():
        expected = deep_svdd.adjust_centre(det.networks["encoder"]((g - g.min()) / (g.max() - g.min())).mean(0))
    torch.testing.assert_close(det.networks["sphere"].centre, expected, rtol=1e-5, atol=1e-6)
    frozen = det.networks["sphere"].centre.clone()
    det.on_epoch_start(3, x)  # the centre is fixed once set
    torch.testing.assert_close(det.networks["sphere"].centre, frozen)


def test_gcn_radius_and_soft_boundary_score():
    x = torch.rand(3, 1, 4, 4) * 200
    g = deep_svdd.global_contrast_normalise(x).flatten(1)
    torch.testing.assert_close(g.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(g.abs().mean(1), torch.ones(3))
    dist = torch.arange(1, 11, dtype=torch.float32) ** 2  # distances 1..10
    assert float(deep_svdd.radius(dist, 0.1)) == pytest.approx(np.quantile(np.arange(1, 11), 0.9))
    train, test = oneclass.datasets.embedded()
    x = train.images[train.labels == 1][:120]
    det = oneclass.create("deep-svdd", "mnist", device="cpu", epochs=2, pretrain_epochs=1,
                          objective="soft-boundary", warm_up_epochs=1, batch_size=50).fit(x, progress=False)
    r = float(det.networks["sphere"].radius)
    assert r > 0
    # the trainer called on_epoch_start: inputs scaled from the training data, centre fixed after pretraining
    assert bool(det.networks["sphere"].ready) and float(det.networks["sphere"].centre.abs().min()) >= 0.1
    assert float(det.networks["sphere"].scale[1]) > float(det.networks["sphere"].scale[0])
    with torch.no_grad():
        dist = det.distances(det.inputs(det.prepare(test.images[:20]))).numpy()
    np.testing.assert_allclose(det.score_samples(test.images[:20]), dist - r ** 2, rtol=1e-5, atol=1e-6)


def test_baseline_options_that_cannot_work_are_refused_at_creation():
    with pytest.raises(OneClassError, match="rep_dim"):
        oneclass.create("deep-svdd", "mnist", rep_dim=20)
    with pytest.raises(OneClassError, match="shrink"):
        oneclass.create("memae", "mnist", shrink=1.5)
    with pytest.raises(OneClassError, match=r"memory_size=-1 .* must not be negative"):
        oneclass.create("memae", "mnist", memory_size=-1)
    with pytest.raises(OneClassError, match="arch"):
        oneclass.create("vae", "mnist", arch="cifar10")
