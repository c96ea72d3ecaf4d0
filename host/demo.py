"""The main job on the embedded default: a real photo through the simulated accelerator, checked against golden.

1. weights: the checkpoint shipped for the config (trained by edgemoe on its
   generated street scenes; checked against its recipe's SHA-256), the M3ViT
   checkpoint given, or synthetic weights, packed into the
   kernel's DRAM layout (a versioned file with a checksum; cached);
2. the accelerator: the Vitis HLS project generated (kernel, testbench, tcl,
   board flow) and its kernel compiled with g++ into the simulated overlay,
   registered in bitstreams/manifest.json;
3. the inputs: a held-out generated street scene (from the test split, never
   trained on; its true labels and depth are known) and a real photo bundled
   with scikit-image (Middlebury's motorcycle scene), cropped and resized to
   the configured 128x256;
4. the simulated PYNQ device: pynq.Overlay, pynq.allocate and the kernel
   driver, both tasks (segmentation and depth) with their per-stage times;
5. the bit-exact check against the golden fixed-point model (kernel output and
   a few taps per task) and the fixed-vs-float error of each task's output;
6. the output PNGs: input, colourised segmentation, depth, and an overview;
   for the generated scene the truth beside the prediction, with its mIoU and
   depth error.
"""
from __future__ import annotations

import time
from pathlib import Path

PHOTOS = {
    "motorcycle": ("Middlebury stereo 'motorcycle' (left view)", lambda d: d.stereo_motorcycle()[0]),
    "astronaut": ("astronaut Eileen Collins (NASA)", lambda d: d.astronaut()),
    "coffee": ("a cup of coffee", lambda d: d.coffee()),
    "rocket": ("a rocket on the launch pad (NASA)", lambda d: d.rocket()),
}
DEFAULT_TAPS = "embed,blocks.0.out,blocks.1.gate_scores,blocks.1.topk_idx,blocks.1.moe"


_T = {"last": None}


def _close_step() -> None:
    if _T["last"] is not None:
        print(f"  ({time.perf_counter() - _T['last']:.1f} s)")
    _T["last"] = None


def _step(i: int, n: int, text: str) -> None:
    _close_step()
    _T["last"] = time.perf_counter()
    print(f"\n[{i}/{n}] {text}", flush=True)


