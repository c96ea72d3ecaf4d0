"""Golden-model throughput: bit-accurate fixed-point vs float torch, same inputs, one run.

    python benchmarks/golden_speed.py [--config m3vit-tiny-cityscapes] [--images 8] [--batch 8]

Prints images/s of each model's backbone (and with the task head) and the
ratios; absolute times depend on the machine, the ratios much less.
"""
from __future__ import annotations

import argparse
import time

import torch

from edgemoe.config import load_config
from edgemoe.golden.fixed_model import FixedM3ViT
from edgemoe.golden.float_model import M3ViT
from edgemoe.golden.synthetic import synthetic_images, synthetic_state_dict


def best_rate(fn, images: torch.Tensor, batch: int, repeats: int) -> float:
    """Best images/s over ``repeats`` passes over ``images`` in batches of ``batch``."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(images), batch):
            fn(images[i:i + batch])
        best = max(best, len(images) / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="m3vit-tiny-cityscapes")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    torch.set_grad_enabled(False)
    cfg = load_config(args.config, args.set)
    sd = synthetic_state_dict(cfg.model, seed=0)
    images = synthetic_images(cfg.model, args.images, seed=0)
    task = cfg.model.task_names[0]
    float_model = M3ViT.from_state_dict(cfg.model, sd)
    t0 = time.perf_counter()
    fixed = FixedM3ViT(cfg, sd)
    quantize_s = time.perf_counter() - t0
    fixed.forward(images[:1], task, keep_taps=False)  # warm-up
    float_model.forward_backbone(images[:1], task)

    rows = [
        ("float torch backbone", best_rate(lambda x: float_model.forward_backbone(x, task), images, args.batch, args.repeats)),
        ("fixed-point backbone", best_rate(lambda x: fixed.forward(x, task, keep_taps=False), images, args.batch, args.repeats)),
        ("fixed-point + taps", best_rate(lambda x: fixed.forward(x, task, keep_taps=True), images, args.batch, args.repeats)),
        ("float torch + head", best_rate(lambda x: float_model(x, task), images, args.batch, args.repeats)),
        ("fixed-point + head", best_rate(lambda x: fixed.run_head(fixed.forward(x, task, keep_taps=False).tokens, task),
                                         images, args.batch, args.repeats)),
    ]
    ref = rows[0][1]
    print(f"{cfg.name} / {cfg.precision.name}: {args.images} images, batch {args.batch}, "
          f"{torch.get_num_threads()} threads; weight quantisation {quantize_s:.2f} s (once)")
    print(f"{'model':<24}{'img/s':>10}{'ms/img':>10}{'vs float backbone':>20}")
    for name, rate in rows:
        print(f"{name:<24}{rate:>10.2f}{1000 / rate:>10.1f}{rate / ref:>19.3f}x")


if __name__ == "__main__":
    main()
