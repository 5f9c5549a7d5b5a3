"""Video: readers of both Ped2 layouts and of video files, the samplers' geometry, frame scores
and their normalisation, the video protocol end to end, and its bad-input errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

import oneclass
from oneclass import video
from oneclass.cli import main
from oneclass.data.video import (Clip, frame_labels, list_footage, load_footage, load_ped2,
                                 parse_ucsd_ground_truth, read_frame_folder)
from oneclass.errors import DataError, OneClassError
from oneclass.evaluation import EvalSpec, evaluate, read_log

from conftest import synthetic_frames, write_ped2

TINY_LSA = {"resize": [48, 64], "batch_size": 64}


@pytest.fixture(scope="module")
def ped2_original(tmp_path_factory):
    return write_ped2(tmp_path_factory.mktemp("ucsd"), "original")


@pytest.fixture(scope="module")
def ped2_frames(tmp_path_factory):
    return write_ped2(tmp_path_factory.mktemp("frames"), "frames")


# ---- readers ---------------------------------------------------------------------------------
def test_both_ped2_layouts_read_the_same_clips_labels_and_masks(ped2_original, ped2_frames):
    tr_o, te_o = load_ped2(ped2_original)
    tr_f, te_f = load_ped2(ped2_frames)
    assert te_o.source == "UCSD Ped2 (original TIFF frames)" and te_f.source == "UCSD Ped2 (JPEG frames)"
    assert [len(c) for c in tr_o.clips] == [len(c) for c in tr_f.clips] == [24, 24]
    for a, b in zip(te_o.clips, te_f.clips):
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.masks, b.masks)
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 3  # TIFF exact, JPEG lossy
    # UCSDped2.m counts frames from 1, inclusive: test clip 1 is abnormal from its 9th frame
    assert te_o.clips[0].labels[:8].sum() == 0 and te_o.clips[0].labels[8:].all()
    # the masks agree with the frame labels, as the dataset's own do
    for c in te_o.clips:
        np.testing.assert_array_equal(c.masks.any(axis=(1, 2)).astype(int), c.labels)


def test_ucsd_ground_truth_ranges():
    text = "TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [61:180];\n" \
           "TestVideoFile{end+1}.gt_frame = [5:10, 20:22];\n"
    assert parse_ucsd_ground_truth(text) == [[(61, 180)], [(5, 10), (20, 22)]]
    labels = frame_labels([(5, 10), (20, 22)], 25, "02", "t.m")
    assert labels.sum() == 6 + 3 and labels[4] == 1 and labels[3] == 0 and labels[21] == 1 and labels[22] == 0
    with pytest.raises(DataError, match="clip 02.*beyond its 21 frames"):
        frame_labels([(20, 22)], 21, "02", "t.m")
    with pytest.raises(DataError, match="no `gt_frame"):
        parse_ucsd_ground_truth("x = 1;\n")


def test_frame_folders_sort_naturally_and_bad_frames_are_named(tmp_path):
    from PIL import Image
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in (1, 2, 10):  # 10 after 2, though "10.png" < "2.png" as text
        Image.fromarray(np.full((8, 8), i, np.uint8)).save(folder / f"{i}.png")
    assert read_frame_folder(folder)[:, 0, 0].tolist() == [1, 2, 10]
    (folder / "11.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="11.png"):
        read_frame_folder(folder)
    (folder / "11.png").unlink()
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(folder / "12.png")
    with pytest.raises(DataError, match="12.png.*share one size"):
        read_frame_folder(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no frame images.*empty"):
        read_frame_folder(empty)


def test_ped2_errors_name_the_problem(tmp_path, ped2_original):
    with pytest.raises(DataError, match="UCSD Ped2 not found"):
        load_ped2(tmp_path)
    import shutil
    root = tmp_path / "copy"
    shutil.copytree(ped2_original, root)
    m = root / "UCSDped2" / "UCSDped2.m"
    m.write_text(m.read_text().replace(":24]", ":30]", 1))
    with pytest.raises(DataError, match="Test001: abnormal range 9:30 goes beyond its 24 frames"):
        load_ped2(root)
    m.write_text("TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [1:3];\n")
    with pytest.raises(DataError, match="ground truth for 1 test clips, but 2 test clip folders"):
        load_ped2(root)


def _write_video(path, frames, codec="mpeg4", fps=10):
    import av
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            img = av.VideoFrame.from_ndarray(np.repeat(f[:, :, None], 3, axis=2), format="rgb24")
            for packet in stream.encode(img):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_video_files_are_decoded_and_broken_ones_named(tmp_path, monkeypatch):
    pytest.importorskip("av")
    frames, _ = synthetic_frames(12, seed=3)
    _write_video(tmp_path / "cam1.avi", frames)
    _write_video(tmp_path / "cam2.mp4", frames[:9], codec="libx264")
    footage = load_footage(tmp_path)
    assert [c.name for c in footage.clips] == ["cam1", "cam2"] and [len(c) for c in footage.clips] == [12, 9]
    assert footage.fps == 10
    assert np.abs(footage.clips[0].frames.astype(int) - frames.astype(int)).mean() < 8  # lossy codec
    # read a few frames at a time (how `score` goes through long footage): the same frames
    sources = list_footage(tmp_path)
    assert [(s.name, s.fps, s.header_frames) for s in sources] == [("cam1", 10, 12), ("cam2", 10, 9)]
    chunks = list(sources[0].chunks(5))
    assert [len(c) for c in chunks] == [5, 5, 2]
    np.testing.assert_array_equal(np.concatenate(chunks), footage.clips[0].frames)
    (tmp_path / "._cam1.avi").write_bytes(b"\0" * 64)  # a Mac's resource fork is not footage
    assert [s.name for s in list_footage(tmp_path)] == ["cam1", "cam2"]
    (tmp_path / "._cam1.avi").unlink()
    monkeypatch.setenv("ONECLASS_MAX_IMAGE_PIXELS", str(48 * 64 - 1))
    with pytest.raises(DataError, match=r"cam1.avi has 64×48 frames, over the limit"):
        load_footage(tmp_path / "cam1.avi")
    monkeypatch.delenv("ONECLASS_MAX_IMAGE_PIXELS")
    bad = tmp_path / "bad" / "broken.mp4"
    bad.parent.mkdir()
    bad.write_bytes((tmp_path / "cam2.mp4").read_bytes()[:300])
    with pytest.raises(DataError, match="broken.mp4"):
        load_footage(bad)
    # cut off after half its bytes, an AVI still opens and decodes its first frames without error:
    # scoring that part as the whole video would be silently wrong
    _write_video(bad.parent / "long.avi", np.random.default_rng(0).integers(0, 256, (48, 48, 64)).astype(np.uint8))
    whole = (bad.parent / "long.avi").read_bytes()
    (bad.parent / "cut.avi").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(DataError, match=r"cut.avi: only \d+ of the 48 frames its header promises"):
        list(list_footage(bad.parent / "cut.avi")[0].chunks())


# ---- samplers and scores -------------------------------------------------------------------------
def test_lsa_ped2_geometry_matches_the_paper():
    """256×384 frames, 16-frame windows, 8×32×32 patches every 16 pixels: 2 × 15 × 23 = 690
    patches per window (the paper's batch of 2760 patches is four windows)."""
    det = oneclass.create("lsa", preset="ped2", device="cpu")
    s = video.Sampler(det)
    clip = Clip("c", np.zeros((40, 240, 360), np.uint8))
    lay = s.layout(clip, 1)
    assert s.samples_per_unit(lay) == 690 and lay.frame_shape == (256, 384) and len(lay.units) == 25
    assert det.config["batch_size"] == 4 * 690


def test_frame_patches_cover_the_frame_and_cut_in_grid_order():
    det = oneclass.create("oled", preset="ped2", device="cpu")
    s = video.Sampler(det)
    frames = np.random.default_rng(0).integers(0, 256, (2, 70, 95), dtype=np.uint8)
    lay = s.layout(Clip("c", frames), 1)
    assert lay.grid == ([0, 30, 40], [0, 30, 60, 65])  # last row/col flush with the edge
    x = s.cut(torch.from_numpy(frames), lay, [1])
    assert x.shape == (12, 1, 32, 32)  # 30×30 patches edge-padded to the network's 32
    # patch (row 1, col 2) of frame 1 is frames[1, 30:60, 60:90], padded by one pixel each side
    np.testing.assert_array_equal(x[1 * 4 + 2, 0, 1:31, 1:31].numpy(), frames[1, 30:60, 60:90])
    np.testing.assert_array_equal(x[1 * 4 + 2, 0, 0, 1:31].numpy(), frames[1, 30, 60:90])


def test_window_scores_become_frame_means():
    lay = video.ClipLayout([(0, 4), (2, 4), (4, 4)], 8, ([0], [0]), 1, (1, 1))
    np.testing.assert_allclose(video._windows_to_frames(np.array([1.0, 3.0, 5.0]), lay),
                               [1, 1, 2, 2, 4, 4, 5, 5])


def _patch_mean_scorer(det, monkeypatch):
    """`det` scores a patch by its mean grey value (every component), finalised as it is."""
    monkeypatch.setattr(det, "_check_fitted", lambda: None)
    monkeypatch.setattr(det, "prepare", lambda x: x)
    monkeypatch.setattr(det, "_raw", lambda x: {k: x.float().flatten(1).mean(1).numpy() for k in det.components})
    monkeypatch.setattr(det, "finalise", lambda raw: dict(raw))


def test_a_patch_method_scores_a_frame_by_its_most_novel_patch_and_maps_each_patch(monkeypatch):
    """ALOCC and OLED (frame patches): a frame's score is its highest patch score (one small
    anomaly must not be averaged away by the rest of the frame), and its map holds each patch's."""
    det = oneclass.create("oled", preset="ped2", device="cpu")
    _patch_mean_scorer(det, monkeypatch)
    frames = np.full((3, 70, 95), 10, np.uint8)
    frames[1, 30:60, 60:90] = 250  # one patch of frame 1 (row 1, col 2 of the grid) is novel
    frames[2] = np.random.default_rng(0).integers(0, 60, (70, 95))
    sampler = video.Sampler(det)
    lay = sampler.layout(Clip("c", frames), 1)
    per_patch = [sampler.cut(torch.from_numpy(frames), lay, [u]).float().mean((1, 2, 3)).numpy() for u in range(3)]
    cs = video.score_clip(det, Clip("c", frames))
    for k in det.components:
        np.testing.assert_allclose(cs.final[k], [p.max() for p in per_patch], rtol=1e-6)
        np.testing.assert_allclose(cs.raw[k], [p.max() for p in per_patch], rtol=1e-6)
    assert cs.final["avg"][1] > 200 > cs.final["avg"][2] > cs.final["avg"][0]
    np.testing.assert_allclose(cs.cell_maps, np.stack(per_patch).reshape(3, 3, 4), rtol=1e-6)
    assert cs.cell_maps[1].argmax() == 1 * 4 + 2 and cs.samples == 3 * 12
    # painted on the frame: each pixel the mean of the patches over it ((35, 62) lies in one patch only)
    painted = video.pixel_map(cs, (70, 95))
    assert painted[1, 35, 62] == pytest.approx(per_patch[1][6]) and painted[0].std() == pytest.approx(0, abs=1e-4)
    # where patches overlap (rows 40–59 lie in grid rows 1 and 2), the mean of the two
    assert painted[1, 50, 10] == pytest.approx((per_patch[1][4] + per_patch[1][8]) / 2)


def test_per_clip_normalisation_scales_each_clip_before_combining():
    det = oneclass.create("lsa", preset="ped2", device="cpu")
    raw = [{"rec": np.array([1.0, 3.0, 2.0]), "llk": np.array([10.0, 10.0, 30.0])},
           {"rec": np.array([100.0, 200.0]), "llk": np.array([0.0, 1.0])}]
    out = video.normalise_per_clip(det, raw)
    np.testing.assert_allclose(out[0]["ns"], [0.0, 1.0, 1.5])   # (0, 1, .5) + (0, 0, 1)
    np.testing.assert_allclose(out[1]["ns"], [0.0, 2.0])


def test_frame_metrics_pool_micro_and_average_macro():
    labels = [np.array([0, 0, 1, 1, 1]), np.array([0, 1, 0, 1]), np.array([1, 1, 1]), np.array([0, 0, 1, 1])]
    scores = [np.array([0.1, 0.2, 0.3, 0.4, 0.5]),   # clip AUROC 1
              np.array([0.9, 0.1, 0.5, 0.6]),        # 1 of 4 pairs in order: 0.25
              np.array([0.2, 0.2, 0.9]),             # all abnormal: no AUROC of its own
              np.array([0.4, 0.8, 0.3, 0.9])]        # 2 of 4: 0.5
    m = video.frame_metrics(labels, scores)
    assert m["auroc"] == pytest.approx(roc_auc_score(np.concatenate(labels), np.concatenate(scores)))
    per = [roc_auc_score(l, s) for l, s in zip(labels, scores) if 0 < l.sum() < len(l)]
    assert per == pytest.approx([1.0, 0.25, 0.5])
    # the mean over the three clips with both kinds of frame (not their median, 0.5)
    assert m["auroc_macro"] == pytest.approx(1.75 / 3) and m["auroc_macro_clips"] == 3


def test_short_clip_and_small_frames_are_refused_by_name():
    det = oneclass.create("lsa", preset="ped2", device="cpu")
    with pytest.raises(DataError, match="clip short .* 10 frames, fewer than the model's temporal window of 16"):
        video.Sampler(det).layout(Clip("short", np.zeros((10, 240, 360), np.uint8)), 1)
    det = oneclass.create("alocc", preset="ped2", device="cpu")
    with pytest.raises(DataError, match="clip tiny: frames of 20×20 are smaller"):
        video.Sampler(det).layout(Clip("tiny", np.zeros((3, 20, 20), np.uint8)), 1)


# ---- end to end -----------------------------------------------------------------------------------
def test_video_metrics_are_those_of_the_frame_scores_it_stores(ped2_frames, tmp_path):
    """One epoch (no quality asked): the pooled AUROC is sklearn's over every stored test frame,
    the macro one the mean over clips, per-clip normalisation keeps each clip's components in
    [0, 1], and the record's counts and timings are the run's."""
    spec = EvalSpec(method="lsa", dataset="ped2", protocol="video", epochs=1, device="cpu", options=TINY_LSA)
    runs = evaluate(spec, ped2_frames, tmp_path, progress=False, echo=lambda s: None)
    assert len(runs) == 2
    _, test = load_ped2(ped2_frames)  # pixel AUROC on every 4th pixel of the clips with masks, once
    grid = [c.masks[:, ::4, ::4] for c in test.clips if c.masks is not None]
    for r in runs:
        info = r["protocol_info"]
        folder = next(p.parent for p in tmp_path.rglob("class0_seed0.json")
                      if json.loads(p.read_text())["run_key"] == r["run_key"])
        stored = np.load(folder / "frames" / "class0_seed0.npz")
        clips = ["01", "02"]
        labels = np.concatenate([stored[f"{c}/label"] for c in clips])
        assert info["counts"] == {"train_clips": 2, "train_frames": 48, "test_clips": 2, "test_frames": 48,
                                  "test_normal": int((labels == 0).sum()), "test_novel": int(labels.sum())}
        for k in ("rec", "llk", "ns"):
            pooled = np.concatenate([stored[f"{c}/{k}"] for c in clips])
            assert r["metrics"][k]["auroc"] == pytest.approx(roc_auc_score(labels, pooled), abs=1e-6)
            per_clip = [roc_auc_score(stored[f"{c}/label"], stored[f"{c}/{k}"]) for c in clips]
            assert r["metrics"][k]["auroc_macro"] == pytest.approx(np.mean(per_clip), abs=1e-6)
            if info["normalisation"] == "per-clip" and k != "ns":  # scaled within each clip's windows
                for c in clips:
                    assert 0 <= stored[f"{c}/{k}"].min() and stored[f"{c}/{k}"].max() <= 1 + 1e-6
        for c in clips:  # the novelty score is the sum of the two normalised components (LSA Eq. 9)
            np.testing.assert_allclose(stored[f"{c}/ns"], stored[f"{c}/rec"] + stored[f"{c}/llk"], rtol=1e-5, atol=1e-6)
        assert r["headline"] == "ns" and r["pixel_level"]["clips"] == 2 and r["pixel_level"]["pixel_grid_step"] == 4
        # each number says what it is (published Ped2 numbers mix these conventions)
        assert info["auroc_macro"] == "mean over the test clips with both normal and abnormal frames"
        assert info["aggregation"] == "mean over the windows containing a frame, a window the mean of its patches"
        assert r["pixel_level"]["note"] == "no seed paper reports pixel-level AUROC on Ped2"
        assert (r["pixel_level"]["pixels"], r["pixel_level"]["abnormal_pixels"]) == \
            (sum(g.size for g in grid), int(sum(g.sum() for g in grid)))
        assert [e["epoch"] for e in read_log(folder / "class0_seed0.json") if "epoch" in e] == [1]  # its epoch log
        assert r["train_seconds"] > 0 and r["score_frames_per_second"] > 0 and r["score_samples_per_second"] > 0
    assert sorted(r["protocol_info"]["normalisation"] for r in runs) == ["per-clip", "validation"]


@pytest.mark.slow
def test_video_protocol_end_to_end_and_resumable(ped2_frames, tmp_path):
    spec = EvalSpec(method="lsa", dataset="ped2", protocol="video", epochs=3, device="cpu", options=TINY_LSA)
    runs = evaluate(spec, ped2_frames, tmp_path, progress=False, echo=lambda s: None)
    assert sorted(r["protocol_info"]["normalisation"] for r in runs) == ["per-clip", "validation"]
    for r in runs:
        info = r["protocol_info"]
        assert info["counts"]["test_frames"] == 48 and info["counts"]["test_novel"] == 16 + 15
        assert info["label_free"] and info["smoothing"] == "none"
        # the synthetic anomaly (a large, fast square) is plain to the reconstruction error
        assert r["metrics"]["rec"]["auroc"] > 0.8
        assert r["pixel_level"]["pixel_auroc"] is not None and r["pixel_level"]["clips"] == 2
        folder = (tmp_path / next(p.parent.name for p in tmp_path.rglob("class0_seed0.json")
                                  if json.loads(p.read_text())["run_key"] == r["run_key"]))
        scores = np.load(folder / "frames" / "class0_seed0.npz")
        assert scores["01/ns"].shape == (24,) and scores["01/label"].sum() == 16
        assert sorted(p.name for p in (folder / "plots" / "class0_seed0").iterdir()) == ["clip01.png", "clip02.png"]
    # one model, two named results: each normalisation is its own run identity
    assert len({r["run_key"] for r in runs}) == 2
    messages = []
    again = evaluate(spec, ped2_frames, tmp_path, progress=False, echo=messages.append)
    assert [r["run_key"] for r in again] == [r["run_key"] for r in runs]
    assert any("already finished" in m for m in messages) and not any(m.startswith("run ") for m in messages)


def test_video_protocol_only_for_video_datasets(ped2_frames, tmp_path):
    with pytest.raises(OneClassError, match="protocol 'standard' does not apply to dataset 'ped2': video "
                                            "datasets \\(ped2\\) take protocol 'video', image datasets the others"):
        evaluate(EvalSpec(method="lsa", dataset="ped2", protocol="standard"), ped2_frames, tmp_path,
                 echo=lambda s: None)
    with pytest.raises(OneClassError, match="protocol 'video' does not apply to dataset 'mnist-embedded'"):
        evaluate(EvalSpec(method="lsa", dataset="mnist-embedded", protocol="video"), None, tmp_path,
                 echo=lambda s: None)


@pytest.mark.slow
def test_cli_fit_and_score_footage(ped2_original, tmp_path):
    runner = CliRunner()
    model = tmp_path / "m.oneclass"
    small = ["--option", "r_widths=[8,16,32,64]", "--option", "r_dec_widths=[32,16,8]",
             "--option", "d_widths=[8,16,32,64]"]
    r = runner.invoke(main, ["fit", "--method", "alocc", "--dataset", "ped2", "--data-root", str(ped2_original),
                             "--epochs", "1", "--device", "cpu", "--quiet", "--out", str(model), *small])
    assert r.exit_code == 0, r.output
    assert "frame threshold" in r.output
    out = tmp_path / "s.csv"
    test_dir = ped2_original / "UCSDped2" / "Test"
    r = runner.invoke(main, ["score", "--model", str(model), "--input", str(test_dir), "--output", str(out),
                             "--plots", str(tmp_path / "plots"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    lines = out.read_text().splitlines()
    assert lines[0] == "clip,frame,score,d_x,d_rx,rec,label" and len(lines) == 1 + 48  # the _gt folders skipped
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["Test001.png", "Test002.png"]
    # a video file: each row also gives its time in seconds (frame / the file's 10 frames/s)
    pytest.importorskip("av")
    _write_video(tmp_path / "cam.mp4", load_footage(test_dir).clips[0].frames, codec="libx264")
    r = runner.invoke(main, ["score", "--model", str(model), "--input", str(tmp_path / "cam.mp4"), "--output",
                             str(tmp_path / "cam.csv"), "--plots", str(tmp_path / "cam_plots"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "cam.csv").read_text().splitlines()
    assert rows[0] == "clip,frame,time_s,score,d_x,d_rx,rec,label" and len(rows) == 1 + 24
    assert rows[4].split(",")[:3] == ["cam", "3", "0.300"]
    assert (tmp_path / "cam_plots" / "cam.png").stat().st_size > 0
    # the saved model scores as the fitted one: same config, same frame scores
    det = oneclass.load(model, device="cpu")
    footage = load_footage(test_dir)
    first = video.score_footage(det, footage)[0][1]["d_rx"]
    assert [f"{v:.6g}" for v in first[:5]] == [l.split(",")[2] for l in lines[1:6]]
    # the frame threshold moved to a quantile of reference footage (all its frames pooled), no refit
    train_dir = ped2_original / "UCSDped2" / "Train"
    r = runner.invoke(main, ["threshold", "--model", str(model), "--input", str(train_dir), "--quantile", "0.5",
                             "--device", "cpu"])
    assert r.exit_code == 0 and "of them above it" in r.output, r.output
    det = oneclass.load(model, device="cpu")
    train_scores = video.footage_scores(det, load_footage(train_dir))
    assert det.threshold == pytest.approx(np.quantile(train_scores, 0.5))
    assert det.threshold_rule == {"quantile": 0.5, "of": f"{len(train_scores)} frames of {train_dir}"}
    # fit on a folder of the user's own footage (read a chunk at a time, tested above)
    r = runner.invoke(main, ["fit", "--method", "alocc", "--preset", "ped2", "--train-dir", str(train_dir), "--epochs",
                             "1", "--device", "cpu", "--quiet", "--option", "max_train_samples=100",
                             "--out", str(tmp_path / "own.oneclass"), *small])
    assert r.exit_code == 0, r.output
    assert "fitted alocc (ped2) on 100 samples of 2 clips (48 frames)" in r.output
    # an image model refuses footage plots; a missing input is one line
    r = runner.invoke(main, ["score", "--model", str(model), "--input", str(tmp_path / "nope")])
    assert r.exit_code != 0 and "Traceback" not in r.output


def test_paper_style_selection_uses_anomalous_test_patches_and_says_so(ped2_frames):
    train, test = load_ped2(ped2_frames)
    det = oneclass.create("oled", preset="ped2", device="cpu", select="val_auroc")
    images, labels, info = video.labelled_selection(det, train, test, seed=0, n=4, min_abnormal=0.1)
    assert images.shape == (8, 1, 32, 32) and labels.tolist() == [0] * 4 + [1] * 4
    assert info["label_free"] is False and "test frames" in info["selection"]
    # every chosen outlier patch holds the synthetic anomaly (bright pixels), no normal one does
    assert all((x[0, 1:31, 1:31] >= 240).float().mean() >= 0.1 for x in images[4:])
    assert all((x[0, 1:31, 1:31] >= 240).float().mean() == 0 for x in images[:4])
    # the draw is the seed's: the same seed, the same patches; another seed, others
    again, _, _ = video.labelled_selection(det, train, test, seed=0, n=4, min_abnormal=0.1)
    other, _, _ = video.labelled_selection(det, train, test, seed=1, n=4, min_abnormal=0.1)
    assert torch.equal(again, images) and not torch.equal(other[4:], images[4:])
    with pytest.raises(DataError, match="only .* anomalous patches"):
        video.labelled_selection(det, train, test, seed=0, n=10_000)


def test_paper_style_video_run_picks_its_epoch_on_the_seeded_labelled_set(ped2_frames, tmp_path, monkeypatch):
    """`select=val_auroc` through `evaluate`: the labelled patches are drawn with the run's own seed,
    handed to the trainer, and the record says the result is not label-free. (The synthetic
    anomaly is too small for the real set's 150 patches at 25 % abnormal pixels, so the set is
    built smaller here.)"""
    seen, real = [], video.labelled_selection

    def small_selection(det, train, test, seed):
        seen.append(seed)
        return real(det, train, test, seed, n=4, min_abnormal=0.1)

    monkeypatch.setattr(video, "labelled_selection", small_selection)
    spec = EvalSpec(method="oled", dataset="ped2", protocol="video", epochs=2, seeds=[1], device="cpu",
                    options={"select": "val_auroc", "batch_size": 32, "max_train_samples": 64})
    runs = evaluate(spec, ped2_frames, tmp_path, progress=False, echo=lambda s: None)
    assert seen == [1] and runs
    for r in runs:
        info = r["protocol_info"]
        assert info["label_free"] is False and info["selection_seed"] == 1
        assert info["selection"].startswith("4 normal patches of held-out training frames + 4 anomalous")
        # every epoch was scored on the labelled set, and the kept epoch is the best of them
        log = read_log(next(p for p in tmp_path.rglob("class0_seed1.json")
                            if json.loads(p.read_text())["run_key"] == r["run_key"]))
        picked = [e["val"]["val_auroc"] for e in log if "epoch" in e]  # the trainer minimises −AUROC
        assert len(picked) == 2 and r["fit"]["best_value"] == min(picked)
        assert r["fit"]["best_epoch"] == 1 + picked.index(min(picked))


def test_a_reduced_video_budget_still_sits_beside_the_paper_but_an_ablation_does_not():
    from oneclass.report import paper_value
    budget = json.dumps({"batch_size": 64, "max_train_samples": 5520, "test_stride": 16}, sort_keys=True)
    assert paper_value("lsa", "ped2", "video", "ns", budget)["mean"] == 0.954
    assert paper_value("oled", "ped2", "video", "avg", '{"select": "val_auroc"}')["eer"] == 0.054
    assert paper_value("oled", "ped2", "video", "avg", '{"keep": 0.5}') is None
    # on images a batch size is a setting of its own, not a budget
    assert paper_value("lsa", "mnist", "standard", "ns", '{"batch_size": 64}') is None


class _RecordingSampler(video.Sampler):
    """Records, for every batch it cuts, how many frames the scorer held and how many units it cut."""

    def __init__(self, det):
        super().__init__(det)
        self.held, self.batches = [], []

    def cut(self, frames, lay, units):
        self.held.append(len(frames))
        self.batches.append(len(units))
        return super().cut(frames, lay, units)


@pytest.mark.parametrize("method,options,n_frames", [("lsa", {"resize": [48, 64]}, 45),
                                                     ("lsa", {"resize": [48, 64], "test_stride": 5}, 93),
                                                     ("oled", {}, 21)])
def test_footage_read_in_chunks_scores_as_the_whole_clip_with_bounded_memory(method, options, n_frames, monkeypatch):
    """`score` reads long footage a chunk at a time: every chunking gives the whole clip's frame
    scores and batches (a window of LSA's spans chunks; with a stride the last window sits flush
    with the clip's end), and the scorer never holds more than a chunk, a window and a batch."""
    det = oneclass.create(method, preset="ped2", device="cpu", **options)
    _patch_mean_scorer(det, monkeypatch)
    frames = np.random.default_rng(1).integers(0, 256, (n_frames, 60, 90)).astype(np.uint8)
    whole = video.score_clip(det, Clip("c", frames))
    # against the grid cut unit by unit: a window's score is the mean of its patches', a frame's
    # the mean of the windows over it (a patch frame: its most novel patch)
    s = video.Sampler(det)
    lay = s.layout(Clip("c", frames), s.test_stride)
    pool = np.max if method == "oled" else np.mean
    per_unit = [pool(s.cut(s.prepare_frames(frames), lay, [u]).float().flatten(1).mean(1).numpy())
                for u in range(len(lay.units))]
    np.testing.assert_allclose(whole.final["avg" if method == "oled" else "ns"],
                               video._windows_to_frames(np.array(per_unit), lay), rtol=1e-5)
    reference = _RecordingSampler(det)
    video._score_units(det, reference, [frames], "c", "", keep_samples=False)
    for chunk in (1, 7, 16, 100):
        streamed = video.score_stream(det, (frames[a:a + chunk] for a in range(0, n_frames, chunk)), "c")
        assert set(streamed) == set(whole.final)
        for k in streamed:
            np.testing.assert_array_equal(streamed[k], whole.final[k])
        sampler = _RecordingSampler(det)
        video._score_units(det, sampler, (frames[a:a + chunk] for a in range(0, n_frames, chunk)), "c", "", False)
        assert sampler.batches == reference.batches
        stride = sampler.test_stride
        assert max(sampler.held) <= chunk + sampler.window + video.UNITS_PER_BATCH * stride
    if method == "lsa" and "test_stride" in options:  # two full batches at 0, 5, …, 75, one flush at 77
        units = video._score_units(det, video.Sampler(det), [frames], "c", "", False).layout.units
        assert [s for s, _ in units] == [*range(0, 80, 5), 77]


def test_footage_plot_draws_the_models_threshold():
    scores = np.linspace(0, 1, 30)
    assert video.clip_plot_png("c", scores, None, "t", threshold=0.5) != video.clip_plot_png("c", scores, None, "t")


def test_a_patch_model_scores_every_frame_and_refuses_a_test_stride():
    with pytest.raises(OneClassError, match="test_stride 2: a frame-patches model scores every frame"):
        video.Sampler(oneclass.create("alocc", preset="ped2", device="cpu", test_stride=2))


def test_fit_on_footage_reads_it_a_chunk_at_a_time_and_draws_the_same_samples(tmp_path, monkeypatch):
    """`fit` on a user's footage cuts its training samples while reading a few frames at a time:
    the samples (and held-out validation windows) are those of the footage read whole, bit for bit,
    and no more than a chunk and a window of frames are held."""
    import oneclass.data.video as dv
    frames = np.random.default_rng(2).integers(0, 256, (40, 60, 90)).astype(np.uint8)
    folder = tmp_path / "cam" / "01"
    folder.mkdir(parents=True)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{t:03d}.png")
    (tmp_path / "cam" / "02").mkdir()
    for t, f in enumerate(frames[::-1][:33]):
        Image.fromarray(f).save(tmp_path / "cam" / "02" / f"{t:03d}.png")
    monkeypatch.setattr(dv, "CHUNK_FRAMES", 7)
    # a few samples: units far apart, the next one often in a later chunk than the last
    for method, options in (("lsa", {"resize": [48, 64], "train_stride": 4}), ("alocc", {"max_train_samples": 500}),
                            ("alocc", {"max_train_samples": 12})):
        det = oneclass.create(method, preset="ped2", device="cpu", **options)
        whole = video.Sampler(det).training_samples(load_footage(tmp_path / "cam"), seed=3,
                                                    max_samples=det.config["max_train_samples"])
        sampler = _RecordingSampler(det)
        sources = list_footage(tmp_path / "cam")
        streamed = sampler.training_samples(sources, seed=3, max_samples=det.config["max_train_samples"])
        torch.testing.assert_close(streamed[0], whole[0], rtol=0, atol=0)
        torch.testing.assert_close(streamed[1], whole[1], rtol=0, atol=0)
        assert streamed[2] == whole[2] and [len(s) for s in sources] == [40, 33]
        assert max(sampler.held) <= 7 + sampler.window


def test_footage_whose_frames_change_size_is_refused_by_name(tmp_path, monkeypatch):
    """A stream can change its frame size part way; fit and score name the clip instead of failing
    inside torch."""
    from oneclass.data.video import FootageSource
    frames = np.random.default_rng(0).integers(0, 256, (6, 60, 90)).astype(np.uint8)

    class Resized(FootageSource):
        def chunks(self, size=None):
            yield frames[:3]
            yield np.zeros((3, 64, 96), np.uint8)

    det = oneclass.create("alocc", preset="ped2", device="cpu")
    _patch_mean_scorer(det, monkeypatch)
    source = Resized("cam", tmp_path / "cam.mp4", _length=6, _shape=(60, 90))
    with pytest.raises(DataError, match=r"clip cam \(.*cam.mp4\): frames change size from 90×60 to 96×64"):
        video.score_stream(det, source.chunks(), source.name, source.source)
    sampler = video.Sampler(det)
    with pytest.raises(DataError, match=r"clip cam \(.*cam.mp4\): frames change size from 90×60 to 96×64"):
        sampler.cut_streamed(source, sampler.layout(source, 1), [0, 5])


def test_scoring_footage_shows_a_bar_over_its_frames_as_fit_chose(monkeypatch, capsys):
    """An hour of footage scores for hours: a bar over its frames when fit showed one, none when
    fit was quiet (and none for a loaded model off a terminal, as for images)."""
    from oneclass import neural
    monkeypatch.setattr(neural, "SCORE_BAR_DELAY_S", 0.0)
    det = oneclass.create("oled", preset="ped2", device="cpu")
    _patch_mean_scorer(det, monkeypatch)
    frames = np.random.default_rng(0).integers(0, 256, (9, 60, 90)).astype(np.uint8)
    det.progress = True
    video.score_stream(det, [frames[:5], frames[5:]], "cam", total=9, progress=True)
    assert "oled scoring cam" in capsys.readouterr().err
    det.progress = False
    video.score_stream(det, [frames[:5], frames[5:]], "cam", total=9, progress=True)
    assert capsys.readouterr().err == ""


def test_a_video_model_keeps_no_threshold_on_its_patch_scores(ped2_frames):
    """`fit` sets an image detector's threshold on its held-out images; a video model's samples
    are patches or windows, whose scores are not frame scores. So `fit_video` leaves none unless
    given a quantile, and then sets it in frame units: `predict` never holds frames to a patch's."""
    train, _ = load_ped2(ped2_frames)
    det = oneclass.create("alocc", preset="ped2", device="cpu", epochs=1, max_train_samples=64)
    video.fit_video(det, train, progress=False)
    assert det.fitted and det.threshold is None and det.threshold_rule is None
    video.fit_video(det, train, quantile=0.9, progress=False)
    assert det.threshold_rule == {"quantile": 0.9, "of": "held-out training frame (window) scores"}
