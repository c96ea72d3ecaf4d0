"""Golden fixed-point vs C simulation vs float torch: images/s on the same inputs, one run each.

    python benchmarks/speed.py [--config m3vit-tiny-cityscapes] [--images 2] [--task 0] [--cached]
                               [--baseline REV]

Also runs the host runtime on the simulated device (pynq overlay + driver +
the same kernel) and prints its overhead per image (everything but the kernel),
times generating the HLS project (write) and compiling the C simulation
library with g++ (into a fresh cache unless ``--cached``), checks that the
csim tokens equal the golden ones word for word, and puts the performance
model's FPGA estimate beside the measured rates.  With ``--baseline REV`` it
also compiles and times the C simulation of that earlier revision (see
``baseline.py``) on the same inputs and prints its speed beside today's, with
whether the two kernels wrote the same words.  One warm-up on one image, then one
timed run each: the figures
are machine- and load-dependent; the ratios much less.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None) -> int:
    from edgemoe.loading import load_config
    from edgemoe.golden.fixed_model import FixedM3ViT
    from edgemoe.golden.float_model import M3ViT
    from edgemoe.golden.synthetic import synthetic_images, synthetic_state_dict
    from edgemoe.perf.cycles import estimate
    from edgemoe.perf.measured import SimResults
    from edgemoe.sim import formats, results
    from edgemoe.hls.project import HLSProject

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="m3vit-tiny-cityscapes")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--task", default="0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cached", action="store_true", help="use build/csim-cache (a cached library compiles in 0 s)")
    ap.add_argument("--baseline", metavar="REV", help="also time the C simulation of this earlier revision")
    args = ap.parse_args(argv)

    torch.set_grad_enabled(False)
    cfg = load_config(args.config, args.set)
    m = cfg.model
    task = int(args.task) if args.task.isdigit() else args.task
    sd = synthetic_state_dict(m, seed=args.seed)
    images = synthetic_images(m, args.images, seed=args.seed)
    n = args.images

    fixed, quant_s = timed(lambda: FixedM3ViT(cfg, sd))
    float_model = M3ViT.from_state_dict(m, sd)

    with tempfile.TemporaryDirectory() as tmp:
        cache = None if args.cached else Path(tmp) / "cache"
        proj, pack_s = timed(lambda: HLSProject(cfg, fixed.weights, cache_dir=cache))
        _, write_s = timed(lambda: proj.write(Path(tmp) / "project"))
        comp, compile_s = timed(proj.compile)

        # warm-up on one image (first-call allocation, library load), then one timed run each, same images
        float_model.forward_backbone(images[:1], task)
        fixed.forward(images[:1], task, keep_taps=False)
        proj.predict(images[:1], task)
        float_tokens, float_s = timed(lambda: float_model.forward_backbone(images, task))
        golden, golden_s = timed(lambda: fixed.forward(images, task, keep_taps=False))
        csim_tokens, csim_s = timed(lambda: proj.predict(images, task))

        # the host runtime on the simulated device: the same kernel behind pynq + the driver;
        # its overhead is everything but the kernel (preprocess, buffer transfers, head)
        from edgemoe.host.runtime import Accelerator
        acc = Accelerator(cfg, weights=sd, device="sim", cache_dir=cache or Path("build"), log=None)
        acc.infer(images[:1], task)
        host = acc.infer(images, task)

    exact = np.array_equal(csim_tokens, golden.tokens.numpy())
    measured = SimResults.read(results, layernorm_plan=formats.layernorm_plan)
    est = {mode: estimate(cfg, None, 1, mode, measured=measured) for mode in ("onchip", "edgemoe-dram")}

    print(f"{cfg.name} / {cfg.precision.name}: {n} synthetic image(s), task {m.task_names[m.task_index(task)]}, "
          f"{torch.get_num_threads()} torch threads, one run each")
    print(f"  generate: quantise weights {quant_s:.2f} s, pack {pack_s:.2f} s, write project {write_s:.2f} s")
    print(f"  compile:  g++ C simulation library {compile_s:.1f} s"
          + (" (cached)" if comp.cached else "") + f"; {len(comp.warnings)} warning(s) in generated code")
    rows = [("float torch backbone", float_s), ("golden fixed-point", golden_s), ("csim (g++ kernel)", csim_s)]
    print(f"  {'model':<24}{'seconds':>9}{'img/s':>10}{'vs float':>10}{'vs golden':>11}")
    for name, s in rows:
        print(f"  {name:<24}{s:>9.2f}{n / s:>10.3f}{float_s / s:>9.3f}x{golden_s / s:>10.3f}x")
    for mode, e in est.items():
        print(f"  {'FPGA model, ' + mode:<24}{e.ms_per_image * n / 1e3:>9.4f}{e.images_per_s:>10.1f}"
              f"{float_s / (e.ms_per_image * n / 1e3):>9.1f}x{golden_s / (e.ms_per_image * n / 1e3):>10.1f}x"
              f"   (modelled, uniform routing, {cfg.hardware.board} {cfg.hardware.clock_mhz:g} MHz)")
    t = host.timings
    overhead = t["preprocess"] + t["transfer"] + t["head"]
    print(f"  host runtime (simulated device), per image: preprocess {t['preprocess'] / n * 1e3:.1f} ms, "
          f"transfer {t['transfer'] / n * 1e3:.1f} ms, head {t['head'] / n * 1e3:.1f} ms, kernel "
          f"{t['kernel'] / n * 1e3:.0f} ms; overhead (all but the kernel) {overhead / n * 1e3:.1f} ms/image "
          f"= {overhead / max(t['kernel'], 1e-9):.3f}x the simulated kernel, "
          f"{overhead / n * 1e3 / est['onchip'].ms_per_image:.2f}x the modelled FPGA kernel (onchip)")
    exact = exact and np.array_equal(host.tokens[m.task_names[m.task_index(task)]], golden.tokens.numpy())
    print(f"  csim and host-runtime tokens == golden tokens (raw words): {'yes' if exact else 'NO'}")
    if args.baseline:
        import hashlib

        from baseline import BaselineError, csim_at
        try:
            old = csim_at(args.baseline, args.config, args.set, n, task, args.seed)
        except BaselineError as e:
            print(f"  baseline: {e}")
            return 1
        same = old["sha256"] == hashlib.sha256(np.ascontiguousarray(csim_tokens).tobytes()).hexdigest()
        print(f"  csim at {old['commit'][:12]} (--baseline {args.baseline}): compile {old['compile_s']:.1f} s, "
              f"{old['csim_s']:.2f} s = {n / old['csim_s']:.3f} img/s; today's csim is "
              f"{old['csim_s'] / csim_s:.2f}x its speed and compiles in {compile_s / old['compile_s']:.2f}x its "
              f"time; same output words: {'yes' if same else 'NO'}")
        exact = exact and same
    if not exact and float_tokens is not None:
        diff = int(np.count_nonzero(csim_tokens != golden.tokens.numpy()))
        print(f"  {diff} word(s) differ")
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
