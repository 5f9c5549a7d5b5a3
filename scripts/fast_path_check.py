"""Do the fast path's AUROCs equal the old path's? Trains each method on MNIST classes with an
execution option off (the path before) and on (the default on a CPU), same seeds, and sets the
AUROC difference beside the seed-to-seed spread of the runs with the option off.

    python scripts/fast_path_check.py --compare channels_last --methods dae,lsa,alocc --classes 0,1,2 \
        --epochs 5 --seeds 0,1,2 --option dae:lr=0.001 --option lsa:lr=0.001
    python scripts/fast_path_check.py --compare fast_tanh --methods pixel-cnn --classes 0,1,2 --epochs 3 --seeds 0,1
    python scripts/fast_path_check.py --methods alocc,memae --all-seeds-on alocc   # ALOCC: both sides over 3 seeds

`channels_last`: conv weights in NCHW (PyTorch's default layout) against NHWC. `fast_tanh`:
torch.tanh against 2·σ(2x) − 1 (Pix-CNN's gates). `gemm_small_maps`: oneDNN against one matrix
product for the convolutions of at most 4 output (transposed: input) positions. A reduced budget needs a learning rate that
learns in it (DAE and LSA's MNIST preset, 1e-4, is for 100 epochs; 5 epochs of it leave DAE at
chance): the check is of the kernels, not the budget.

No option is part of a run's identity (like the device, they pick other FP32 kernels for the
same maths), so each side keeps its runs in its own folder under results/checks/<option>/
(`oneclass report` leaves results/checks/ out). Runs are cached: a cut-off check resumes where it
stopped. Writes results/checks/<option>.md and .json."""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import scipy.stats

from oneclass.cli import _parse_options
from oneclass.evaluation import EvalSpec, evaluate
from oneclass.fileio import write_json, write_text

