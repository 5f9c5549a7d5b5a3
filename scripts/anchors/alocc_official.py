"""Run ALOCC's official code (khalooei/ALOCC-CVPR2018, TensorFlow 1) on oneclass's own MNIST
splits, and write its numbers beside ours in results/anchors/ (issue 17).

    python scripts/anchors/alocc_official.py --checkout /path/to/ALOCC-CVPR2018 \
        --tf-python /path/to/tf-venv/bin/python --classes 0,1 --seeds 0

One training per (class, seed), scored on the MNIST standard protocol and on ALOCC's
outlier-fraction protocol at each fraction: they train on the same images (checked), as one
training of ours is scored on every fraction. A (class, seed) with every record is skipped; one
with some records (paper-style ones came later) is trained again and only the missing records are
written, marked as coming from that second training, with its own log.

The official code is never copied into this project: this script imports it from `--checkout`
inside a second Python (`--tf-python`, with tensorflow-cpu 2.16, tf-slim, tf-keras, scikit-image,
scikit-learn, scipy, matplotlib, six) and leaves its files unedited. What it changes around them, the fewest
changes that let the TF1 code run under TF 2 and see our data (each also written in every record):

1. `import tensorflow` gives `tensorflow.compat.v1` with v2 behaviour off; `tf.contrib.layers.batch_norm`
   and `tensorflow.contrib.slim` come from tf-slim, where contrib's layers moved.
2. `tensorflow.examples.tutorials.mnist.input_data.read_data_sets` (gone from TF 2) returns the
   training images of our split (the protocol's train part, in [0, 1] as that reader gave them),
   so `ALOCC_Model` trains on exactly the images our run trains on.
3. `scipy.misc.imsave` (gone from SciPy) writes nothing: the sample montages are not kept.
4. The code's MNIST switches in train.py are commented out (it is set up for UCSD); this script
   builds `ALOCC_Model` as train.py would with them on (28×28, c_dim 1, batch 128, r_alpha 0.2,
   attention_label = the normal class) and calls its `train` with train.py's flags: 40 epochs,
   RMSProp at learning rate 0.002. Python, NumPy, TensorFlow and scikit-image's `random_noise` (its
   input noise, which no longer reads NumPy's global seed) are seeded with the run's seed (the code
   seeds nothing).
5. Scoring: the code has no metric and no MNIST test beyond printing one batch. Novelty is
   1 − D(R(x)) (`d_rx`, the paper's eq. 7) and 1 − D(x) (`d_x`) from the code's own graph (`D_logits_`
   fed `z = x`, `D_logits` fed `inputs = x`), in batches of 128, its placeholders' fixed size, the
   last batch filled up by wrapping around. Its batch norm is always in training mode (the code
   never passes `train=False`, test.py included), so a batch's statistics normalise it: the test
   images are shuffled with the seed first, so that each batch mixes normal and novel images as
   the test split does, not all-normal batches then all-novel ones.
6. The epoch: the code saves every epoch and stops "by a subjective criterion"; the last (40th) is
   scored (label-free, as our runs).
7. SIFTETS.npy (UCSD test patches the training loop loads every epoch, and uses only for UCSD) is
   zeros of its shape where the checkout lacks it (a large file a snapshot may leave out).
8. Paper-style epoch choice, beside the label-free last epoch of the same training: after each
   epoch's checkpoint (a wrapper around `ALOCC_Model.save`), the AUROC of d_rx on a labelled
   selection set from the training split (150 of the validation normals, 150 other-class training
   images); every test set is scored at the epoch where it is highest. The code's own rule (watch
   samples, stop "by a subjective criterion") cannot be rerun; this is OLED's code's rule, and ours
   for `select=val_auroc`.

The metrics are oneclass's (`oneclass.metrics`), the same keys as `evaluate` writes, with
`"implementation": "official"`, the checkout's commit, these changes and the device."""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling, also when loaded by path
from common import check_set_up, commit_of, harness_parser, missing_modules, run_worker  # noqa: E402, F401

