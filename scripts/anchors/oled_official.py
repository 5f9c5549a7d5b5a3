"""Run OLED's official code (jewelltaylor/OLED, TensorFlow 2) on oneclass's own MNIST splits, and
write its numbers beside ours in results/anchors/ (issue 17).

    python scripts/anchors/oled_official.py --checkout /path/to/OLED \
        --tf-python /path/to/tf-venv/bin/python --classes 0,1 --seeds 0

One training per (class, seed) of `mnist_experiment/scripts/train.py` on the MemAE protocol's split
of our paper-style OLED runs (`select=val_auroc`): the same training images, the same labelled
selection set (150 held-out normal + 150 other-class images, none of them tested), the same test
set. The official code is never copied into this project: this script reads `train.py` and
`test.py` from `--checkout` and executes their top-level statements, in order and unedited, inside a
second Python (`--tf-python`, with tensorflow-cpu 2.16, tf-keras, tensorflow-probability 0.24). What
it changes around them (each also written in every record):

1. Keras 2 (`TF_USE_LEGACY_KERAS=1`, tf-keras): the code is written for `tf.keras` 2 (an integer
   `Input(shape=64)`, `.h5` models).
2. `sys.argv` is train.py's own (name, model folder, inlier, epochs, batch size, data paths), the
   epochs and batch size its `train.sh` gives (400, 1024) unless `--epochs`/`--batch-size` say else.
3. `get_data()` returns our split instead of drawing its own (`x / 127.5 − 1` as it scales; the
   selection set as its validation set, inliers labelled 1 as it labels them), so the code trains
   on exactly the images our run trains on. Its own draw tests most digits on images they trained
   on (`oled_split_check.py`), one more reason to hand it ours.
4. `SEED` (17 in the code, the seed of Python, NumPy, TensorFlow and its Glorot initialiser) is the
   run's seed; one intra-op thread per `--threads`.
5. Its `fit` keeps, for each of its four scores, the models of the epoch whose AUC (Keras, 10
   thresholds, as the code computes it) on the selection set is highest: the paper-style records
   score each component with its own chosen models, as its `test.py` does. The models after the
   last epoch are saved too and scored for the label-free records.
6. Scoring: `test.py`'s `test_step` (executed from its source) gives the reconstructions, masked
   reconstructions and masked parts in batches of 2,000; the per-image sums and the min-max scaling
   over the whole test set, and s_avg as the mean of the three scaled scores, follow `test.py`.
   AUROC and the other metrics are oneclass's (`oneclass.metrics`), exact, where `test.py` uses a
   100-threshold Keras AUC.

A digit takes about four hours at the code's 400 epochs on two CPU threads: run it on a GPU.
"""
from __future__ import annotations

import argparse
import ast
import gzip
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its siblings, also when loaded by path
from common import check_set_up, commit_of, harness_parser, missing_modules, run_worker  # noqa: E402, F401

CHANGES = [
    "Keras 2 through tf-keras (TF_USE_LEGACY_KERAS=1): the code is written for tf.keras 2",
    "train.py's top-level statements executed in order from its source, sys.argv its own (epochs and batch size "
    "as train.sh gives them unless stated in the settings)",
    "get_data() returns our MemAE-protocol split (x / 127.5 - 1): the training images of our select=val_auroc runs, "
    "their labelled selection set (150 normal + 150 other-class images) as its validation set, our test set",
    "SEED (17 in the code) is the run's seed; intra-op threads as the record says",
    "paper-style records: each component scored with the models its fit kept for that score (best Keras "
    "10-threshold AUC on the selection set); label-free records: the models after the last epoch",
    "scores as test.py computes them (its test_step executed from its source, batches of 2000; per-image sums, "
    "min-max over the test set, s_avg the mean of the three); exact AUROC from oneclass.metrics",
]
SCORES = {"rec": "auc_normal", "mask": "auc_mask", "cont": "auc_context", "avg": "auc_avg"}  # ours: the code's
WORKER_MODULES = ("tensorflow", "tf_keras", "tensorflow_probability")
TRAIN_SCRIPT, TEST_SCRIPT = "mnist_experiment/scripts/train.py", "mnist_experiment/scripts/test.py"


# ---- worker: runs in the TensorFlow Python ------------------------------------------------
def _statements(path: Path) -> list[ast.stmt]:
    return ast.parse(path.read_text(), str(path)).body


