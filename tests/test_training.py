"""The shared trainer: determinism, kill-and-resume, best-epoch selection, early stopping, log."""
import json
import re
import time
import zipfile

import numpy as np
import pytest
import torch

import oneclass
from oneclass.errors import OneClassError


@pytest.fixture(scope="module")
def data(embedded_split):
    return embedded_split.train.images[:96], embedded_split.val.images[:24], embedded_split.test.images[:64]


# four epochs in all: Deep SVDD's are two of autoencoder pretraining, then two with its centre
PHASES = {"deep-svdd": {"epochs": 2, "pretrain_epochs": 2}}


def make(method="dae", **kw):
    opts = dict(epochs=4, seed=3, device="cpu", batch_size=32, lr=1e-3, checkpoint_every_s=0)
    opts.update(PHASES.get(method, {}))
    opts.update(kw)
    return oneclass.create(method, "mnist", **opts)


def weights(det):
    return {f"{k}.{n}": t for k, sd in det.state_dicts().items() for n, t in sd.items()}


def test_same_seed_same_model(data):
    x, val, test = data
    a = make().fit(x, val, progress=False)
    b = make().fit(x, val, progress=False)
    np.testing.assert_array_equal(a.score_samples(test), b.score_samples(test))
    c = make(seed=4).fit(x, val, progress=False)
    assert not np.array_equal(a.score_samples(test), c.score_samples(test))


# the multi-optimiser methods too: every optimiser's state, and OLED's mask module, must resume;
# Deep SVDD is killed in its first epoch after pretraining, so its centre is set on resume
@pytest.mark.parametrize("method", ["dae", "alocc", "oled", "attn-entropy", "deep-svdd", "memae", "vae"])
def test_interrupted_run_resumes_to_the_same_result(data, tmp_path, method):
    x, val, test = data
    make = lambda **kw: globals()["make"](method, **kw)  # noqa: E731
    whole = make().fit(x, val, progress=False, log_path=tmp_path / "whole.jsonl")

    ckpt, log = tmp_path / "run.ckpt", tmp_path / "run.jsonl"
    broken = make()
    original, calls = broken.train_step, {"n": 0}

    def dies_in_epoch_3(batch, ctx):
        calls["n"] += 1
        if ctx.epoch == 3 and calls["n"] > 8:  # mid-epoch, after epoch 2's checkpoint
            raise KeyboardInterrupt
        return original(batch, ctx)

    broken.train_step = dies_in_epoch_3
    with pytest.raises(KeyboardInterrupt):
        broken.fit(x, val, progress=False, checkpoint=ckpt, log_path=log)
    assert ckpt.exists()
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1, 2]
    # a kill between an epoch's log line and its checkpoint leaves a line the checkpoint does not
    # cover: resuming must drop it, not log epoch 3 twice
    with open(log, "a") as fh:
        fh.write(json.dumps({"epoch": 3, "train": {}, "val": {}, "written_before_the_kill": True}) + "\n")

    resumed = make().fit(x, val, progress=False, checkpoint=ckpt, resume=True, log_path=log)
    assert resumed.fit_info["resumed_from"] == 2
    assert set(weights(resumed)) == set(weights(whole))
    for k, t in weights(whole).items():
        torch.testing.assert_close(weights(resumed)[k], t, rtol=0, atol=0)
    np.testing.assert_array_equal(resumed.score_samples(test), whole.score_samples(test))
    epochs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    # the resumed log's losses are those of the uninterrupted run
    whole_log = [json.loads(line) for line in (tmp_path / "whole.jsonl").read_text().splitlines()]
    for a, b in zip(epochs, whole_log):
        assert a["train"] == pytest.approx(b["train"], rel=1e-6) and a["val"] == pytest.approx(b["val"], rel=1e-6)


