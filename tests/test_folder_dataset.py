"""A user's own labelled folder (`--dataset folder`): train/<class>/ and test/<class>/ of any
image size, decoded at the model's input, evaluated with the standard protocol, with the AUROC
against each kind of novelty; and the MVTec layout read at any size the model takes."""
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageOps
from sklearn.metrics import roc_auc_score

import oneclass
from oneclass.cli import main
from oneclass.data.images import ImageData
from oneclass.data.mvtec import write_example
from oneclass.errors import DataError, OneClassError
from oneclass.evaluation import EvalSpec, check_spec, collect, evaluate, measure_model, novel_class_auroc
from oneclass.report import report


def part(rng, size, kind, colour):
    """A disc on a dark plate; 'scratch' adds a bright bar, 'dent' a dark hole."""
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(40, 1, (size, size))
    img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2] = 150
    if kind == "scratch":
        img[size // 2 - 2: size // 2 + 2, size // 5: 4 * size // 5] = 255
    if kind == "dent":
        img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 8) ** 2] = 0
    img = img.clip(0, 255).astype(np.uint8)
    return np.stack([img, img // 2, img // 3], -1) if colour else img


def write_folder(root, colour=False, n_train=40, n_test=10, sizes=(30, 44)):
    """`root/train/good`, `root/test/{good,scratch,dent}`: images of two sizes, PNG."""
    rng = np.random.default_rng(0)
    for split, kind, n in (("train", "good", n_train), ("test", "good", n_test), ("test", "scratch", n_test),
                           ("test", "dent", n_test)):
        folder = root / split / kind
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(part(rng, sizes[i % len(sizes)], kind, colour)).save(folder / f"{i:03d}.png")
    return root


def test_a_labelled_folder_is_read_at_the_models_input_with_test_only_classes_last(tmp_path):
    root = write_folder(tmp_path / "parts")
    train, test = oneclass.datasets.load("folder", root, channels=1, size=24)
    assert train.classes == ["good"] and train.images.shape == (40, 1, 24, 24)
    # a test class with no training images (a defect type) comes after the training classes
    assert test.classes == ["good", "dent", "scratch"] and test.images.shape == (30, 1, 24, 24)
    assert np.bincount(test.labels.numpy()).tolist() == [10, 10, 10]
    split = oneclass.protocols.standard(train, test, 0, seed=0)
    assert split.test_labels.sum() == 20 and (len(split.train), len(split.val)) == (36, 4)
    train3, _ = oneclass.datasets.load("folder", root, channels=3, size=16)
    assert train3.images.shape == (40, 3, 16, 16)
    # without a model's size, images of two sizes cannot share a batch: said, not guessed
    with pytest.raises(DataError, match="images differ in size"):
        oneclass.datasets.load("folder", root)
    assert oneclass.datasets.source_of("folder", root).startswith("image folder parts: dent, good, scratch (70 files, ")


def test_evaluate_on_a_labelled_folder_picks_the_preset_and_keys_the_run_by_its_files(tmp_path, capsys):
    root = write_folder(tmp_path / "parts")
    results = tmp_path / "results"
    lines = []
    runs = evaluate(EvalSpec("ocsvm", "folder"), root, results, progress=False, echo=lines.append)
    assert lines[0] == f"preset mnist: the training images of {root} are grey (--preset to choose another)"
    (run,) = runs
    assert (run["preset"], run["dataset"], run["normal_class_name"]) == ("mnist", "folder", "good")
    assert run["config"]["size"] == 28 and run["protocol_info"]["counts"]["test_novel"] == 20
    by_class = run["headline_auroc_by_novel_class"]
    assert set(by_class) == {"dent", "scratch"} and by_class["scratch"] > 0.95  # a bright bar across the disc
    # the AUROC over all novel images is the count-weighted mean of the per-class ones (10 each here)
    assert run["metrics"]["score"]["auroc"] == pytest.approx((by_class["dent"] + by_class["scratch"]) / 2, abs=1e-12)
    # the same folder elsewhere is the same run; a changed file makes it another
    moved = tmp_path / "elsewhere" / "parts"
    shutil.copytree(root, moved)
    lines.clear()
    evaluate(EvalSpec("ocsvm", "folder"), moved, results, progress=False, echo=lines.append)
    assert any(line.startswith("skip ") for line in lines)
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(moved / "test" / "good" / "000.png")
    lines.clear()
    evaluate(EvalSpec("ocsvm", "folder"), moved, results, progress=False, echo=lines.append)
    assert not any(line.startswith("skip ") for line in lines) and len(list(results.glob("*/class0_seed0.json"))) == 2
    # colour images take the RGB preset
    colour = write_folder(tmp_path / "colour", colour=True)
    lines.clear()
    (run,) = evaluate(EvalSpec("ocsvm", "folder"), colour, results, progress=False, echo=lines.append)
    assert run["preset"] == "cifar10" and "are in colour" in lines[0]


def test_the_cli_evaluates_and_fits_a_labelled_folder(tmp_path):
    root = write_folder(tmp_path / "parts")
    r = CliRunner().invoke(main, ["evaluate", "--method", "ocsvm", "--dataset", "folder", "--data-root", str(root),
                                  "--results", str(tmp_path / "results"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "normal 'good', seed 0: score AUROC against dent " in r.output and ", scratch " in r.output
    # the report: no paper's cell here, so one row per group of one's own, and each novel class's AUROC
    (run,) = collect(tmp_path / "results")
    md = report(tmp_path / "results")
    by_class = run["headline_auroc_by_novel_class"]
    assert "## Summary\n\nNo finished image run here is a cell of a paper's tables" in md
    assert (f"| ocsvm | {run['data_source']}, standard | – | score | {run['metrics']['score']['auroc']:.3f} | 1 | 1 |"
            in md.split("## Other runs (in no paper's table)")[1])
    assert f"| normal class | dent | scratch | seeds |\n|---|---|---|---|\n| 0 (good) | {by_class['dent']:.3f} | " \
           f"{by_class['scratch']:.3f} | 1 |" in md
    model = tmp_path / "m.oneclass"
    # methods side by side: each evaluated (the finished one reused), then one table, best first
    r = CliRunner().invoke(main, ["evaluate", "--method", "ocsvm,kde", "--dataset", "folder", "--data-root", str(root),
                                  "--epochs", "2", "--results", str(tmp_path / "results"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "ocsvm does not train in epochs: --epochs 2 applies to the others" in r.output
    side = r.output.split("Side by side")[1]
    rows = [line for line in side.splitlines() if line.startswith("| ocsvm ") or line.startswith("| kde ")]
    aurocs = [float(line.split(" | ")[4]) for line in rows]
    assert len(rows) == 2 and aurocs == sorted(aurocs, reverse=True)
    # OLED's epoch choice labels outliers of the other training classes: a folder of one has none
    r = CliRunner().invoke(main, ["evaluate", "--method", "dae", "--dataset", "folder", "--data-root", str(root),
                                  "--option", "select=val_auroc", "--results", str(tmp_path / "results")])
    assert r.exit_code == 1 and "(36 normal, 0 of the other training classes: it labels outliers from them)" in r.output
    # the MemAE protocol pools train and test: the test-only classes keep their names
    r = CliRunner().invoke(main, ["evaluate", "--method", "ocsvm", "--dataset", "folder", "--data-root", str(root),
                                  "--protocol", "memae", "--results", str(tmp_path / "results"), "--quiet"])
    assert r.exit_code == 0 and "score AUROC against dent " in r.output, r.output
    r = CliRunner().invoke(main, ["fit", "--method", "ocsvm", "--dataset", "folder", "--data-root", str(root),
                                  "--normal-class", "good", "--out", str(model)])
    assert r.exit_code == 0, r.output
    assert "on 36 images" in r.output and oneclass.load(model).config["size"] == 28


def test_a_folder_that_cannot_be_evaluated_is_named(tmp_path):
    root = write_folder(tmp_path / "parts", n_train=12, n_test=3)
    shutil.rmtree(root / "test")
    with pytest.raises(DataError, match=r"parts is not a labelled image folder: expected .*parts/train/<class>/ .*"
                                        r"and .*parts/test/<class>/"):
        oneclass.datasets.load("folder", root, channels=1, size=28)
    r = CliRunner().invoke(main, ["evaluate", "--method", "ocsvm", "--dataset", "folder", "--data-root", str(root)])
    # said before any preset is chosen for images that are not there
    assert r.exit_code == 1 and r.output.startswith("error: ") and "is not a labelled image folder" in r.output
    (root / "test" / "dent").mkdir(parents=True)
    shutil.copy(root / "train" / "good" / "000.png", root / "test" / "dent")
    with pytest.raises(DataError, match="the test split has no images of the normal class 'good': a test set needs "
                                        "normal and novel images"):
        evaluate(EvalSpec("ocsvm", "folder"), root, tmp_path / "results", progress=False, echo=lambda s: None)
    with pytest.raises(OneClassError, match="dataset 'folder' takes the preset its images call for"):
        check_spec(EvalSpec("ocsvm", "folder"))
    r = CliRunner().invoke(main, ["evaluate", "--method", "ocsvm", "--dataset", "folder", "--data-root", str(root),
                                  "--classes", "dent", "--results", str(tmp_path / "results")])
    assert r.exit_code == 1 and "unknown class 'dent'; classes are ['good']" in r.output


def test_auroc_by_novel_class_is_normal_against_each_class_alone():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 6 + [1] * 5 + [2] * 4 + [3] * 5)
    test = ImageData(torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), torch.from_numpy(labels),
                     ["a", "b", "c", "d"])
    train = test.subset(np.flatnonzero(labels == 1))
    split = oneclass.protocols.Split(train, train, test, (labels != 1).astype(np.int64))
    scores = rng.normal(size=len(labels)) + (labels != 1)
    got = novel_class_auroc(split, scores)
    normal = labels == 1
    want = {n: roc_auc_score(np.r_[np.zeros(normal.sum()), np.ones((labels == c).sum())],
                             np.r_[scores[normal], scores[labels == c]]) for c, n in ((0, "a"), (2, "c"), (3, "d"))}
    assert got == pytest.approx(want, abs=1e-12) and list(got) == ["a", "c", "d"]
    # one kind of novelty is the whole AUROC already; MVTec's defect flags are not classes
    one = oneclass.protocols.Split(train, train, test.subset(np.flatnonzero(labels <= 1)),
                                   (labels[labels <= 1] != 1).astype(np.int64))
    assert novel_class_auroc(one, scores[labels <= 1]) is None


def test_the_mvtec_layout_is_read_at_any_size_the_model_takes(tmp_path):
    write_example(tmp_path, n_train=12, n_good=3, n_defect=3)
    train, test = oneclass.datasets.load("mvtec", tmp_path, channels=1, size=40)
    assert train.images.shape == (12, 1, 40, 40) and test.masks.shape == (6, 40, 40)
    assert test.masks[test.novel].sum() > 0
    assert oneclass.datasets.load("mvtec", tmp_path)[0].images.shape == (12, 3, 32, 32)  # no model: the RGB 32
    lines = []
    (run,) = evaluate(EvalSpec("dae", "mvtec", protocol="mvtec", epochs=1, options={"size": 40, "batch_size": 4}),
                      tmp_path, tmp_path / "results", progress=False, echo=lines.append)
    assert run["pixel_level"]["size"] == [40, 40] and run["pixel_level"]["pixels"] == 6 * 40 * 40
    assert "headline_auroc_by_novel_class" not in run
    assert json.loads(next((tmp_path / "results").rglob("class0_seed0.json")).read_text())["config"]["size"] == 40


def test_a_photo_is_read_upright_by_its_exif_orientation(tmp_path):
    from oneclass.data.folder import read_image
    pixels = (np.arange(12, dtype=np.uint8) * 20).reshape(3, 4)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned; a viewer shows it turned 90° clockwise
    Image.fromarray(pixels).save(tmp_path / "photo.png", exif=exif)
    Image.fromarray(pixels).save(tmp_path / "plain.png")
    assert (read_image(tmp_path / "photo.png", 1, None)[0] == np.rot90(pixels, -1)).all()
    assert (read_image(tmp_path / "plain.png", 1, None)[0] == pixels).all()
    # the same photo opened by the user and passed in: turned the same way, once
    from oneclass.data.images import images_from_list
    opened = Image.open(tmp_path / "photo.png")
    assert (images_from_list([opened], 1, (4, 3))[0, 0].numpy() == np.rot90(pixels, -1)).all()
    turned = ImageOps.exif_transpose(opened)
    assert (images_from_list([turned], 1, (4, 3))[0, 0].numpy() == np.rot90(pixels, -1)).all()


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 28), (1, 64), (3, 20)])
def test_a_file_a_pil_image_and_an_array_of_one_image_give_the_same_pixels(tmp_path, channels, size):
    """`oneclass score` on files and `score_samples` on what a user opened or decoded must agree:
    one resize (`conform`) for all three, up or down, grey or colour."""
    from oneclass.data.folder import read_image
    from oneclass.data.images import images_from_list
    rng = np.random.default_rng(channels * size)
    for colour, shape in ((True, (30, 44)), (False, (41, 37))):
        arr = part(rng, 44, "scratch", colour)[: shape[0], : shape[1]]
        Image.fromarray(arr).save(tmp_path / "x.png")
        from_file = read_image(tmp_path / "x.png", channels, (size, size))
        from_pil = images_from_list([Image.open(tmp_path / "x.png")], channels, size)[0].numpy()
        from_array = images_from_list([np.asarray(Image.open(tmp_path / "x.png").convert(
            "L" if channels == 1 else "RGB"))], channels, size)[0].numpy()
        assert from_file.shape == (channels, size, size)
        assert (from_file == from_pil).all() and (from_file == from_array).all()


def test_hidden_files_and_folders_are_not_data(tmp_path):
    root = write_folder(tmp_path / "parts", n_train=12, n_test=3)
    before = oneclass.datasets.source_of("folder", root)
    # what a Mac leaves on a copied drive and Jupyter beside a notebook: no image, no class
    (root / "train" / "good" / "._000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "test" / ".ipynb_checkpoints").mkdir()
    shutil.copy(root / "test" / "dent" / "000.png", root / "test" / ".ipynb_checkpoints")
    (root / "test" / "dent" / ".DS_Store").write_bytes(b"Bud1")
    train, test = oneclass.datasets.load("folder", root, channels=1, size=28)
    assert len(train) == 12 and test.classes == ["good", "dent", "scratch"] and len(test) == 9
    assert oneclass.datasets.source_of("folder", root) == before
    r = CliRunner().invoke(main, ["fit", "--method", "ocsvm", "--train-dir", str(root / "train"),
                                  "--out", str(tmp_path / "m.oneclass")])
    assert r.exit_code == 0 and "on 11 images" in r.output, r.output  # 12 less 1 held out
    r = CliRunner().invoke(main, ["score", "--model", str(tmp_path / "m.oneclass"), "--input", str(root / "test")])
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) == 1 + 9, r.output
    mv = write_example(tmp_path / "mv", n_train=12, n_good=3, n_defect=3)
    digest = oneclass.datasets.source_of("mvtec", mv)
    (mv / "test" / ".ipynb_checkpoints").mkdir()
    (mv / "ground_truth" / ".DS_Store").write_bytes(b"Bud1")
    assert oneclass.datasets.load("mvtec", mv)[1].images.shape[0] == 6 and oneclass.datasets.source_of("mvtec", mv) == digest


def test_a_threshold_flags_what_scores_above_it_as_predict_does():
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.5, 0.7, 0.9, 0.5, 0.8, 2.0])
    at = oneclass.metrics.at_threshold(labels, scores, 0.7)  # 0.7 itself is normal: `score > threshold`
    assert {k: at[k] for k in ("flagged", "true_novel", "false_alarms", "missed", "true_normal")} == \
        {"flagged": 3, "true_novel": 2, "false_alarms": 1, "missed": 1, "true_normal": 3}
    assert (at["precision"], at["recall"], at["false_alarm_rate"], at["miss_rate"]) == \
        pytest.approx((2 / 3, 2 / 3, 1 / 4, 1 / 3))
    assert at["f1"] == pytest.approx(2 / 3)
    nothing = oneclass.metrics.at_threshold(labels, scores, 5.0)
    assert (nothing["flagged"], nothing["precision"], nothing["f1"], nothing["miss_rate"]) == (0, 0.0, 0.0, 1.0)


def test_a_saved_model_is_measured_on_labelled_sub_folders(tmp_path):
    import csv
    root = write_folder(tmp_path / "parts")
    model = tmp_path / "m.oneclass"
    r = CliRunner().invoke(main, ["fit", "--method", "ocsvm", "--train-dir", str(root / "train"), "--out", str(model)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["test", "--model", str(model), "--input", str(root / "test"),
                                  "--output", str(tmp_path / "t.csv"), "--json", str(tmp_path / "t.json")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "t.json").read_text())
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    novel = np.array([int(row["novel"]) for row in rows])
    scores = np.array([float(row["score"]) for row in rows])
    assert m["normal"] == ["good"] and m["counts"] == {"images": 30, "normal": 10, "novel": 20}
    assert [row["class"] for row in rows].count("dent") == 10 and novel.sum() == 20
    assert m["metrics"]["score"]["auroc"] == pytest.approx(roc_auc_score(novel, scores), abs=1e-6)
    # the threshold `fit` set, and what it does, as `predict` would label these images
    det = oneclass.load(model)
    assert m["at_threshold"]["threshold"] == det.threshold
    assert m["threshold_rule"] == {"quantile": 0.95, "of": "4 held-out training images"}
    labels = [int(row["label"]) for row in rows]
    files = [row["path"] for row in rows]
    assert labels == det.predict([Image.open(f) for f in files]).tolist()
    assert m["at_threshold"]["flagged"] == sum(labels)
    assert m["at_threshold"]["false_alarms"] == sum(l and not n for l, n in zip(labels, novel))
    dent = novel.astype(bool) & np.array([row["class"] == "dent" for row in rows]) | ~novel.astype(bool)
    assert m["auroc_by_novel_class"]["dent"] == pytest.approx(roc_auc_score(novel[dent], scores[dent]), abs=1e-6)
    assert f"false alarms {m['at_threshold']['false_alarms']} of 10 normal" in r.output
    # the same from Python, on the images as a user opens them
    got, parts = measure_model(det, [Image.open(f) for f in files], novel)
    assert got["metrics"]["score"] == pytest.approx(m["metrics"]["score"]) and got["at_threshold"] == m["at_threshold"]
    assert (parts["score"] == pytest.approx(scores, rel=1e-5)) and "auroc_by_novel_class" not in got  # no groups given
    with pytest.raises(DataError, match="^30 images but 29 labels$"):
        measure_model(det, [Image.open(f) for f in files], novel[:29])
    assert "AUROC against each novel class: dent " in r.output
    # what cannot be measured is said
    r = CliRunner().invoke(main, ["test", "--model", str(model), "--input", str(root / "test"), "--normal", "ok"])
    assert r.exit_code == 1 and "--normal ok: no such sub-folder" in r.output and "found: dent, good, scratch" in r.output
    r = CliRunner().invoke(main, ["test", "--model", str(model), "--input", str(root / "train")])
    assert r.exit_code == 1 and "all 40 images are normal: measuring a model needs normal and novel images" in r.output
    shutil.move(root / "test" / "good", root / "test" / "ok")
    r = CliRunner().invoke(main, ["test", "--model", str(model), "--input", str(root / "test")])
    assert r.exit_code == 1 and "name the sub-folder(s) of normal images with --normal (found: dent, ok, scratch)" in r.output


def test_the_estimator_api_takes_a_folder_an_image_file_or_a_list_of_them(tmp_path):
    """`fit("good_parts/")`, `score_samples(["a.png", ...])`: the files give the pixels `oneclass
    score` reads from them, a folder's images come sorted by path, and a path that holds no images
    the user meant (a missing file, a folder inside a list, a labelled root) is named, not read."""
    from oneclass.data.folder import read_images, tree_images
    root = write_folder(tmp_path / "parts", colour=True, n_train=16, n_test=3)
    good = root / "train" / "good"
    files = tree_images(good)
    det = oneclass.create("ocsvm", preset="cifar10").fit(str(good))
    pixels = read_images(files, 3, (32, 32))
    expected = det.score_samples(pixels)

    def same(a, b):  # the same pixels; a batch of another size may round PCA's product otherwise
        return np.allclose(a, b, rtol=1e-9, atol=1e-12)
    assert same(det.score_samples(good), expected)
    assert same(det.score_samples([str(f) for f in files[::-1]]), expected[::-1])
    assert same(det.score_samples(np.array([str(f) for f in files])), expected)
    assert same(det.score_samples(files[2]), expected[2:3])
    # a file among images the user opened: one list, each decoded as on its own
    mixed = det.score_samples([Image.open(files[0]), files[1], np.asarray(Image.open(files[2]))])
    assert same(mixed, expected[:3])
    assert same(oneclass.create("ocsvm", preset="cifar10").fit(pixels).score_samples(good), expected)
    det.set_threshold(good, quantile=0.5)
    assert det.predict(good).sum() == np.sum(expected > det.threshold)

    cases = {tmp_path / "nowhere": "no such file or folder",
             (files[0], tmp_path / "gone.png"): "item 1: no such file",
             (files[0], good): "is a folder",
             root: "train/ and test/ folders",
             tmp_path / "parts" / "test" / "nothing": "no such file or folder"}
    (root / "empty").mkdir()
    cases[root / "empty"] = "no image files"
    for given, words in cases.items():
        with pytest.raises(DataError, match=words):
            det.score_samples(list(given) if isinstance(given, tuple) else given)
    with pytest.raises(DataError, match="string"):  # no TypeError from torch
        det.score_samples(np.array([[str(files[0])]]))
    for odd in ([[str(files[0]), str(files[1])]], np.zeros((2, 8, 8), dtype="datetime64[s]")):
        with pytest.raises(DataError, match="array cannot be read as images"):
            det.score_samples(odd)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match="cannot read image .*notes.png"):
        det.score_samples([files[0], tmp_path / "notes.png"])
    for video_method in ("alocc", "lsa"):  # patches of frames, clips of frames: not a folder of images
        with pytest.raises(DataError, match="video model reads footage through oneclass.video"):
            oneclass.create(video_method, preset="ped2").fit(good)