def _worker(args: argparse.Namespace) -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # change 1, before TensorFlow is imported
    data = np.load(args.worker_in)
    seed, normal, threads = int(data["seed"]), int(data["normal"]), int(data["threads"])
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    checkout = Path(args.checkout).resolve()
    work = Path(args.work)
    os.chdir(work)
    sys.argv = [TRAIN_SCRIPT, "run", str(work / "models"), str(normal), str(int(data["epochs"])),
                str(int(data["batch_size"])), "unused", "unused", "unused", "unused"]  # change 2
    (work / "models").mkdir(exist_ok=True)
    sel_labels = data["selection_labels"]

    def get_data():  # change 3: our split, in the code's scale and label convention
        train_ds = tf.data.Dataset.from_tensor_slices(data["train"]).batch(int(data["batch_size"]))
        return train_ds, data["selection"], sel_labels, data["test"], np.zeros(len(data["test"]), int)

    namespace: dict = {"__name__": "__official_train__", "__file__": str(checkout / TRAIN_SCRIPT)}
    epoch_seconds: list[float] = []
    t0 = time.perf_counter()
    for node in _statements(checkout / TRAIN_SCRIPT):
        exec(compile(ast.Module(body=[node], type_ignores=[]), TRAIN_SCRIPT, "exec"), namespace)  # noqa: S102
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SEED" for t in node.targets):
            namespace["SEED"] = seed  # change 4
        if isinstance(node, ast.FunctionDef) and node.name == "get_data":
            namespace["get_data"] = get_data
        if isinstance(node, ast.FunctionDef) and node.name == "train_step":
            step = namespace["train_step"]

            def timed_step(imgs, epoch, _step=step):  # when each epoch's first batch starts: per-epoch time
                if len(epoch_seconds) == epoch:
                    epoch_seconds.append(time.perf_counter())
                return _step(imgs, epoch)
            namespace["train_step"] = timed_step
    train_seconds = time.perf_counter() - t0
    run_dir = Path(namespace["MODEL_SAVE_PATH"])
    for kind, model in (("encoder", "encoder"), ("deocder", "decoder"), ("mask_model", "mask_model")):
        namespace[model].save(str(run_dir / f"{kind}_last.h5"))  # the label-free models (change 5)
    test_ns: dict = {"__name__": "__official_test__"}
    for node in _statements(checkout / TEST_SCRIPT):
        if isinstance(node, (ast.Import, ast.ImportFrom)) or isinstance(node, ast.FunctionDef) and node.name == "test_step" \
                or isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PERC" for t in node.targets):
            exec(compile(ast.Module(body=[node], type_ignores=[]), TEST_SCRIPT, "exec"), test_ns)  # noqa: S102
    out = {}
    t0 = time.perf_counter()
    for choice in ("last", *SCORES.values()):
        comps = _test_components(tf, test_ns["test_step"], data["test"], str(run_dir / ("{}_" + f"{choice}.h5")))
        for comp, values in comps.items():
            out[f"test_{choice}_{comp}"] = values
    gpus = tf.config.list_physical_devices("GPU")
    device = "cuda" if gpus else "cpu"
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else ""
    np.savez(args.worker_out, train_seconds=train_seconds, score_seconds=time.perf_counter() - t0,
             epoch_starts=np.array(epoch_seconds), tf_version=tf.__version__, device=device, device_name=name, **out)


