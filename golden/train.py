"""Training the float M3ViT with both task heads on a scene dataset (:mod:`edgemoe.golden.dataset`).

One step takes a batch of scenes and runs the backbone once per task (each
task has its own gates) and that task's head; the loss is

    cross-entropy(semseg logits, labels)
    + depth_weight * L1(depth output, ln(depth_m))
    + balance_weight * sum over MoE blocks of cv^2(importance) + cv^2(load)

(M3ViT's losses: cross-entropy for semseg, L1 for depth, here on log depth so
that near and far pixels count alike; the load-balancing term keeps every
expert in use).  The depth head therefore predicts ``ln(depth / 1 m)``
(:data:`DEPTH_ENCODING`), and :func:`depth_from_output` turns it back.

Two options trade exactness for what 2 CPU cores can do in a couple of
hours.  ``class_balance = p`` weights the cross-entropy of class c by
``(median frequency / frequency of c) ** p`` over the training labels
(p = 1 is median-frequency balancing; thin classes such as poles and people
cover ~1% of the pixels and are otherwise never predicted).
``head_crop = f`` runs each head's last (full-resolution) stage on a random
window of f x f of its map (:meth:`UpHead.forward` ``crop``), about 1/f^2
less of the head's dominant cost; the backbone and the other stages still
see the whole image.  The cropped stage's BatchNorm keeps its running
statistics, so ``head_crop < 1`` needs ``init`` (a trained model).

AdamW with a linear warm-up and a cosine decay; horizontal flips and small
brightness/contrast changes as augmentation.  The run state (model,
optimiser, step, data order) is saved atomically every ``save_every_s``
seconds to ``<out>.state.pt`` and a run resumes from it; at the end the
weights are written in M3ViT's checkpoint format (float16 tensors) to
``<out>`` with a recipe ``<out>.json`` beside it (data, command, steps, wall
time, final validation figures and the checkpoint's SHA-256).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgemoe.files import atomic_output, atomic_write_text

from .dataset import Split, load_split, read_recipe, sha256_file
from .evaluate import DEPTH_ENCODING, evaluate, task_roles
from .heads import HeadCrop

class TrainingError(ValueError):
    """A training option, dataset or run state that cannot be used; the message names it."""


@dataclass
class TrainSettings:
    """Hyper-parameters of one run (also saved in the recipe)."""

    steps: int = 3000
    batch: int = 8
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_steps: int = 150
    depth_weight: float = 1.0
    balance_weight: float = 0.01
    class_balance: float = 0.0
    head_crop: float = 1.0
    seed: int = 0
    val_scenes: int = 64
    save_every_s: float = 120.0
    log_every: int = 25

    def check(self) -> None:
        for name, lo, hi in (("steps", 1, 10_000_000), ("batch", 1, 4096), ("warmup_steps", 0, 10_000_000),
                             ("val_scenes", 0, 1_000_000), ("log_every", 1, 1_000_000)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise TrainingError(f"--{name.replace('_', '-')} = {v!r}: must be an integer in {lo}..{hi}")
        for name in ("lr", "min_lr", "weight_decay", "depth_weight", "balance_weight", "save_every_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise TrainingError(f"--{name.replace('_', '-')} = {v!r}: must be a finite number >= 0")
        if not isinstance(self.class_balance, (int, float)) or not 0 <= self.class_balance <= 2:
            raise TrainingError(f"--class-balance = {self.class_balance!r}: must be a number in [0, 2]")
        if not isinstance(self.head_crop, (int, float)) or not 0.1 <= self.head_crop <= 1:
            raise TrainingError(f"--head-crop = {self.head_crop!r}: must be a number in [0.1, 1]")


def learning_rate(step: int, s: TrainSettings) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at ``steps``."""
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    t = (step - s.warmup_steps) / max(1, s.steps - s.warmup_steps)
    return s.min_lr + 0.5 * (s.lr - s.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


def _cv_squared(x: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation of a 1-D tensor (0 for a single element)."""
    if x.numel() <= 1:
        return x.new_zeros(())
    return x.float().var() / (x.float().mean() ** 2 + 1e-10)


def balance_loss(records: list[dict]) -> torch.Tensor:
    """sum over MoE blocks of cv^2(importance) + cv^2(load) (M3ViT's load-balancing term)."""
    total = torch.zeros(())
    for rec in records:
        probs = rec["gate_scores"].reshape(-1, rec["gate_scores"].shape[-1])
        idx = rec["topk_idx"].reshape(-1)
        load = torch.bincount(idx, minlength=probs.shape[-1]).float()
        total = total + _cv_squared(probs.sum(0)) + _cv_squared(load)
    return total


def batch_tensors(split: Split, index: np.ndarray, rng: np.random.Generator | None = None):
    """(images [B,3,H,W] in [0,1], labels [B,H,W] int64, ln depth [B,1,H,W]) for scenes ``index``; augmented with ``rng``."""
    images = split.images(index)
    labels = torch.from_numpy(split.labels[index].astype(np.int64))
    depth = torch.from_numpy(np.log(split.depth_m[index])).unsqueeze(1)
    if rng is not None:
        flip = torch.from_numpy(rng.uniform(size=len(index)) < 0.5)
        images[flip] = images[flip].flip(-1)
        labels[flip] = labels[flip].flip(-1)
        depth[flip] = depth[flip].flip(-1)
        gain = torch.from_numpy(rng.uniform(0.8, 1.2, (len(index), 1, 1, 1)).astype(np.float32))
        bias = torch.from_numpy(rng.uniform(-0.06, 0.06, (len(index), 1, 1, 1)).astype(np.float32))
        images = (images * gain + bias).clamp(0, 1)
    return images, labels, depth


def class_weights(labels: np.ndarray, classes: int, power: float) -> torch.Tensor:
    """Cross-entropy weight per class: ``(median frequency / frequency) ** power`` over ``labels``.

    Classes absent from ``labels`` get weight 1; ``power = 0`` gives all ones.
    """
    counts = np.bincount(np.asarray(labels).reshape(-1), minlength=classes)[:classes].astype(np.float64)
    present = counts > 0
    w = np.ones(classes)
    if power > 0 and present.any():
        freq = counts / counts.sum()
        w[present] = (np.median(freq[present]) / freq[present]) ** power
    return torch.tensor(w, dtype=torch.float32)


def random_crop(model, batch: int, fraction: float, rng: np.random.Generator) -> HeadCrop | None:
    """A random window per image of ``fraction`` of each side of the heads' last stage (None for 1: the whole map)."""
    if fraction >= 1:
        return None
    h, w = next(iter(model.decoders.values())).last_stage_size()
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    return HeadCrop(tuple(int(t) for t in rng.integers(0, h - ch + 1, batch)),
                    tuple(int(t) for t in rng.integers(0, w - cw + 1, batch)), ch, cw)


def step_loss(model, images, labels, depth_ln, s: TrainSettings, weights: torch.Tensor | None = None,
              crop: HeadCrop | None = None) -> tuple[torch.Tensor, dict]:
    """The training loss of one batch and its parts (floats).

    ``weights``: cross-entropy weight per class (:func:`class_weights`);
    ``crop``: the heads' window (:func:`random_crop`); labels and depth are
    cut to the same window.
    """
    seg_task, depth_task = task_roles(model.cfg)
    if crop is not None:
        labels, depth_ln = crop.cut(labels, scale=2), crop.cut(depth_ln, scale=2)
    records = []
    for mlp in model.moe_mlps().values():
        mlp.record = {}
        records.append(mlp.record)
    try:
        seg = model.decoders[seg_task](model.forward_backbone(images, seg_task), crop=crop)
        ce = F.cross_entropy(seg, labels, weight=weights)
        bal = balance_loss(records)
        for r in records:
            r.clear()
        dep = model.decoders[depth_task](model.forward_backbone(images, depth_task), crop=crop)
        l1 = F.l1_loss(dep, depth_ln)
        bal = bal + balance_loss(records)
    finally:
        for mlp in model.moe_mlps().values():
            mlp.record = None
    loss = ce + s.depth_weight * l1 + s.balance_weight * bal
    return loss, {"ce": ce.item(), "l1": l1.item(), "bal": bal.item()}


def evaluate_model(model, split: Split, batch: int = 8) -> dict:
    """:func:`~edgemoe.golden.evaluate.evaluate` of the model being trained (eval mode for the pass)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return evaluate(model.cfg, lambda x: {t: model(x, t).numpy() for t in model.cfg.task_names},
                            split, batch=batch, progress=False)
    finally:
        model.train(was_training)


def _init_recipe(init) -> dict | None:
    """The training recipe of the checkpoint a fine-tuning run starts from (None if it has none)."""
    from .pretrained import ShippedCheckpointError, checkpoint_recipe

    try:
        return checkpoint_recipe(init)
    except ShippedCheckpointError as e:
        raise TrainingError(f"--init {init}: {e}") from None


def export_checkpoint(model, path: Path) -> Path:
    """Write the model's state dict in M3ViT's key layout, float tensors as float16, atomically."""
    sd = {k: (v.detach().half() if v.is_floating_point() else v.detach()).clone() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(sd, tmp)
    return path


def train(cfg, data_dir: str | Path, out: str | Path, settings: TrainSettings, progress: bool = True,
          log=print, command: str = "", budget_s: float | None = None, stop_at_step: int | None = None,
          init: str | Path | None = None, threads: int | None = None) -> dict | None:
    """Train (or resume) a run; returns the recipe written next to the checkpoint ``out``.

    ``init``: an M3ViT checkpoint the run starts from instead of random
    weights (fine-tuning); ignored when resuming a saved run state.
    ``threads``: torch's CPU threads (default: one per core).  On a busy
    machine one thread often beats two, which stall each other at every
    parallel operation when a core is taken; the number does not change the
    run's results, so a run may resume with another.

    With ``budget_s`` (seconds of this call) or ``stop_at_step``, the call may
    stop early: it saves the run state and returns None, and the same call
    later resumes where it stopped.  Gradients are on for the run whatever
    the caller's grad mode is.
    """
    with torch.enable_grad():
        return _train(cfg, data_dir, out, settings, progress, log, command, budget_s, stop_at_step, init, threads)


def _train(cfg, data_dir, out, settings: TrainSettings, progress, log, command, budget_s, stop_at_step, init, threads):
    from tqdm import tqdm

    from .float_model import M3ViT

    settings.check()
    task_roles(cfg.model)
    out = Path(out)
    if out.exists() and out.is_dir():
        raise TrainingError(f"--out {out}: is a folder; give the checkpoint's file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    recipe = read_recipe(data_dir)
    if (recipe["height"], recipe["width"]) != (cfg.model.img_height, cfg.model.img_width):
        raise TrainingError(f"--data {data_dir}: scenes are {recipe['height']}x{recipe['width']}, the model takes "
                         f"{cfg.model.img_height}x{cfg.model.img_width}")
    train_split = load_split(data_dir, "train")
    val_split = load_split(data_dir, "val", limit=settings.val_scenes) if "val" in recipe["splits"] else None
    torch.manual_seed(settings.seed)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024):
        raise TrainingError(f"--threads = {threads!r}: must be an integer in 1..1024")
    torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
    model = M3ViT(cfg.model).train()
    if settings.head_crop < 1 and init is None:
        raise TrainingError(f"--head-crop {settings.head_crop:g} fine-tunes a trained model (the cropped stage "
                            "keeps its BatchNorm statistics); give --init CKPT, or --head-crop 1")
    init_sha = sha256_file(Path(init)) if init is not None and Path(init).is_file() else None
    init_recipe = _init_recipe(init) if init_sha is not None else None
    if init is not None and not out.with_name(out.name + ".state.pt").exists():
        from .checkpoint import load_m3vit_checkpoint

        model.load_state_dict(load_m3vit_checkpoint(init, cfg.model).state_dict)
        log(f"starting from {init}")
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embed" not in n and "cls_token" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos_embed" not in n and "cls_token" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr)
    state_path = out.with_name(out.name + ".state.pt")
    step, wall_s, history, state = 0, 0.0, [], None
    if state_path.exists():
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable state file gets the same advice
            raise TrainingError(f"{state_path}: unreadable run state ({type(e).__name__}); delete it to start afresh") from None
        if state.get("config_digest") != cfg.digest() or state.get("settings") != asdict(settings):
            raise TrainingError(f"{state_path}: a run with another config or settings; delete it to start afresh")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, wall_s, history = state["step"], state["wall_s"], state["history"]
        torch.set_rng_state(state["torch_rng"])
        log(f"resuming {state_path} at step {step}/{settings.steps}")
    rng = np.random.default_rng(settings.seed)
    if state is not None:
        rng.bit_generator.state = state["rng"]
    n = len(train_split)
    seg_task = task_roles(cfg.model)[0]
    weights = class_weights(train_split.labels, cfg.model.tasks[cfg.model.task_index(seg_task)].out_channels,
                            settings.class_balance) if settings.class_balance > 0 else None
    if weights is not None:
        log("class weights: " + ", ".join(f"{w:.2f}" for w in weights.tolist()))
    last_save = time.monotonic()
    t0 = time.monotonic() - wall_s

    def save_state():
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                 "wall_s": time.monotonic() - t0, "history": history, "config_digest": cfg.digest(),
                 "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "settings": asdict(settings)}
        with atomic_output(state_path) as tmp:
            torch.save(state, tmp)

    bar = tqdm(total=settings.steps, initial=step, desc="train", unit="step", disable=not progress)
    window: list[float] = []
    deadline = None if budget_s is None else time.monotonic() + budget_s
    while step < settings.steps:
        if (stop_at_step is not None and step >= stop_at_step) or (deadline is not None and time.monotonic() > deadline):
            bar.close()
            save_state()
            log(f"stopped at step {step}/{settings.steps}; run the same command again to resume")
            return None
        for g in opt.param_groups:
            g["lr"] = learning_rate(step, settings)
        index = rng.choice(n, size=min(settings.batch, n), replace=False)
        images, labels, depth_ln = batch_tensors(train_split, index, rng)
        crop = random_crop(model, len(index), settings.head_crop, rng)
        tick = time.monotonic()
        loss, parts = step_loss(model, images, labels, depth_ln, settings, weights, crop)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step} (parts {parts}); lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_value = loss.item()
        window = (window + [len(index) / (time.monotonic() - tick)])[-20:]
        step += 1
        if step % settings.log_every == 0 or step == settings.steps:
            history.append({"step": step, "loss": loss_value, **parts, "lr": opt.param_groups[0]["lr"]})
        bar.set_postfix(loss=f"{loss_value:.3f}", ce=f"{parts['ce']:.3f}", l1=f"{parts['l1']:.3f}",
                        img_s=f"{np.mean(window):.2f}")
        bar.update(1)
        if time.monotonic() - last_save >= settings.save_every_s:
            save_state()
            last_save = time.monotonic()
    bar.close()
    save_state()
    val = evaluate_model(model, val_split) if val_split is not None and len(val_split) else {}
    export_checkpoint(model, out)
    result = {"config": cfg.name, "config_digest": cfg.digest(), "data": {"dir": str(data_dir), "seed": recipe["seed"],
              "generator_version": recipe["generator_version"], "train_scenes": n},
              "settings": asdict(settings), "steps": step, "wall_s": round(time.monotonic() - t0, 1),
              "threads": torch.get_num_threads(), "depth_encoding": DEPTH_ENCODING, "val": val,
              "init": None if init is None else {"checkpoint": str(init), "sha256": init_sha, "recipe": init_recipe},
              "command": command, "checkpoint": out.name, "sha256": sha256_file(out), "history": history}
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps(result, indent=1) + "\n")
    return result
