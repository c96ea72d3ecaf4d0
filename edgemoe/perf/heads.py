"""The task heads' work and time: MACs from the config, modelled on the ZCU102's Cortex-A53s, measured here.

The accelerator ends at the backbone's tokens; the task heads (M3ViT's
UpHead, :class:`edgemoe.golden.heads.UpHead`) run in float on the host today
(:mod:`edgemoe.host.runtime`).  Their work dwarfs the backbone's (about
6.4 GMAC per task for the tiny preset against 0.8 GMAC), so an end-to-end
figure needs them beside the kernel:

* :func:`head_macs` -- the convolutions' multiply-accumulates of one head,
  one formula from the model config (LayerNorm, BatchNorm, ReLU and the
  bilinear upsamplings are element-wise and not counted);
* :func:`modelled_ms` -- that work on a host CPU at an assumed sustained rate
  (:data:`ZCU102_A53`, basis stated on it);
* :func:`measure_host_ms` -- the float UpHead timed in torch on the machine
  running this code, one image, median of a few runs (a runtime measurement:
  machine- and load-dependent, never a test's expectation).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from edgemoe.config import ConfigError, ModelConfig


@dataclass(frozen=True)
class HostCPU:
    """A host processor: ``cores`` x ``clock_ghz`` x ``macs_per_cycle`` (fp32, per core) x ``efficiency``."""

    name: str
    cores: int
    clock_ghz: float
    macs_per_cycle: float
    efficiency: float
    basis: str

    @property
    def peak_gmacs(self) -> float:
        return self.cores * self.clock_ghz * self.macs_per_cycle

    @property
    def sustained_gmacs(self) -> float:
        """Assumed sustained GMAC/s on the heads' convolutions."""
        return self.peak_gmacs * self.efficiency


#: the ZCU102's application processor, where a PYNQ host runs the heads
ZCU102_A53 = HostCPU(
    "ZCU102 APU: 4x Cortex-A53 at 1.2 GHz, NEON fp32", cores=4, clock_ghz=1.2, macs_per_cycle=2.0, efficiency=0.5,
    basis="the A53's 64-bit NEON pipe issues a 128-bit FMLA (4 fp32 MACs) every other cycle: 2 MAC/cycle/core, "
          "9.6 GMAC/s peak on 4 cores at 1.2 GHz (the board's APU clock); half of peak assumed sustained by a "
          "blocked im2col + GEMM convolution (cache misses, im2col copies, the element-wise layers)")


def head_macs(model_cfg: ModelConfig, out_channels: int) -> int:
    """Conv MACs of one UpHead: sum over its S = log2(patch) 3x3 stages at (gh 2^j) x (gw 2^j), j < S,
    from D (j = 0) or C channels to C, plus the 1x1 conv C -> ``out_channels`` at the last stage's size."""
    m = model_cfg
    gh, gw = m.grid
    d, c, s = m.embed_dim, m.head_channels, m.upsample_stages
    if s < 1:
        raise ConfigError("model.patch_size", m.patch_size, "UpHead needs patch_size >= 2")
    return sum((gh << j) * (gw << j) * (d if j == 0 else c) * c * 9 for j in range(s)) \
        + (gh << (s - 1)) * (gw << (s - 1)) * c * out_channels


def task_head_macs(model_cfg: ModelConfig) -> dict[str, int]:
    """MACs of every task's head, by task name."""
    for t in model_cfg.tasks:
        if t.head != "uphead":
            raise ConfigError(f"model.tasks.{t.name}.head", t.head, "only uphead heads are counted")
    return {t.name: head_macs(model_cfg, t.out_channels) for t in model_cfg.tasks}


def modelled_ms(macs: float, cpu: HostCPU = ZCU102_A53) -> float:
    """``macs`` at ``cpu``'s assumed sustained rate, in ms."""
    return macs / (cpu.sustained_gmacs * 1e9) * 1e3


@dataclass(frozen=True)
class HostTiming:
    """Wall time of one head's forward pass on this machine: median and every run (ms)."""

    task: str
    median_ms: float
    runs_ms: tuple[float, ...]
    threads: int

    def describe(self) -> str:
        return (f"median of {len(self.runs_ms)} after a warm-up, min {min(self.runs_ms):.2f} ms, "
                f"{self.threads} torch thread(s)")


def measure_host_ms(model_cfg: ModelConfig, task: str | int = 0, runs: int = 3, seed: int = 0) -> HostTiming:
    """Time the float UpHead of ``task`` in torch on one image's tokens: one warm-up, then the median of ``runs``.

    The weights are the module's initial ones (time does not depend on their
    values); ``seed`` fixes them and the tokens.
    """
    import torch

    from edgemoe.golden.heads import UpHead

    if not isinstance(runs, int) or isinstance(runs, bool) or not 1 <= runs <= 100:
        raise ConfigError("runs", runs, "must be an integer from 1 to 100")
    spec = model_cfg.tasks[model_cfg.task_index(task)]
    torch.manual_seed(seed)
    head = UpHead(model_cfg, spec.out_channels).eval()
    tokens = torch.randn(1, model_cfg.num_tokens, model_cfg.embed_dim)
    times = []
    with torch.no_grad():
        head(tokens)
        for _ in range(runs):
            t0 = time.perf_counter()
            head(tokens)
            times.append((time.perf_counter() - t0) * 1e3)
    return HostTiming(spec.name, statistics.median(times), tuple(times), torch.get_num_threads())