def _test_components(tf, test_step, images: np.ndarray, base_path: str) -> dict[str, np.ndarray]:
    """test.py's scores of one model set: per-image sums of the squared errors of the plain and the
    masked reconstruction and of the context error, each min-max scaled over `images`, and their mean."""
    parts = [test_step(images[i:i + 2000], tf.constant(i // 2000), base_path) for i in range(0, len(images), 2000)]
    normal, masked, missing, generated = (np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(4))
    raw = {"rec": ((images - normal) ** 2).reshape(len(images), -1).sum(1),
           "mask": ((images - masked) ** 2).reshape(len(images), -1).sum(1),
           "cont": np.abs(missing - generated).reshape(len(images), -1).sum(1)}
    scaled = {k: (v - v.max()) / (v.max() - v.min()) + 1.0 for k, v in raw.items()}
    return {**scaled, "avg": (scaled["rec"] + scaled["mask"] + scaled["cont"]) / 3.0}


# ---- parent: runs in oneclass's Python ----------------------------------------------------
def _nhwc(images) -> np.ndarray:
    return (images.numpy().astype(np.float32) / 127.5 - 1.0).transpose(0, 2, 3, 1)


# what fit() prints after each epoch: the selection set's AUC of each score, the code's own label first
_PRINTED = {"rec": "Normal Score AUC", "mask": "Validation Score AUC", "cont": "Context Score AUC", "avg": "AVG Score AUC"}


def selection_history(log: str) -> dict[str, Any]:
    """Each score's selection AUC after every epoch, from the code's printout, and the epoch its
    fit kept (the first highest: it saves only on a strictly higher AUC)."""
    history = {comp: [float(v) for v in re.findall(re.escape(label) + r": tf\.Tensor\(([-0-9.e]+)", log)]
               for comp, label in _PRINTED.items()}
    chosen = {comp: int(np.argmax(v)) + 1 for comp, v in history.items() if v}
    return {"selection_auc_per_epoch": {k: [round(a, 4) for a in v] for k, v in history.items()}, "selected_epoch": chosen}


def _folder(results: Path, epochs: int, choice: str, batch_size: int = 1024) -> Path:
    """A run's folder, named like ours: another batch than train.sh's 1024 is part of its identity."""
    options = (f"_batch_size={batch_size}" if batch_size != 1024 else "") + ("_select=val_auroc" if choice != "last" else "")
    return results / f"oled-official{options}__mnist__memae__e{epochs}"


def _run_one(args: argparse.Namespace, train, test, normal: int, seed: int) -> None:
    from oneclass import metrics, protocols
    from oneclass.detector import cpu_name
    from oneclass.fileio import atomic_open, write_json
    split = protocols.memae(train, test, normal, seed, selection=150)  # our select=val_auroc runs' split
    sel_labels = 1 - split.selection_labels  # the code labels inliers 1
    print(f"official OLED on mnist class {normal} seed {seed}, {args.epochs} epochs at batch {args.batch_size}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="oled-official-") as work:
        w_in, w_out = Path(work) / "in.npz", Path(work) / "out.npz"
        np.savez(w_in, train=_nhwc(split.train.images), test=_nhwc(split.test.images),
                 selection=_nhwc(split.selection.images), selection_labels=sel_labels, seed=seed, normal=normal,
                 epochs=args.epochs, batch_size=args.batch_size, threads=args.threads)
        out, log_bytes, other_load = run_worker(__file__, args, w_in, w_out, Path(work), Path(work) / "official.log")
    starts = list(out["epoch_starts"])
    selected = selection_history(log_bytes.decode(errors="replace"))
    for choice in ("last", "val_auroc"):
        results = {}
        for comp, code_name in SCORES.items():
            tag = "last" if choice == "last" else code_name  # paper-style: each score its own models
            s = out[f"test_{tag}_{comp}"]
            results[comp] = metrics.evaluate(split.test_labels, s)
        folder = _folder(args.results, args.epochs, choice, args.batch_size)
        record = {
            "method": "oled", "implementation": "official", "repository": "jewelltaylor/OLED",
            "commit": commit_of(Path(args.checkout)), "changes": CHANGES,
            "settings": {"epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "Adam 5e-4, betas 0.5/0.9",
                         "epoch_choice": choice, "label_free": choice == "last",
                         **({"selection": "150 normal + 150 other-class images of the training split, each "
                                          "score's epoch by Keras AUC with 10 thresholds", **selected}
                            if choice != "last" else {})},
            "dataset": "mnist", "protocol": "memae", "protocol_info": split.info, "normal_class": normal,
            "seed": seed, "epochs": args.epochs, "device": str(out["device"]), "host_cpu": cpu_name(),
            "device_name": str(out["device_name"]) or platform.processor() or platform.machine(),
            "tf_threads": args.threads,
            "other_cpu_cores_busy": other_load,
            "versions": {"tensorflow": str(out["tf_version"]), "python": platform.python_version()},
            "headline": "avg", "metrics": results, "train_seconds": float(out["train_seconds"]),
            "train_images_per_second": len(split.train) * args.epochs / float(out["train_seconds"]),
            "epoch_seconds": [round(b - a, 2) for a, b in zip(starts, starts[1:])],
            "score_seconds": float(out["score_seconds"]), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        if choice == "last":
            with atomic_open(folder / "logs" / f"class{normal}_seed{seed}.log.gz") as fh:
                fh.write(gzip.compress(log_bytes, mtime=0))
        else:
            record["training_log"] = (f"{_folder(Path('.'), args.epochs, 'last', args.batch_size).name}"
                                     f"/logs/class{normal}_seed{seed}.log.gz")
        write_json(folder / f"class{normal}_seed{seed}.json", record)
        print(f"  -> {folder.name}/class{normal}_seed{seed}.json: AUROC(avg) {results['avg']['auroc']:.4f}, "
              f"rec {results['rec']['auroc']:.4f}, mask {results['mask']['auroc']:.4f}, "
              f"cont {results['cont']['auroc']:.4f}", flush=True)


def main() -> None:
    ap = harness_parser(__doc__, "jewelltaylor/OLED", "tensorflow-cpu 2.16, tf-keras and tensorflow-probability 0.24")
    ap.add_argument("--epochs", type=int, default=400, help="train.sh's 400")
    ap.add_argument("--batch-size", type=int, default=1024, help="train.sh's 1024")
    args = ap.parse_args()
    if args.worker_in:
        return _worker(args)
    check_set_up(ap, args, "jewelltaylor/OLED", (TRAIN_SCRIPT, TEST_SCRIPT), WORKER_MODULES)
    from oneclass.data import load
    train, test = load("mnist", args.data_root)
    for seed in (int(s) for s in args.seeds.split(",")):
        for normal in (int(c) for c in args.classes.split(",")):
            done = [(_folder(args.results, args.epochs, c, args.batch_size) / f"class{normal}_seed{seed}.json").exists()
                    for c in ("last", "val_auroc")]
            if all(done):
                print(f"  = class {normal} seed {seed} (done)")
                continue
            _run_one(args, train, test, normal, seed)
    print(json.dumps({"command": "python " + " ".join(sys.argv)}))


if __name__ == "__main__":
    main()