# killed in epoch 2 without an epoch log; also with other execution-only settings in the killed
# run: a new default of the scoring batch (or the memory format) must not strand a killed run
@pytest.mark.parametrize("killed_with", [{}, {"score_batch_size": 16, "channels_last": False}])
def test_resume_without_an_epoch_log(data, tmp_path, killed_with):
    x, val, test = data
    whole = make(epochs=2).fit(x, val, progress=False)
    broken = make(epochs=2, **killed_with)
    original = broken.train_step

    def dies_in_epoch_2(batch, ctx):
        if ctx.epoch == 2:
            raise KeyboardInterrupt
        return original(batch, ctx)

    broken.train_step = dies_in_epoch_2
    with pytest.raises(KeyboardInterrupt):
        broken.fit(x, val, progress=False, checkpoint=tmp_path / "c.ckpt")
    resumed = make(epochs=2).fit(x, val, progress=False, checkpoint=tmp_path / "c.ckpt", resume=True)
    assert resumed.fit_info["resumed_from"] == 1
    if killed_with:  # epoch 1 ran in the other memory format: the same FP32 maths, other kernels' rounding
        np.testing.assert_allclose(resumed.score_samples(test), whole.score_samples(test), rtol=1e-3)
    else:
        np.testing.assert_array_equal(resumed.score_samples(test), whole.score_samples(test))


def test_resume_refuses_a_checkpoint_of_another_configuration(data, tmp_path):
    x, val, _ = data
    make(epochs=1).fit(x, val, progress=False, checkpoint=tmp_path / "c.ckpt")
    with pytest.raises(OneClassError, match=r"belongs to another configuration \(dae, seed 3; differs in lr\); delete it to start over"):
        make(epochs=1, lr=5e-4).fit(x, val, progress=False, checkpoint=tmp_path / "c.ckpt", resume=True)
    # a byte of a saved weight changed: resuming from it would train on silently wrong numbers
    raw = bytearray((tmp_path / "c.ckpt").read_bytes())
    with zipfile.ZipFile(tmp_path / "c.ckpt") as z:
        weight = max(z.infolist(), key=lambda i: i.file_size)
    raw[weight.header_offset + 30 + len(weight.filename) + 200] ^= 0x40  # inside its data (short extra field)
    (tmp_path / "flipped.ckpt").write_bytes(bytes(raw))
    with pytest.raises(OneClassError, match=r"flipped.ckpt is corrupt \(member \S+ fails its CRC-32 check"):
        make(epochs=1).fit(x, val, progress=False, checkpoint=tmp_path / "flipped.ckpt", resume=True)
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(OneClassError, match=r"bad.ckpt is corrupt \(not a zip archive \(a truncated copy, or another "
                                            r"kind of file\)\); delete it to start over$"):
        make(epochs=1).fit(x, val, progress=False, checkpoint=tmp_path / "bad.ckpt", resume=True)
    with zipfile.ZipFile(tmp_path / "zip.ckpt", "w") as z:  # a sound zip, but not torch's
        z.writestr("notes.txt", "hello")
    with pytest.raises(OneClassError, match=r"zip.ckpt is unreadable \(\w+: \S.*\); delete it to start over$"):
        make(epochs=1).fit(x, val, progress=False, checkpoint=tmp_path / "zip.ckpt", resume=True)


def test_a_checkpoint_written_before_an_option_was_added_resumes_at_its_old_value(data, tmp_path):
    """`latent` came to the attention AE after runs of it were under way: a checkpoint that lacks
    it resumes at 512 (what the network was), and is refused under another value."""
    x, val, _ = data
    make("attn-entropy", epochs=1).fit(x, val, progress=False, checkpoint=tmp_path / "c.ckpt")
    ck = torch.load(tmp_path / "c.ckpt", weights_only=True)
    del ck["config"]["latent"]  # as written by the code before the option
    torch.save(ck, tmp_path / "c.ckpt")
    resumed = make("attn-entropy", epochs=1).fit(x, val, progress=False, checkpoint=tmp_path / "c.ckpt", resume=True)
    assert resumed.fit_info["resumed_from"] == 1 and resumed.fit_info["epochs_run"] == 1
    torch.save(ck, tmp_path / "c.ckpt")
    with pytest.raises(OneClassError, match=r"another configuration \(attn-entropy, seed 3; differs in latent\)"):
        make("attn-entropy", epochs=1, latent=100).fit(x, val, progress=False, checkpoint=tmp_path / "c.ckpt",
                                                       resume=True)