CHANGES = [
    "tensorflow -> tensorflow.compat.v1 with v2 behaviour disabled (TF 2.16); tf.contrib.layers and "
    "tensorflow.contrib.slim from tf-slim",
    "tensorflow.examples.tutorials.mnist.input_data.read_data_sets returns the protocol's training images "
    "of the normal class ([0, 1], as that reader gave)",
    "scipy.misc.imsave writes nothing (sample montages not kept)",
    "ALOCC_Model built as train.py with its MNIST switches on; train() with train.py's flags; Python, NumPy, "
    "TensorFlow and skimage's random_noise seeded with the run's seed",
    "scored 1 - D(R(x)) and 1 - D(x) from the code's graph in batches of 128 (last filled by wrapping), batch "
    "norm in training mode as the code always runs it, test images shuffled with the seed before batching",
    "the last epoch scored",
    "SIFTETS.npy (read every epoch, used only for UCSD) zeros of its shape where the checkout lacks it",
    "paper-style records (select=val_auroc): ALOCC_Model.save wrapped to score a labelled selection set from the "
    "training split (150 validation normals + 150 other-class training images) each epoch; the test sets scored "
    "at its best epoch",
]
SETTINGS = {"epochs": 40, "batch_size": 128, "learning_rate": 0.002, "optimizer": "RMSProp", "r_alpha": 0.2,
            "noise": "skimage random_noise var 0.155^2", "gf_dim": 16, "df_dim": 16, "epoch_choice": "last"}
# what the worker (and the official code through it) imports in the TensorFlow Python
WORKER_MODULES = ("tensorflow", "tf_slim", "tf_keras", "skimage", "sklearn", "scipy", "matplotlib", "six")


# ---- worker: runs in the TensorFlow Python ------------------------------------------------
def _install_shims(train_images: np.ndarray, normal: int) -> None:
    import types

    import tensorflow.compat.v1 as tf1
    import tf_slim
    from tensorflow.python.framework import ops, tensor
    if not hasattr(ops, "Tensor"):  # tf-slim 1.1 still looks for it where TF 2.16 no longer has it
        ops.Tensor = tensor.Tensor
    tf1.disable_v2_behavior()
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.layers, contrib.slim = tf_slim.layers, tf_slim
    tf1.contrib = contrib
    sys.modules["tensorflow"] = tf1
    sys.modules["tensorflow.contrib"] = contrib
    sys.modules["tensorflow.contrib.slim"] = tf_slim

    def read_data_sets(_address, *args, **kwargs):
        train = types.SimpleNamespace(images=train_images.reshape(len(train_images), -1),
                                      labels=np.full(len(train_images), normal))
        return types.SimpleNamespace(train=train)

    names = ["tensorflow.examples", "tensorflow.examples.tutorials", "tensorflow.examples.tutorials.mnist"]
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    input_data = types.ModuleType("tensorflow.examples.tutorials.mnist.input_data")
    input_data.read_data_sets = read_data_sets
    sys.modules[input_data.__name__] = input_data
    sys.modules[names[-1]].input_data = input_data

    import matplotlib
    matplotlib.use("Agg")
    import scipy.misc
    scipy.misc.imsave = lambda *a, **k: None


