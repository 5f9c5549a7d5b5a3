"""Do the fast path's AUROCs equal the old path's? Trains each method on MNIST classes with its
conv weights in NCHW (`channels_last=False`, PyTorch's default layout, the path before) and in
NHWC (`channels_last=True`, the default on a CPU), same seeds, and sets the AUROC
difference beside the seed-to-seed spread of the NCHW runs.

    python scripts/layout_check.py --methods dae,lsa,alocc --classes 0,1,2 --epochs 5 --seeds 0,1,2 \
        --option dae:lr=0.001 --option lsa:lr=0.001

A reduced budget needs a learning rate that learns in it (DAE and LSA's MNIST preset, 1e-4, is
for 100 epochs; 5 epochs of it leave DAE at chance): the check is of the kernels, not the budget.

The layout is not part of a run's identity (like the device, it picks other kernels for the
same FP32 maths), so each layout keeps its runs in its own folder under
results/checks/channels-last/ (`oneclass report` leaves results/checks/ out). Runs are cached:
a cut-off check resumes where it stopped. Writes results/checks/channels-last.md and .json."""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from oneclass.cli import _parse_options
from oneclass.evaluation import EvalSpec, evaluate
from oneclass.fileio import write_json, write_text

LAYOUTS = {"nchw": False, "nhwc": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="dae,lsa,alocc")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--classes", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the NCHW runs (their spread); NHWC runs the first")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--results", type=Path, default=Path("results/checks/channels-last"))
    ap.add_argument("--option", action="append", default=[], metavar="[METHOD:]KEY=VALUE",
                    help="an option of every method, or of one (repeatable); values read as JSON")
    args = ap.parse_args()
    options: dict[str, dict] = {}
    for item in args.option:
        scope, _, pair = item.rpartition(":") if ":" in item.split("=", 1)[0] else ("", "", item)
        options.setdefault(scope, {}).update(_parse_options((pair,)))
    classes = [int(c) for c in args.classes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for method in args.methods.split(","):
        runs = {}
        for layout, on in LAYOUTS.items():
            spec = EvalSpec(method, args.dataset, classes=classes, seeds=seeds if layout == "nchw" else seeds[:1],
                            epochs=args.epochs, device=args.device,
                            options={**options.get("", {}), **options.get(method, {}), "channels_last": on})
            runs[layout] = {(r["normal_class"], r["seed"]): r
                            for r in evaluate(spec, args.data_root, args.results / layout, progress=False)}
        for normal in classes:
            nchw = [runs["nchw"][(normal, s)] for s in seeds]
            nhwc = runs["nhwc"][(normal, seeds[0])]
            auroc = {layout: r["metrics"][r["headline"]]["auroc"] for layout, r in
                     (("nchw", nchw[0]), ("nhwc", nhwc))}
            seed_aurocs = [r["metrics"][r["headline"]]["auroc"] for r in nchw]
            rows.append({"method": method, "normal_class": normal, "seed": seeds[0], "epochs": args.epochs,
                         "options": {k: v for k, v in nhwc["options"].items() if k != "channels_last"},
                         "headline": nhwc["headline"], "auroc_nchw": auroc["nchw"], "auroc_nhwc": auroc["nhwc"],
                         "difference": round(auroc["nhwc"] - auroc["nchw"], 4),
                         "nchw_seeds": seeds, "nchw_seed_aurocs": seed_aurocs,
                         "nchw_seed_range": round(max(seed_aurocs) - min(seed_aurocs), 4),
                         "nchw_seed_std": round(statistics.stdev(seed_aurocs), 4) if len(seed_aurocs) > 1 else None,
                         "device": nhwc["device"]})
    out = args.results.parent / args.results.name
    write_json(out.with_suffix(".json"), {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                          "dataset": args.dataset, "epochs": args.epochs, "rows": rows})
    lines = [f"NCHW (`channels_last=False`, the path before) against NHWC (`channels_last=True`, the default on a CPU), "
             f"{args.dataset} standard protocol, {args.epochs} epochs (a reduced budget), device {args.device}. "
             f"AUROC NCHW and NHWC: seed {seeds[0]}; over the seeds: mean ± std of the NCHW runs over seeds "
             f"{args.seeds}, and their range (max − min); speed is "
             f"measured by `scripts/bench.py --compare-option channels_last`, not here. Written by "
             f"`scripts/layout_check.py` from {out.name}.json.", "",
             "| method | options | class | AUROC NCHW | AUROC NHWC | NHWC − NCHW | NCHW over the seeds | NCHW seed range |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {json.dumps(r['options'], sort_keys=True) if r['options'] else ''} | "
                     f"{r['normal_class']} | {r['auroc_nchw']:.4f} | {r['auroc_nhwc']:.4f} | "
                     f"{r['difference']:+.4f} | {statistics.mean(r['nchw_seed_aurocs']):.4f} ± {r['nchw_seed_std'] or 0:.4f} | "
                     f"{r['nchw_seed_range']:.4f} |")
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        lines.append(f"| **{method} mean** | | | {statistics.mean(r['auroc_nchw'] for r in mine):.4f} | "
                     f"{statistics.mean(r['auroc_nhwc'] for r in mine):.4f} | "
                     f"{statistics.mean(r['difference'] for r in mine):+.4f} | | "
                     f"{statistics.mean(r['nchw_seed_range'] for r in mine):.4f} |")
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
