"""Exact matrix products of raw words, and the compute unit's linear layer.

Products are summed exactly (as the hardware's wide accumulator does) and
rounded once at the output, so the order of accumulation never matters.

Speed trick: float64 holds integers up to 2**53 exactly, so a product sum of
a-bit by b-bit words over K terms is exact in float64 BLAS when
a + b + ceil(log2 K) <= 53.  Wider operands are split into 16-bit chunks
(lower chunks unsigned, the top chunk signed) and the partial products are
recombined in int64.
"""
from __future__ import annotations

import math

import torch

from .fixed import FixedType, align, quantize

_F64_MANTISSA = 53
_CHUNK = 16


def _chunks(x: torch.Tensor, bits: int) -> list[tuple[torch.Tensor, int]]:
    """Split words of ``bits`` bits into (chunk, shift) with x = sum(chunk << shift)."""
    if bits <= _CHUNK:
        return [(x, 0)]
    out = []
    shift = 0
    while bits - shift > _CHUNK:
        out.append(((x >> shift) & ((1 << _CHUNK) - 1), shift))
        shift += _CHUNK
    out.append((x >> shift, shift))  # signed top chunk
    return out


def word_bits(x: torch.Tensor) -> int:
    """Bits of a two's-complement word that holds every element of ``x``."""
    if x.numel() == 0:
        return 1
    hi = int(x.max())
    lo = int(x.min())
    return max(hi.bit_length(), (-lo - 1).bit_length() if lo < 0 else 0) + 1


def exact_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` of int64 words, exactly, as int64 (batched like ``torch.matmul``)."""
    a = torch.as_tensor(a, dtype=torch.int64)
    b = torch.as_tensor(b, dtype=torch.int64)
    k = a.shape[-1]
    a_bits, b_bits = word_bits(a), word_bits(b)
    budget = _F64_MANTISSA - max(1, math.ceil(math.log2(max(k, 2))))
    if a_bits + b_bits <= budget:
        return torch.matmul(a.to(torch.float64), b.to(torch.float64)).to(torch.int64)
    # split every operand wider than a chunk; chunk products then need <= 34 bits
    a_parts, b_parts = _chunks(a, a_bits), _chunks(b, b_bits)
    if 2 * (_CHUNK + 1) > budget:  # pragma: no cover - needs K > 2**19
        raise ValueError(f"exact_matmul: K = {k} terms is beyond exact float64 accumulation")
    total = None
    for pa, sa in a_parts:
        fa = pa.to(torch.float64)
        for pb, sb in b_parts:
            part = torch.matmul(fa, pb.to(torch.float64)).to(torch.int64) << (sa + sb)
            total = part if total is None else total + part
    return total


def linear(x: torch.Tensor, x_type: FixedType, w: torch.Tensor, w_type: FixedType,
           b: torch.Tensor | None, b_type: FixedType | None, out: FixedType,
           tag: str | None = None) -> torch.Tensor:
    """One compute-unit pass: ``x @ w.T + b`` exactly, cast once to ``out``.

    ``x`` [..., K] raw words of ``x_type``; ``w`` [N, K] of ``w_type``;
    ``b`` [N] of ``b_type`` is preloaded into the accumulator (aligned exactly).
    """
    acc = exact_matmul(x, w.transpose(-1, -2))
    frac = x_type.frac_bits + w_type.frac_bits
    if b is not None:
        if b_type.frac_bits > frac:  # the accumulator keeps every bias bit (validated)
            acc = align(acc, frac, b_type.frac_bits)
            frac = b_type.frac_bits
        acc = acc + align(b, b_type.frac_bits, frac)
    return quantize(acc, frac, out, tag)
