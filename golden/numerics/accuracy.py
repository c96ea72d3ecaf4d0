"""Measured error of the fixed-point approximations against float64 math.

:func:`measure_errors` runs each hardware function of the numerics spec (raw
words in, raw words out, dequantised with :func:`~.fixed.to_float`) on dense
plus random samples over the input ranges a real model feeds it, and compares
with exact float64 math *of the quantised input*: the figures are the error of
the function itself, not of quantising its input.

Rows (``ErrorRow.name``):

``exp``
    :func:`~.approx.exp_neg` on x in [-16, 0] as ``attn_score`` words,
    output ``exp``; versus ``math.exp``.
``reciprocal``
    :func:`~.approx.reciprocal` on x in [1, 200] as ``softmax_sum`` words,
    output ``softmax_inv``; versus 1/x.
``rsqrt``
    :func:`~.approx.rsqrt` on x in [1e-6, 1e3] (log-uniform) with
    ``2 * ln_centered.frac_bits`` fraction bits (the variance LayerNorm feeds
    it), output ``ln_inv_std``; versus 1/sqrt(x).
``gelu``
    :func:`~.approx.gelu` on x in [-8, 8] as ``act`` words; versus the exact
    erf GELU ``x * Phi(x)``.
``attn_softmax``
    rows of 129 scores ~ N(0, 3^2) as ``attn_score`` words through
    :func:`~.softmax.online_softmax_state` (identity key order) and
    :func:`~.softmax.normalise`; probabilities (``attn_prob``) versus the
    float softmax of the same scores.
``gate_softmax``
    rows of 16 logits ~ N(0, 2^2) as ``gate_logit`` words through
    :func:`~.softmax.gate_softmax` (``gate_score``) versus float softmax.
``layernorm``
    rows of 192 activations ~ N(0, 2^2) with two outliers per row
    (|x| in [8, 24]) as ``act`` words, gamma = 1 and beta = 0 as raw words;
    versus float LayerNorm with eps = 1e-6 (biased variance).

Relative error is reported only where it means something: ``max_rel`` is the
largest ``|err| / |ref|`` over outputs with ``|ref| > REL_FLOOR_LSBS * lsb``
(64 output LSBs); below that floor the output LSB dominates any ratio.
``max_rel`` is NaN when no output clears the floor.

Reading the figures: ``max_abs / lsb`` compares the error with the output
type's LSB, which is the right yardstick for exp, reciprocal and the
softmaxes.  For rsqrt the outputs span about 0.03 .. 1000, so its absolute
error is large in LSBs while its relative error is ~1e-5: read ``max_rel``.
For LayerNorm the error is set by ``ln_centered``'s LSB (x - mean is cast to
it), not by the output LSB, so ``max_rel`` near zero-valued outputs is large.

Pure library code: nothing here prints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from .approx import gelu, rsqrt
from .fixed import FixedType, from_float, to_float
from .layernorm import layernorm
from .softmax import exp_of, gate_softmax, normalise, online_softmax_state, recip_of

#: ``max_rel`` counts only outputs whose reference exceeds this many output LSBs.
REL_FLOOR_LSBS = 64

#: Names of the rows, in the order :func:`measure_errors` returns them.
FUNCTIONS = ("exp", "reciprocal", "rsqrt", "gelu", "attn_softmax", "gate_softmax", "layernorm")


@dataclass(frozen=True)
class ErrorRow:
    """Measured error of one function: absolute (max, mean) and relative (max, above the floor)."""

    name: str
    domain: str
    max_abs: float
    max_rel: float
    mean_abs: float
    lsb_of_output: float

    @property
    def max_abs_lsbs(self) -> float:
        """``max_abs`` in units of the output LSB."""
        return self.max_abs / self.lsb_of_output


def _row(name: str, domain: str, out_f64: torch.Tensor, ref_f64: torch.Tensor, out_type: FixedType) -> ErrorRow:
    err = (out_f64 - ref_f64).abs()
    floor = REL_FLOOR_LSBS * out_type.lsb
    big = ref_f64.abs() > floor
    max_rel = float((err[big] / ref_f64[big].abs()).max()) if bool(big.any()) else math.nan
    return ErrorRow(name, domain, float(err.max()), max_rel, float(err.mean()), out_type.lsb)


def _input_type(frac_bits: int) -> FixedType:
    """A wide signed type with ``frac_bits`` fraction bits (inputs of intermediate width)."""
    return FixedType(62, 62 - frac_bits, True, "RND", "SAT")


def _linear_samples(lo: float, hi: float, t: FixedType, n: int, gen: torch.Generator) -> torch.Tensor:
    """Raw words of ``t`` on [lo, hi]: a dense even grid (every word when they fit) plus uniform random."""
    raw_lo, raw_hi = int(from_float(lo, t)), int(from_float(hi, t))
    n_dense = n // 2
    if raw_hi - raw_lo + 1 <= n_dense:
        dense = torch.arange(raw_lo, raw_hi + 1, dtype=torch.int64)
    else:
        dense = torch.linspace(raw_lo, raw_hi, n_dense, dtype=torch.float64).round().to(torch.int64)
    rand = from_float(lo + (hi - lo) * torch.rand(n - dense.numel(), generator=gen, dtype=torch.float64), t)
    return torch.cat([dense, rand]).clamp(raw_lo, raw_hi)


def _log_samples(lo: float, hi: float, t: FixedType, n: int, gen: torch.Generator) -> torch.Tensor:
    """Raw words of ``t`` on [lo, hi], log-spaced dense grid plus log-uniform random (at least 1 LSB)."""
    a, b = math.log(lo), math.log(hi)
    dense = torch.linspace(a, b, n // 2, dtype=torch.float64)
    rand = a + (b - a) * torch.rand(n - n // 2, generator=gen, dtype=torch.float64)
    return from_float(torch.exp(torch.cat([dense, rand])), t).clamp(min=1)


def _exp(p, n: int, gen: torch.Generator) -> ErrorRow:
    t = p.attn_score
    x = _linear_samples(-16.0, 0.0, t, n, gen)
    y = exp_of(x, t.frac_bits, p)
    return _row("exp", f"x in [-16, 0] as {t}", to_float(y, p.exp), torch.exp(to_float(x, t)), p.exp)


def _reciprocal(p, n: int, gen: torch.Generator) -> ErrorRow:
    t = p.softmax_sum
    x = _linear_samples(1.0, 200.0, t, n, gen)
    y = recip_of(x, t.frac_bits, p)
    return _row("reciprocal", f"x in [1, 200] as {t}", to_float(y, p.softmax_inv), 1.0 / to_float(x, t),
                p.softmax_inv)


def _rsqrt(p, n: int, gen: torch.Generator) -> ErrorRow:
    frac = 2 * p.ln_centered.frac_bits
    x = _log_samples(1e-6, 1e3, _input_type(frac), n, gen)
    y = rsqrt(x, frac, p.ln_inv_std, p.table_frac_bits, p.rsqrt_table_bits)
    return _row("rsqrt", f"x in [1e-6, 1e3] log-uniform, {frac} frac bits", to_float(y, p.ln_inv_std),
                to_float(x, frac).rsqrt(), p.ln_inv_std)


def _gelu(p, n: int, gen: torch.Generator) -> ErrorRow:
    t = p.act
    x = _linear_samples(-8.0, 8.0, t, n, gen)
    y = gelu(x, t, p.gelu_table, p.gelu_step_log2, p.gelu_range)
    xf = to_float(x, t)
    ref = xf * 0.5 * (1.0 + torch.erf(xf / math.sqrt(2.0)))
    return _row("gelu", f"x in [-8, 8] as {t}", to_float(y, t), ref, t)


def _attn_softmax(p, n: int, gen: torch.Generator) -> ErrorRow:
    tokens = 129
    rows = max(1, n // tokens)
    s = from_float(3.0 * torch.randn(rows, tokens, generator=gen, dtype=torch.float64), p.attn_score)
    order = torch.arange(tokens).expand(rows, tokens)
    m, inv = online_softmax_state(s, order, p)
    prob = normalise(s, m[:, None], inv[:, None], p)
    ref = torch.softmax(to_float(s, p.attn_score), dim=-1)
    return _row("attn_softmax", f"{rows} rows of {tokens} scores ~ N(0, 3^2) as {p.attn_score}",
                to_float(prob, p.attn_prob), ref, p.attn_prob)


def _gate_softmax(p, n: int, gen: torch.Generator) -> ErrorRow:
    experts = 16
    rows = max(1, n // experts)
    z = from_float(2.0 * torch.randn(rows, experts, generator=gen, dtype=torch.float64), p.gate_logit)
    prob = gate_softmax(z, p)
    ref = torch.softmax(to_float(z, p.gate_logit), dim=-1)
    return _row("gate_softmax", f"{rows} rows of {experts} logits ~ N(0, 2^2) as {p.gate_logit}",
                to_float(prob, p.gate_score), ref, p.gate_score)


def _layernorm(p, n: int, gen: torch.Generator) -> ErrorRow:
    dim, eps = 192, 1e-6
    rows = max(1, n // dim)
    xf = 2.0 * torch.randn(rows, dim, generator=gen, dtype=torch.float64)
    # two outlier channels per row, |x| in [8, 24] (ViT residual streams carry a few)
    cols = torch.randint(0, dim, (rows, 2), generator=gen)
    mag = 8.0 + 16.0 * torch.rand(rows, 2, generator=gen, dtype=torch.float64)
    sign = torch.where(torch.rand(rows, 2, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
    xf.scatter_(1, cols, mag * sign)
    x = from_float(xf, p.act)
    gamma = from_float(torch.ones(dim, dtype=torch.float64), p.ln_gamma)
    beta = from_float(torch.zeros(dim, dtype=torch.float64), p.ln_beta)
    y = layernorm(x, gamma, beta, eps, p)
    xq = to_float(x, p.act)
    mu = xq.mean(dim=-1, keepdim=True)
    var = ((xq - mu) ** 2).mean(dim=-1, keepdim=True)
    ref = (xq - mu) / torch.sqrt(var + eps)
    return _row("layernorm", f"{rows} rows of {dim} ~ N(0, 2^2) + 2 outliers |x| in [8, 24] as {p.act}",
                to_float(y, p.act), ref, p.act)


_MEASURES: dict[str, Callable] = {
    "exp": _exp, "reciprocal": _reciprocal, "rsqrt": _rsqrt, "gelu": _gelu,
    "attn_softmax": _attn_softmax, "gate_softmax": _gate_softmax, "layernorm": _layernorm,
}


def measure_errors(profile, n: int = 200_000, seed: int = 0, only: Iterable[str] | None = None) -> list[ErrorRow]:
    """Measured error of every approximation of ``profile`` (a PrecisionProfile or its name).

    ``n`` is the number of samples per function (outputs, for the softmaxes and
    LayerNorm: ``n // row_length`` rows).  ``only`` restricts the rows to the
    named functions (see :data:`FUNCTIONS`).  Deterministic for a given seed.
    """
    if isinstance(profile, str):
        from edgemoe.config import precision_profile
        profile = precision_profile(profile)
    names = FUNCTIONS if only is None else tuple(only)
    unknown = [x for x in names if x not in _MEASURES]
    if unknown:
        raise ValueError(f"unknown function(s) {unknown}; measured: {', '.join(FUNCTIONS)}")
    rows = []
    for name in names:
        gen = torch.Generator().manual_seed(seed * 1000 + FUNCTIONS.index(name))
        rows.append(_MEASURES[name](profile, n, gen))
    return rows


def _sci(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.3e}"


def format_table(rows: Iterable[ErrorRow]) -> str:
    """Aligned text table of error rows (scientific notation), one line per row."""
    head = ("function", "max_abs", "max_rel", "mean_abs", "out_lsb", "max/lsb", "domain")
    body = [(r.name, _sci(r.max_abs), _sci(r.max_rel), _sci(r.mean_abs), _sci(r.lsb_of_output),
             f"{r.max_abs_lsbs:.2f}", r.domain) for r in rows]
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head))]
    lines = []
    for line in (head, *body):
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:-1], widths[1:-1])] + [line[-1]]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths[:-1]) + "  " + "-" * widths[-1])
    return "\n".join(lines)