def _worker(args: argparse.Namespace) -> None:
    data = np.load(args.worker_in)
    seed, normal, threads = int(data["seed"]), int(data["normal"]), int(data["threads"])
    _install_shims(data["train"], normal)
    import random

    import tensorflow as tf  # the compat.v1 module, after the shims
    random.seed(seed)
    np.random.seed(seed)
    tf.set_random_seed(seed)
    import skimage.util
    noise_rng, random_noise = np.random.default_rng(seed), skimage.util.random_noise
    # scikit-image's random_noise no longer reads NumPy's global seed: hand it a seeded generator
    skimage.util.random_noise = lambda image, **kw: random_noise(image, rng=kw.pop("rng", noise_rng), **kw)
    sys.path.insert(0, str(Path(args.checkout).resolve()))
    os.chdir(args.work)  # the code writes its logs, checkpoints and samples, and reads SIFTETS.npy, here
    siftets = Path(args.checkout).resolve() / "SIFTETS.npy"
    if siftets.is_file():
        os.symlink(siftets, "SIFTETS.npy")
    else:  # change 7: read every epoch, used only for UCSD
        np.save("SIFTETS.npy", np.zeros((504, 45, 45, 1), np.float32))
    from models import ALOCC_Model  # the official code

    flags = argparse.Namespace(epoch=int(data["epochs"]), learning_rate=SETTINGS["learning_rate"], beta1=0.5,
                               train_size=np.inf, batch_size=SETTINGS["batch_size"], dataset="mnist",
                               checkpoint_dir="checkpoint", sample_dir="samples", log_dir="log")
    os.makedirs("samples", exist_ok=True)
    config = tf.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
    with tf.Session(config=config) as sess:
        model = ALOCC_Model(sess, input_width=28, input_height=28, output_width=28, output_height=28,
                            batch_size=SETTINGS["batch_size"], sample_num=SETTINGS["batch_size"],
                            attention_label=normal, r_alpha=SETTINGS["r_alpha"], dataset_name="mnist",
                            dataset_address="unused", input_fname_pattern="*", checkpoint_dir="checkpoint",
                            is_training=True, log_dir="log", sample_dir="samples", nd_patch_size=(28, 28),
                            n_stride=1, n_per_itr_print_results=100, kb_work_on_patch=False,
                            nd_input_frame_size=(28, 28), n_fetch_data=10)
        tests = [k for k in data.files if k.startswith("test")]
        score_all = lambda: {name: _score(sess, model, data[name]) for name in ("val", *tests)}  # noqa: E731
        chosen = _select_epochs(sess, data, score_all) if "selection" in data.files else {}
        t0 = time.perf_counter()
        model.train(flags)
        train_seconds = time.perf_counter() - t0 - chosen.get("seconds", 0.0)
        t0 = time.perf_counter()
        out = score_all()
        score_seconds = time.perf_counter() - t0
    extra = {}
    if chosen:
        extra = {"selected_epoch": chosen["epoch"], "selection_auroc": np.array(chosen["history"]),
                 **{f"sel_{k}_{c}": v[c] for k, v in chosen["scores"].items() for c in v}}
    np.savez(args.worker_out, train_seconds=train_seconds, score_seconds=score_seconds,
             tf_version=getattr(tf, "VERSION", "unknown"), **{f"{k}_{c}": v[c] for k, v in out.items() for c in v},
             **extra)


def _select_epochs(sess, data, score_all) -> dict:
    """Paper-style epoch choice (change 8): after each epoch's checkpoint, the AUROC of d_rx on a
    labelled selection set drawn from the training split; every set is scored at the best epoch.
    Scoring changes no trainable weight (the batch-norm moving averages it touches are never read),
    so the training, and its last epoch, are the label-free run's."""
    from models import ALOCC_Model
    from sklearn.metrics import roc_auc_score
    chosen = {"auroc": -1.0, "epoch": None, "history": [], "seconds": 0.0}
    save = ALOCC_Model.save

    def save_and_select(model, checkpoint_dir, step):
        save(model, checkpoint_dir, step)
        t0 = time.perf_counter()
        auroc = float(roc_auc_score(data["selection_labels"], _score(sess, model, data["selection"])["d_rx"]))
        chosen["history"].append(auroc)
        if auroc > chosen["auroc"]:
            chosen.update(auroc=auroc, epoch=int(step) + 1, scores=score_all())
        chosen["seconds"] += time.perf_counter() - t0

    ALOCC_Model.save = save_and_select
    return chosen


def _score(sess, model, images: np.ndarray) -> dict[str, np.ndarray]:
    b = model.batch_size
    n = len(images)
    padded = np.concatenate([images, images[:(-n) % b]]) if n % b else images
    d_rx, d_x = [], []
    for i in range(0, len(padded), b):
        batch = padded[i:i + b]
        d_rx.append(sess.run(model.D_logits_, feed_dict={model.z: batch}))
        d_x.append(sess.run(model.D_logits, feed_dict={model.inputs: batch}))
    sig = lambda v: 1.0 / (1.0 + np.exp(-np.concatenate(v).reshape(-1)[:n].astype(np.float32)))  # noqa: E731
    return {"d_rx": 1.0 - sig(d_rx), "d_x": 1.0 - sig(d_x)}


# ---- parent: runs in oneclass's Python ----------------------------------------------------
def _nhwc01(images) -> np.ndarray:
    return (images.numpy().astype(np.float32) / 255.0).transpose(0, 2, 3, 1)


