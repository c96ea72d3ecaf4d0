"""Calibrated fixed-point formats: measured ranges per profile field, and the integer bits they need.

:func:`measure_ranges` runs the bit-accurate model on calibration images
under an :class:`~edgemoe.golden.numerics.overflow.OverflowCounter` and
gathers, for every quantisation point (a counter tag), the largest |value|
before the overflow mode and the saturation count.  Each tag belongs to one
field of the precision profile (:func:`tag_field`: weights by their tensor
class, activations by :data:`TAG_FIELDS`), so the figures add up per field.

:func:`propose_profile` gives every signed field the fewest integer bits
that hold its largest value times ``headroom``, keeping each field's total
width (so the fraction bits move the other way), and leaves fields it did
not see, unsigned fields (probabilities, table outputs, pixels) and the
accumulator as they are.  The result is a profile that ``--config`` takes
as a YAML file.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import torch

from .numerics.fixed import FixedType
from .numerics.overflow import OverflowCounter

#: activation tag (block index removed) -> profile field; the one table of which step writes which type
TAG_FIELDS: dict[str, str] = {
    "patch_embed": "act", "embed": "act",
    "blocks.norm": "act", "blocks.norm.centered": "ln_centered", "blocks.norm.norm": "ln_norm",
    "blocks.qkv": "qkv", "blocks.scores": "attn_score", "blocks.probs": "attn_prob",
    "blocks.attn": "act", "blocks.proj": "act", "blocks.resid": "act", "blocks.fc": "act",
    "blocks.out": "act", "blocks.gate_logits": "gate_logit", "blocks.expert_fc": "act", "blocks.moe": "act",
}


def tag_field(tag: str) -> str | None:
    """The precision-profile field whose type a counter tag quantises to (None if unknown)."""
    from .weights import tensor_class

    if tag.startswith("weights."):
        return tensor_class(tag[len("weights."):])
    return TAG_FIELDS.get(re.sub(r"\.\d+|(?<=[a-z])\d+", "", tag))


@dataclass
class FieldRange:
    """What one profile field held on the calibration images."""

    field: str
    type: FixedType
    max_abs: float          # largest |value| before the overflow mode, real units
    overflows: int
    total: int
    tags: int               # quantisation points of this field


def measure_ranges(cfg, state_dict, images: torch.Tensor, tasks=None, batch: int = 4,
                   progress: bool = True) -> dict[str, FieldRange]:
    """Ranges per profile field of ``cfg.precision`` over ``images`` [B, 3, H, W] for every task in ``tasks``."""
    from tqdm import tqdm

    from .fixed_model import FixedM3ViT

    tasks = list(cfg.model.task_names if tasks is None else tasks)
    with OverflowCounter() as counter:
        model = FixedM3ViT(cfg, state_dict)          # weights are counted as they are quantised
        steps = [(t, s) for t in tasks for s in range(0, len(images), batch)]
        for task, start in tqdm(steps, desc="calibrate", unit="batch", disable=not progress, leave=False):
            model.forward(images[start:start + batch], task, keep_taps=False)
    out: dict[str, FieldRange] = {}
    for tag, s in counter.stats.items():
        name = tag_field(tag)
        if name is None:
            continue
        r = out.setdefault(name, FieldRange(name, s.type, 0.0, 0, 0, 0))
        r.max_abs = max(r.max_abs, s.max_abs_raw * s.type.lsb)
        r.overflows += s.overflows
        r.total += s.total
        r.tags += 1
    return out


def int_bits_for(max_abs: float, signed: bool = True, headroom: float = 1.25) -> int:
    """Fewest integer bits (sign included when signed) whose range holds ``max_abs * headroom``."""
    need = max(max_abs * headroom, 2.0 ** -8)
    return math.floor(math.log2(need)) + 1 + (1 if signed else 0)


KEEP_FIELDS = ("pixel", "accum")
"""Fields not sized by range: the input code format, and the accumulator (derived, exact)."""


def propose_profile(model_cfg, profile, ranges: dict[str, FieldRange], headroom: float = 1.25,
                    name: str | None = None):
    """A copy of ``profile`` whose measured signed fields have the integer bits their range needs.

    The accumulator is then the narrowest that keeps every matmul of the new
    formats exact (:func:`~edgemoe.golden.numerics.widths.exact_accumulator`).
    Returns (profile, {field: new type} of what changed).
    """
    from .numerics.widths import check_precision, exact_accumulator

    changes = {}
    for fname, r in ranges.items():
        t: FixedType = getattr(profile, fname)
        if fname in KEEP_FIELDS or not t.signed:
            continue
        bits = int_bits_for(r.max_abs, True, headroom)
        bits = min(max(bits, 1 - t.bits), t.bits)
        if bits != t.int_bits:
            changes[fname] = replace(t, int_bits=bits)
    from edgemoe.config import ConfigError

    tried: set[str] = set()
    while True:
        proposed = replace(profile, name=name or f"{profile.name}-cal", **changes)
        accum = exact_accumulator(model_cfg, proposed)
        proposed = replace(proposed, accum=accum)
        try:
            check_precision(model_cfg, proposed)
        except ConfigError as e:
            # a re-sized field broke a width rule (e.g. LayerNorm's epsilon needs its fraction bits):
            # first keep its old fraction bits (one bit wider), then give up re-sizing it
            fname = e.field.removeprefix("precision.")
            if fname not in changes:
                raise
            old = getattr(profile, fname)
            if fname in tried:
                del changes[fname]
            else:
                tried.add(fname)
                new = changes[fname]
                changes[fname] = replace(new, bits=new.int_bits + old.frac_bits)
            continue
        if accum != profile.accum:
            changes["accum"] = accum
        return proposed, changes


def format_ranges(profile, ranges: dict[str, FieldRange], proposed=None) -> str:
    """A table: field, type, largest |value|, saturations, and the proposed type when given."""
    head = f"{'field':<13} {'type':<26} {'max |x|':>10} {'saturated':>10} {'of':>11}  proposed"
    lines = [head, "-" * (len(head) + 12)]
    for fname in profile.type_fields():
        r = ranges.get(fname)
        if r is None:
            continue
        new = getattr(proposed, fname) if proposed is not None else None
        mark = str(new) if new is not None and new != r.type else "(same)"
        lines.append(f"{fname:<13} {str(r.type):<26} {r.max_abs:>10.4g} {r.overflows:>10} {r.total:>11}  {mark}")
    return "\n".join(lines)