def test_best_epoch_is_kept_and_early_stopping(data):
    x, val, _ = data
    # a large step: validation rec is best after epoch 1 and worse for the next two
    det = make(epochs=8, select="rec", patience=2, lr=0.02).fit(x, val, progress=False)
    hist = det.fit_info["history"]
    best = min(hist, key=lambda r: r["val"]["rec"])
    assert det.fit_info["stopped_early"] and len(hist) == best["epoch"] + 2 < 8
    assert det.fit_info["best_epoch"] == best["epoch"]
    # the networks kept are those of the best epoch, not the last one
    with torch.inference_mode():
        det.train_mode(False)
        kept = float(det.validation_losses(val)["rec"].mean())
    assert kept == pytest.approx(best["val"]["rec"], rel=1e-5)


def test_selection_must_name_a_validation_quantity(data):
    x, val, _ = data
    with pytest.raises(OneClassError, match="not among the validation"):
        make(epochs=1, select="nonsense").fit(x, val, progress=False)


def test_progress_prints_one_line_per_epoch_with_its_losses(data, capsys):
    x, val, _ = data
    det = make(epochs=2).fit(x, val, progress=True)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("dae epoch")]
    assert len(lines) == 2
    for line, rec in zip(lines, det.fit_info["history"]):
        assert line.startswith(f"dae epoch {rec['epoch']}/2: ")
        assert f"rec {rec['train']['rec']:.4g}" in line and f"val_rec {rec['val']['rec']:.4g}" in line
        shown = re.search(r"\(([0-9.]+)s\)$", line)  # the epoch's seconds, to one decimal
        assert shown and abs(float(shown.group(1)) - rec["seconds"]) <= 0.051
    make(epochs=1).fit(x, val, progress=False)
    assert "epoch" not in capsys.readouterr().out


def test_live_bar_shows_the_running_losses_of_slow_steps(data, capsys):
    # six steps of about 0.55 s: the bar's losses are refreshed about once a second (steps 2, 4 and
    # the last), not only after the first step and the last, however slow a step is
    x, val, _ = data
    det = make(epochs=1, batch_size=16)
    original = det.train_step

    def slow_step(batch, ctx):
        time.sleep(0.55)
        return original(batch, ctx)

    det.train_step = slow_step
    det.fit(x, val, progress=True)
    shown = set(re.findall(r"rec=([0-9.e+-]+)", capsys.readouterr().err))
    assert len(shown) >= 3, shown


def test_history_records_throughput(data):
    x, val, _ = data
    det = make(epochs=2).fit(x, val, progress=False)
    rec = det.fit_info["history"][0]
    assert rec["train_images_per_second"] > 0 and set(rec["val"]) == {"loss", "rec"}
    info = det.fit_info
    assert (info["n_train"], info["n_val"], info["epochs_run"]) == (96, 24, 2)
    # images trained in this call over its seconds: 2 epochs of all 96 images
    assert info["train_images_per_second"] * info["train_seconds"] == pytest.approx(2 * 96, rel=1e-9)


@pytest.mark.parametrize("n, batches", [(64, [32, 32]), (65, [32, 32]), (66, [32, 32, 2])])
def test_every_sample_once_per_epoch_but_a_last_batch_of_one(data, n, batches):
    """Batch norm cannot normalise a batch of one sample: that batch alone is dropped."""
    x, val, _ = data
    det = make(epochs=1)
    sizes, original = [], det.train_step

    def counting(batch, ctx):
        sizes.append(len(batch))
        return original(batch, ctx)

    det.train_step = counting
    det.fit(torch.cat([x, x])[:n], val, progress=False)
    assert sizes == batches


def test_each_epoch_shuffles_and_draws_its_own_noise_from_seed_and_epoch():
    """The order of the samples and the step's generator differ between epochs, and repeat
    exactly in another run with the same seed (what resuming from a checkpoint relies on)."""
    from oneclass.training import Trainer

    class Recorder:
        name, config = "recorder", {}

        def __init__(self):
            self.seen = []

        def train_mode(self, on):
            pass

        def train_step(self, batch, ctx):
            self.seen.append((ctx.epoch, batch[:, 0, 0, 0].tolist(), float(torch.rand(1, generator=ctx.generator))))
            return {"loss": torch.tensor(0.0)}

        def validation_losses(self, batch):
            return {"loss": torch.zeros(len(batch))}

        def state_dicts(self):
            return {}

    train = torch.arange(16, dtype=torch.uint8).view(16, 1, 1, 1).expand(16, 1, 2, 2).contiguous()
    runs = []
    for _ in range(2):
        rec = Recorder()
        Trainer(epochs=2, batch_size=16, seed=5, device=torch.device("cpu"), progress=False).fit(rec, train, train[:4])
        runs.append(rec.seen)
    (e1, order1, noise1), (e2, order2, noise2) = runs[0]
    assert (e1, e2) == (1, 2) and sorted(order1) == sorted(order2) == list(range(16))
    assert order1 != order2 and noise1 != noise2
    assert runs[0] == runs[1]