def run_demo(cfg, weights: str | None = None, synthetic: bool = False, seed: int = 0, scene_index: int = 0,
             photo_names=("motorcycle",), taps: str = DEFAULT_TAPS, out_dir="out/demo") -> int:
    """The six steps for ``cfg``; 0 when the device is bit-exact with the golden model, else 1.

    ``weights``: an M3ViT checkpoint or a packed weights file (default: the
    checkpoint shipped for the config, else synthetic weights of ``seed``;
    ``synthetic`` forces those); ``scene_index``: the held-out test scene;
    ``photo_names``: keys of :data:`PHOTOS`; ``taps``: checked bit for bit
    besides the kernel output.
    """
    import numpy as np
    import skimage.data
    import torch

    from edgemoe.golden.dataset import scene_seed
    from edgemoe.golden.pretrained import checkpoint_recipe, shipped_checkpoint
    from edgemoe.golden.scenes import render_scene
    from edgemoe.golden.synthetic import synthetic_state_dict
    from edgemoe.hls.project import HLSProject
    from edgemoe.images import to_model_input

    from .compare import compare_device, format_comparison, select_taps
    from .paths import cache_dir
    from .runtime import Accelerator
    from .sim_overlay import build_sim_overlay
    from .visualize import (decoded_outputs, save_overview, save_png, save_task_maps, save_truth_comparison,
                            scene_figures, to_rgb)
    from .weights_file import is_weights_file, load_weights_file, packed_for

    torch.set_grad_enabled(False)
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = cfg.model
    steps = 6
    print(f"edgemoe demo: config {cfg.name} ({m.img_height}x{m.img_width}, dim {m.embed_dim}, depth {m.depth}, "
          f"{m.num_experts} experts top-{m.top_k}, tasks {', '.join(m.task_names)}; precision {cfg.precision.name}; "
          f"digest {cfg.digest()[:12]})")

    _step(1, steps, "weights -> the kernel's DRAM layout")
    float_sd, depth_encoding = None, ""
    shipped = None if weights or synthetic else shipped_checkpoint(cfg)
    if weights and is_weights_file(weights):
        packed = load_weights_file(weights, cfg)
        print(f"  packed weights file {weights} ({packed.source}); no float weights: the fixed-vs-float "
              f"error is skipped")
    else:
        if weights or shipped is not None:
            from edgemoe.golden.checkpoint import load_m3vit_checkpoint

            path = weights or shipped.path
            loaded = load_m3vit_checkpoint(path, m)
            float_sd, source = loaded.state_dict, f"M3ViT checkpoint {Path(path).name}"
            for n in loaded.notices:
                print(f"  {n}")
            if shipped is not None:
                print(f"  shipped checkpoint (SHA-256 verified): {shipped.describe()}")
            recipe = checkpoint_recipe(path) if Path(path).is_file() else None
            depth_encoding = (recipe or {}).get("depth_encoding", "")
        else:
            float_sd, source = synthetic_state_dict(m, seed=seed), f"synthetic (seed {seed})"
        print(f"  weights: {source}")
        packed = packed_for(cfg, float_sd, source, cache_dir() / "host-cache" / "weights",
                            log=lambda s: print("  " + s))
    lay = packed.layout
    print(f"  {lay['total_words']} {lay['word_bits']}-bit words ({packed.nbytes / 1e6:.1f} MB; per layer, per expert "
          f"contiguous, one gate per task) + {len(packed.heads)} float head tensors; sha256 {packed.sha256[:16]}")

    _step(2, steps, "generate and compile the accelerator (Vitis HLS project + g++ C simulation)")
    t0 = time.perf_counter()
    proj = HLSProject(cfg, packed.quantized(cfg))
    project_dir = proj.write(out / "hls")
    n_files = sum(1 for f in project_dir.rglob("*") if f.is_file())
    print(f"  HLS project: {project_dir} ({n_files} files: kernel, testbench + data, build_prj.tcl, "
          f"{cfg.hardware.board} flow, regmap.json, layout.json) in {time.perf_counter() - t0:.1f} s")
    entry = build_sim_overlay(cfg, project_dir=project_dir, cache_dir=cache_dir() / "csim-cache", reuse=False,
                              log=lambda s: print("  " + s))

    _step(3, steps, "the inputs: a held-out generated street scene and a real photo")
    photos, names = [], []
    scene = render_scene(scene_seed(0, "test", scene_index), m.img_height, m.img_width)
    print(f"  scene-{scene_index}: generated street scene {scene_index} of the test split (seed 0; never trained on), "
          f"with its true labels and depth")
    photos.append(to_model_input(scene.image_u8, m.img_height, m.img_width, f"  scene-{scene_index}",
                                 cfg.precision.pixel.bits, log=print))
    names.append(f"scene-{scene_index}")
    for name in photo_names:
        desc, fetch = PHOTOS[name]
        print(f"  {name}: {desc}, scikit-image bundled sample")
        photos.append(to_model_input(fetch(skimage.data), m.img_height, m.img_width, f"  {name}",
                                     cfg.precision.pixel.bits, log=print))
        names.append(name)
    images = torch.stack(photos)

    _step(4, steps, "the simulated device: pynq.Overlay + pynq.allocate + the kernel driver, both tasks")
    acc = Accelerator(cfg, overlay=entry.overlay, weights=packed, device="sim", max_batch=max(1, len(photos)),
                      log=lambda s: print("  " + s))
    wbufs = acc._wbuf if isinstance(acc._wbuf, tuple) else (acc._wbuf,)   # one per weight lane
    print(f"  driver: {type(acc.driver).__module__}.{type(acc.driver).__name__} bound by pynq to "
          f"{acc.driver.name} [{acc.driver.vlnv}]; weight buffer {acc.weights.nbytes / 1e6:.1f} MB at "
          f"{', '.join(f'{b.device_address:#x}' for b in wbufs)}, written once")
    res = acc.infer(images, "all")
    print(f"  {len(photos)} image(s) x {len(res.outputs)} task(s) in {res.kernel_calls} kernel call(s) "
          f"(task switch = the task register; the weights stay)")
    print("  per-stage times: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in res.timings.items())
          + f"; total {sum(res.timings.values()) * 1e3:.0f} ms")
    print("  (kernel = the kernel's C simulation on this CPU, not the speed of the FPGA)")

    _step(5, steps, "check against the golden model")
    taps = select_taps(cfg, taps)
    results = compare_device(acc, res.pixels, "all", taps, float_sd, result=res)
    for c in results:
        print()
        print("\n".join("  " + line for line in format_comparison(
            c, "skipped (a packed file holds no float weights)").splitlines()))
    ok = all(c.exact for c in results)
    print(f"\n  bit-exact with the golden fixed-point model: {'yes' if ok else 'NO'} ("
          + ", ".join(f"{c.task} {'yes' if c.exact else 'NO'} ({sum(t.exact for t in c.taps)}/{len(c.taps)})"
                      for c in results) + ")")

    _step(6, steps, "output images")
    shown = decoded_outputs(res, depth_encoding)
    saved = []
    for i, name in enumerate(names):
        saved.append(save_png(out / f"{name}_input.png", to_rgb(res.images[i])))
    saved += save_task_maps(shown, out, names)
    weights_note = ("\n(synthetic weights: an untrained model, so the maps carry no scene meaning)"
                    if "synthetic" in packed.source else "")
    for i, name in enumerate(names):
        saved.append(save_overview(out / f"{name}_overview.png", shown, i,
                                   f"edgemoe {cfg.name}, simulated device, {packed.source or 'packed'} weights: "
                                   f"{'bit-exact' if ok else 'NOT bit-exact'} with golden" + weights_note,
                                   depth_unit="m" if depth_encoding else ""))
    figures = scene_figures(shown, 0, scene.label, scene.depth_m) if depth_encoding else None
    saved.append(save_truth_comparison(out / f"{names[0]}_truth.png", shown, 0, scene.label, scene.depth_m,
                                       f"held-out generated scene {scene_index}: truth vs the device's prediction"
                                       + (f" (mIoU {100 * figures['miou']:.1f}%, AbsRel {figures['abs_rel']:.3f})"
                                          if figures else weights_note)))
    for path in saved:
        print(f"  {path}")
    if figures:
        print(f"  {names[0]}: mIoU {100 * figures['miou']:.1f}%, pixel accuracy {100 * figures['pixel_acc']:.1f}%, "
              f"depth AbsRel {figures['abs_rel']:.3f}, delta<1.25 {100 * figures['delta1']:.1f}% (this one scene)")
    if "synthetic" in packed.source:
        print("  note: synthetic weights are an untrained model: the maps are what it computes, not a scene "
              "parse (drop --synthetic, or --weights CHECKPOINT, for a trained M3ViT)")
    for task, out_t in shown.outputs.items():
        mp = shown.map(task)
        if out_t.shape[1] > 1:
            hist = np.bincount(mp.reshape(-1), minlength=out_t.shape[1]) / mp.size
            print(f"  {task}: pixels per class " + ", ".join(f"{v:.0%}" for v in hist))
        else:
            print(f"  {task}: range {float(mp.min()):.3f}..{float(mp.max()):.3f}" + (" m" if depth_encoding else ""))
    _close_step()
    print(f"\ndemo done in {time.perf_counter() - t_start:.1f} s: {'bit-exact' if ok else 'NOT bit-exact'}; "
          f"images in {out}/")
    return 0 if ok else 1