def _splits(train, test, normal: int, seed: int, fractions: list[float]) -> dict[str, object]:
    """The protocols that share one training split: ALOCC's outlier-fraction test sets at each
    fraction and the standard protocol's test set. One training of the official code is scored
    on all of them, as `evaluate` scores one training of ours on every outlier fraction."""
    from oneclass import protocols
    splits = {"standard": protocols.make("standard", train, test, normal, seed)}
    for p in fractions:
        splits[f"outlier-fraction-p{p:g}"] = protocols.make("outlier-fraction", train, test, normal, seed,
                                                          outlier_fraction=p)
    first = splits["standard"]
    for name, split in splits.items():  # the premise of training once: the same images
        if not (torch_equal(split.train.images, first.train.images) and torch_equal(split.val.images, first.val.images)):
            sys.exit(f"the {name} split trains on other images than the standard one: train each apart")
    return splits


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def _folder(results: Path, name: str, epochs: int, choice: str = "last") -> Path:
    tag = "" if choice == "last" else f"_select={choice}"
    return results / f"alocc-official{tag}__mnist__{name}__e{epochs}"


def _run_one(args: argparse.Namespace, train, test, normal: int, seed: int, fractions: list[float]) -> None:
    import gzip

    from oneclass import metrics
    from oneclass.detector import cpu_name
    from oneclass.fileio import atomic_open, write_json

    splits = _splits(train, test, normal, seed, fractions)
    # mixed batches (change 5): each test set shuffled with the seed
    orders = {name: np.random.default_rng([seed, 17]).permutation(len(sp.test)) for name, sp in splits.items()}
    names = list(splits)
    first = splits["standard"]
    sel_images, sel_labels, sel_info = _selection_set(train, first, normal, seed)
    with tempfile.TemporaryDirectory(prefix="alocc-official-") as work:
        w_in, w_out = Path(work) / "in.npz", Path(work) / "out.npz"
        np.savez(w_in, train=_nhwc01(first.train.images), val=_nhwc01(first.val.images),
                 **{f"test{i}": _nhwc01(splits[n].test.images)[orders[n]] for i, n in enumerate(names)},
                 selection=sel_images, selection_labels=sel_labels,
                 seed=seed, normal=normal, epochs=args.epochs, threads=args.threads)
        (Path(work) / "run").mkdir()
        print(f"official ALOCC on mnist class {normal} seed {seed}, {args.epochs} epochs; scored on "
              f"{', '.join(names)}", flush=True)
        out, log_bytes, other_load = run_worker(__file__, args, w_in, w_out, Path(work) / "run",
                                                Path(work) / "official.log")
    choices = {"last": ("", {"epoch_choice": "last", "label_free": True}),
               "val_auroc": ("sel_", {"epoch_choice": "val_auroc", "label_free": False,
                                      "selected_epoch": int(out["selected_epoch"]),
                                      "selection": sel_info,
                                      "selection_auroc_per_epoch": [round(float(a), 4) for a in out["selection_auroc"]]})}
    # A record measured before is kept, never overwritten by this second training with the same seed
    # (TensorFlow's CPU kernels need not repeat a training bit for bit): its log stays beside it, this
    # training's goes with the records it writes, and those say so.
    log_folder = _folder(args.results, names[0], args.epochs, "last")
    if (log_folder / "logs" / f"class{normal}_seed{seed}.log.gz").exists():
        log_folder = _folder(args.results, names[0], args.epochs, "val_auroc")
    log_path = log_folder / "logs" / f"class{normal}_seed{seed}.log.gz"
    with atomic_open(log_path) as fh:
        fh.write(gzip.compress(log_bytes, mtime=0))
    this_last, kept = {}, set()
    for choice, (prefix, extra) in choices.items():
        for i, name in enumerate(names):
            split, order = splits[name], orders[name]
            results = {}
            for c in ("d_rx", "d_x"):
                s = np.empty(len(order), np.float32)
                s[order] = out[f"{prefix}test{i}_{c}"]
                m = metrics.evaluate(split.test_labels, s)
                thr = float(np.quantile(out[f"{prefix}val_{c}"], 0.95))
                m.update(threshold_val_q95=thr, f1_at_val_q95=metrics.f1_at(split.test_labels, s, thr),
                         **{"f1_at_tau_0.5": metrics.f1_at(split.test_labels, s, 0.5),
                            "f1_normal_at_tau_0.5": metrics.f1_at(split.test_labels, s, 0.5, positive="normal")})
                results[c] = m
            folder = _folder(args.results, name, args.epochs, choice)
            path = folder / f"class{normal}_seed{seed}.json"
            if choice == "last":
                this_last[name] = results["d_rx"]["auroc"]
            if path.exists():
                if choice == "last":
                    kept.add(name)
                print(f"  = {folder.name}/{path.name} kept (measured by an earlier training)", flush=True)
                continue
            record = {
                "method": "alocc", "implementation": "official", "repository": "khalooei/ALOCC-CVPR2018",
                "commit": commit_of(Path(args.checkout)), "changes": CHANGES,
                "settings": {**SETTINGS, "epochs": args.epochs, **extra}, "dataset": "mnist",
                "protocol": split.info["protocol"], "protocol_info": split.info, "normal_class": normal,
                "seed": seed, "epochs": args.epochs, "device": "cpu",
                "device_name": platform.processor() or platform.machine(), "host_cpu": cpu_name(),
                "tf_threads": args.threads, "other_cpu_cores_busy": other_load,
                "versions": {"tensorflow": str(out["tf_version"]), "python": platform.python_version()},
                "headline": "d_rx", "metrics": results, "train_seconds": float(out["train_seconds"]),
                "train_images_per_second": len(split.train) * args.epochs / float(out["train_seconds"]),
                "score_seconds": float(out["score_seconds"]), "trained_with": names,
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            record["training_log"] = str(log_path.relative_to(args.results))
            if choice != "last" and name in kept:  # the label-free record beside it: an earlier training
                record["label_free_record_from"] = "an earlier training with the same seed"
                record["this_training_last_epoch_d_rx_auroc"] = this_last[name]
            write_json(path, record)
            print(f"  -> {folder.name}/class{normal}_seed{seed}.json: AUROC(d_rx) {results['d_rx']['auroc']:.4f}, "
                  f"F1 best {results['d_rx']['f1_best']:.4f}", flush=True)


def _selection_set(train, split, normal: int, seed: int, n: int = 150) -> tuple[np.ndarray, np.ndarray, dict]:
    """A labelled set for the paper-style epoch choice, from the training split and disjoint from
    the images trained on: n of the split's validation normals and n other-class training images
    (the size our `select=val_auroc` runs use), shuffled so its batches mix both."""
    rng = np.random.default_rng([seed, 7919])
    val_pick = np.sort(rng.choice(len(split.val), size=n, replace=False))
    others = np.flatnonzero(train.labels.numpy() != normal)
    out_pick = np.sort(rng.choice(others, size=n, replace=False))
    images = np.concatenate([_nhwc01(split.val.images[val_pick]), _nhwc01(train.images[out_pick])])
    labels = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)])
    order = rng.permutation(2 * n)
    return images[order], labels[order], {"normal_from": "validation split", "outliers_from": "training split",
                                         "normal": n, "outliers": n}