# per option: (folder, label) of the side with it off, then on
SIDES = {
    "channels_last": {False: ("nchw", "NCHW"), True: ("nhwc", "NHWC")},
    "fast_tanh": {False: ("torch-tanh", "torch.tanh"), True: ("tanh-via-sigmoid", "2σ(2x) − 1")},
    "gemm_small_maps": {False: ("onednn", "oneDNN"), True: ("gemm", "matrix product")},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", choices=sorted(SIDES), default="channels_last", help="the option checked")
    ap.add_argument("--methods", default="dae,lsa,alocc")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--classes", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the runs with the option off (their spread); "
                                                      "with it on, the first")
    ap.add_argument("--all-seeds-on", default="", metavar="METHOD[,METHOD]",
                    help="methods whose runs with the option on take every seed too: where one seed's AUROC "
                         "swings as far as a kernel change could move it (ALOCC's adversarial epochs), the "
                         "two sides' means over the seeds are what can be compared")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--results", type=Path, default=None,
                    help="folder of the check's runs (default results/checks/<option, dashed>)")
    ap.add_argument("--option", action="append", default=[], metavar="[METHOD:]KEY=VALUE",
                    help="an option of every method, or of one (repeatable); values read as JSON")
    args = ap.parse_args()
    name, sides = args.compare, SIDES[args.compare]
    results = args.results or Path("results/checks") / name.replace("_", "-")
    options: dict[str, dict] = {}
    for item in args.option:
        scope, _, pair = item.rpartition(":") if ":" in item.split("=", 1)[0] else ("", "", item)
        options.setdefault(scope, {}).update(_parse_options((pair,)))
    classes = [int(c) for c in args.classes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for method in args.methods.split(","):
        runs = {}
        for on, (folder, _) in sides.items():
            every = not on or method in args.all_seeds_on.split(",")
            spec = EvalSpec(method, args.dataset, classes=classes, seeds=seeds if every else seeds[:1],
                            epochs=args.epochs, device=args.device,
                            options={**options.get("", {}), **options.get(method, {}), name: on})
            runs[on] = {(r["normal_class"], r["seed"]): r
                        for r in evaluate(spec, args.data_root, results / folder, progress=False)}
        for normal in classes:
            off = [runs[False][(normal, s)] for s in seeds]
            on = runs[True][(normal, seeds[0])]
            auroc = {side: r["metrics"][r["headline"]]["auroc"] for side, r in (("off", off[0]), ("on", on))}
            seed_aurocs = [r["metrics"][r["headline"]]["auroc"] for r in off]
            on_seeds = [s for s in seeds if (normal, s) in runs[True]]
            on_aurocs = [runs[True][(normal, s)]["metrics"][on["headline"]]["auroc"] for s in on_seeds]
            rows.append({"method": method, "normal_class": normal, "seed": seeds[0], "epochs": args.epochs,
                         "options": {k: v for k, v in on["options"].items() if k != name},
                         "headline": on["headline"], "auroc_off": auroc["off"], "auroc_on": auroc["on"],
                         "difference": round(auroc["on"] - auroc["off"], 4),
                         "off_seeds": seeds, "off_seed_aurocs": seed_aurocs,
                         "off_seed_range": round(max(seed_aurocs) - min(seed_aurocs), 4),
                         "off_seed_std": round(statistics.stdev(seed_aurocs), 4) if len(seed_aurocs) > 1 else None,
                         "on_seeds": on_seeds, "on_seed_aurocs": on_aurocs,
                         "device": on["device"]})
    write_json(results.with_suffix(".json"), {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "option": name,
                                          "dataset": args.dataset, "epochs": args.epochs, "rows": rows})
    off_label, on_label = sides[False][1], sides[True][1]

    def over_seeds(aurocs: list[float]) -> str:
        return f"{statistics.mean(aurocs):.4f} ± {statistics.stdev(aurocs):.4f}" if len(aurocs) > 1 else "–"

    lines = [f"{off_label} (`{name}=False`, the path before) against {on_label} (`{name}=True`, the default on a "
             f"CPU), {args.dataset} standard protocol, {args.epochs} epochs (a reduced budget), device {args.device}. "
             f"AUROC of both: seed {seeds[0]}; over the seeds: mean ± std of the runs over seeds {args.seeds} "
             f"({on_label}: only for the methods of `--all-seeds-on`, else –), and the {off_label} runs' range "
             f"(max − min); speed is measured by `scripts/bench.py --compare-option {name}`, not here. Written by "
             f"`scripts/fast_path_check.py --compare {name}` from {results.name}.json.", "",
             f"| method | options | class | AUROC {off_label} | AUROC {on_label} | difference | {off_label} over "
             f"the seeds | {on_label} over the seeds | {off_label} seed range |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {json.dumps(r['options'], sort_keys=True) if r['options'] else ''} | "
                     f"{r['normal_class']} | {r['auroc_off']:.4f} | {r['auroc_on']:.4f} | "
                     f"{r['difference']:+.4f} | {over_seeds(r['off_seed_aurocs'])} | {over_seeds(r['on_seed_aurocs'])} | "
                     f"{r['off_seed_range']:.4f} |")
    tests = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        off_all = [a for r in mine for a in r["off_seed_aurocs"]]
        on_all = [a for r in mine for a in r["on_seed_aurocs"]]
        every = all(len(r["on_seed_aurocs"]) > 1 for r in mine)  # then the means over every class and seed
        lines.append(f"| **{method} mean** | | | {statistics.mean(r['auroc_off'] for r in mine):.4f} | "
                     f"{statistics.mean(r['auroc_on'] for r in mine):.4f} | "
                     f"{statistics.mean(r['difference'] for r in mine):+.4f} | "
                     f"{f'{statistics.mean(off_all):.4f}' if every else ''} | "
                     f"{f'{statistics.mean(on_all):.4f}' if every else ''} | "
                     f"{statistics.mean(r['off_seed_range'] for r in mine):.4f} |")
        if all(len(r["on_seed_aurocs"]) > 2 for r in mine):  # Welch: unequal spreads, no pairing by seed
            p = float(scipy.stats.ttest_ind(on_all, off_all, equal_var=False).pvalue)
            tests.append(f"{method}: p = {p:.2f} ({len(off_all)} {off_label} runs against {len(on_all)} {on_label})")
    if tests:
        lines += ["", "Welch's t-test of the two sides' AUROCs over every class and seed (a small p: the option "
                      "moves the AUROC by more than the seeds do): " + "; ".join(tests) + "."]
    write_text(results.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