def test_adam_is_fused_where_torch_has_it_and_falls_back_with_the_same_settings(monkeypatch):
    from oneclass import neural
    from oneclass.neural import adam
    weights = [torch.zeros(2, requires_grad=True)]
    fused = adam(weights, 1e-3, [0.5, 0.9], weight_decay=0.1)
    assert fused.defaults["fused"] and fused.defaults["betas"] == (0.5, 0.9)
    assert isinstance(fused, neural.LayoutFreeFusedAdam)

    class WithoutFused(torch.optim.Adam):  # a torch or device with no fused kernel
        def __init__(self, params, **kw):
            if kw.get("fused"):
                raise RuntimeError("fused=True is not supported here")
            super().__init__(params, **kw)

    monkeypatch.setattr(neural, "LayoutFreeFusedAdam", WithoutFused)
    plain = adam(weights, 1e-3, [0.5, 0.9], weight_decay=0.1)
    assert not plain.defaults.get("fused")
    assert {k: plain.defaults[k] for k in ("lr", "betas", "weight_decay")} == \
        {"lr": 1e-3, "betas": (0.5, 0.9), "weight_decay": 0.1}


def test_an_interrupted_scoring_pass_resumes_at_its_first_unfinished_batch(data, tmp_path):
    """A kill during scoring (AnoGAN's latent search: two hours for MNIST's test set on one
    thread) loses only the batch in progress: the next process, resuming from the finished
    checkpoint, scores the remaining batches and gives the uninterrupted pass's scores."""
    from oneclass.score_store import ScoreStore, model_key, store_path
    x, val, test = data
    ckpt = tmp_path / "run.ckpt"
    make_dae = lambda **kw: make("dae", epochs=1, score_batch_size=16, **kw)  # noqa: E731
    whole = make_dae().fit(x, val, progress=False).score_components(test)
    det = make_dae().fit(x, val, progress=False, checkpoint=ckpt)
    real, batches, kill_at = det.raw_scores, [], 3

    def raw_scores(inputs):  # the store knows a pass by its scoring function's name
        batches.append(len(inputs))
        if len(batches) == kill_at:
            raise KeyboardInterrupt
        return real(inputs)

    det.raw_scores = raw_scores
    with pytest.raises(KeyboardInterrupt):
        det.score_components(test)
    assert store_path(ckpt).is_file() and ckpt.is_file()

    again = make_dae().fit(x, val, progress=False, checkpoint=ckpt, resume=True)
    real, batches, kill_at = again.raw_scores, [], None
    again.raw_scores = raw_scores
    resumed = again.score_components(test)
    assert batches == [16, 16]  # 64 images: two batches were kept, two are scored
    assert again.scoring_resumed["images"] == 32 and again.scoring_resumed["earlier_seconds"] >= 0
    for k, v in whole.items():
        np.testing.assert_array_equal(resumed[k], v)
    # a pass with nothing kept says so
    again.score_components(test[:20])
    assert again.scoring_resumed is None

    # the store answers only the images and the model state it was written with
    np.testing.assert_array_equal(again.score_components(test.flip(0))["rec"], whole["rec"][::-1])
    assert again.scoring_resumed is None
    other = make_dae(seed=4).fit(x, val, progress=False)
    other.score_store = ScoreStore(store_path(ckpt), model_key(other), every_s=0)
    np.testing.assert_array_equal(other.score_components(test)["rec"],
                                  make_dae(seed=4).fit(x, val, progress=False).score_components(test)["rec"])
    assert other.scoring_resumed is None

    # damaged kept scores are a lost saving of time, not an error: scored again, with a warning
    store_path(ckpt).write_bytes(b"not a store")
    again.score_store = ScoreStore(store_path(ckpt), model_key(again), every_s=0)  # as a new process reads it
    with pytest.warns(UserWarning, match=r"run.scores.ckpt are unreadable .*scoring from the start"):
        np.testing.assert_array_equal(again.score_components(test)["rec"], whole["rec"])