def main() -> None:
    ap = harness_parser(__doc__, "khalooei/ALOCC-CVPR2018", "tensorflow-cpu 2.16, tf-slim, tf-keras, "
                        "scikit-image, scikit-learn, scipy, matplotlib and six")
    ap.add_argument("--fractions", default="0.1,0.2,0.3,0.4,0.5",
                    help="outlier fractions to score (the standard protocol is always scored too)")
    ap.add_argument("--epochs", type=int, default=SETTINGS["epochs"])
    args = ap.parse_args()
    if args.worker_in:
        return _worker(args)
    check_set_up(ap, args, "khalooei/ALOCC-CVPR2018", ("models.py",), WORKER_MODULES)
    from oneclass.data import load
    train, test = load("mnist", args.data_root)
    fractions = [float(p) for p in args.fractions.split(",")]
    names = ["standard", *(f"outlier-fraction-p{p:g}" for p in fractions)]
    for seed in (int(s) for s in args.seeds.split(",")):
        for normal in (int(c) for c in args.classes.split(",")):
            done = [(_folder(args.results, n, args.epochs, choice) / f"class{normal}_seed{seed}.json").exists()
                    for n in names for choice in ("last", "val_auroc")]
            if all(done):  # finished before: a cut-off sweep resumes here
                print(f"  = class {normal} seed {seed} (done)")
                continue
            _run_one(args, train, test, normal, seed, fractions)
    meta = {"command": "python " + " ".join(sys.argv)}
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
