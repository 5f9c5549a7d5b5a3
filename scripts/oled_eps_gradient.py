"""How much OLED's threshold-unit ε lets the mask generator learn: on a fixed batch of embedded
digits, five mask-module (MM) ascent steps from the same initial networks, and the rise of the
adversarial objective L_mask + γ·L_cont they achieve, for ε = 1e-12 (the official code's) and
1e-3 (oneclass's default), several seeds and learning rates. CPU, seconds.

    python scripts/oled_eps_gradient.py --out results/oled_eps_gradient.json
"""
from __future__ import annotations

import argparse
import time

import torch

import oneclass
from oneclass.detector import versions
from oneclass.fileio import write_json
from oneclass.models.oled import masked_losses


def objective_gain(eps: float, lr: float, seed: int, batch: torch.Tensor, steps: int) -> float:
    det = oneclass.create("oled", "mnist", device="cpu", eps=eps, lr=lr, seed=seed)
    det._build()
    det.train_mode(True)  # batch statistics, as in training
    x = det.inputs(batch)

    def objective() -> float:
        with torch.no_grad():
            mask = det.make_mask(x)
            return float(det.adversarial_objective(masked_losses(x, det.networks["R"](x * mask), mask)))

    before = objective()
    for _ in range(steps):
        det.mm_step(x, None)
    return objective() - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--lrs", default="0.001,0.01")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default="results/oled_eps_gradient.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    batch = oneclass.datasets.embedded()[0].images[: args.batch]
    rows = []
    for lr in map(float, args.lrs.split(",")):
        for eps in (1e-12, 1e-3):
            for seed in map(int, args.seeds.split(",")):
                gain = objective_gain(eps, lr, seed, batch, args.steps)
                rows.append({"eps": eps, "lr": lr, "seed": seed, "objective_gain": gain})
                print(f"lr {lr:g} eps {eps:g} seed {seed}: objective change {gain:+.3f}")
    write_json(args.out, {"what": "rise of L_mask + gamma*L_cont after MM ascent steps on a fixed batch",
                          "steps": args.steps, "batch": args.batch, "data": "mnist-embedded train[:batch]",
                          "device": "cpu", "versions": versions(),
                          "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": rows})


if __name__ == "__main__":
    main()
