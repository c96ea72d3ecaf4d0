"""Reusable cocotb pieces for valid/ready stream units: driver, monitor, scoreboard.

:class:`StreamHarness` drives ``in_data``/``in_valid`` and ``out_ready`` of a
unit with the ports of :class:`edgemoe.sim.rtl.StreamUnit` and records every
handshake with its clock cycle, in one cycle-by-cycle loop (one coroutine,
so it is cheap in simulation).  The loop is :class:`HandshakeHarness`'s,
which the attention units' multi-field ``PortHarness`` (``sim/tb/attn_harness.py``)
shares:

* input side: each word is offered after a random gap (probability
  ``p_gap`` per cycle of not offering); once offered, ``in_valid`` stays high
  with the same data until accepted (AXI-Stream rule); while ``in_valid`` is
  low ``in_data`` carries random junk, which the unit must ignore;
* output side: ``out_ready`` is low with probability ``p_stall`` per cycle,
  or in bursts of ``stall_burst`` cycles;
* a word moves on a rising edge where valid and ready were both high,
  sampled in the ReadOnly phase just before the edge.

:func:`compare` is the scoreboard (exact integer equality, in order, same
count).  :class:`TbContext` reads what the runner passes through the
environment (``EDGEMOE_SIM_*``): the unit, the config (YAML path), the seed,
the vector count (or exhaustive mode), the perf JSON path and the self-test
perturbation flag.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

ENV_UNIT = "EDGEMOE_SIM_UNIT"
ENV_CONFIG = "EDGEMOE_SIM_CONFIG"
ENV_SEED = "EDGEMOE_SIM_SEED"
ENV_VECTORS = "EDGEMOE_SIM_VECTORS"
ENV_PERF = "EDGEMOE_SIM_PERF"
ENV_PERTURB = "EDGEMOE_SIM_PERTURB"
ENV_SIMULATOR = "EDGEMOE_SIM_SIMULATOR"
ENV_EXHAUSTIVE = "EDGEMOE_SIM_EXHAUSTIVE"


def to_word(value: int, bits: int) -> int:
    """Two's complement bit pattern of ``value`` in ``bits`` bits (as an unsigned int)."""
    return value & ((1 << bits) - 1)


def from_word(word: int, bits: int, signed: bool) -> int:
    if signed and word >> (bits - 1):
        return word - (1 << bits)
    return word


@dataclass
class Transfer:
    """What one :meth:`StreamHarness.transfer` saw: words and handshake cycles."""

    inputs: list[int]
    outputs: list[int] = field(default_factory=list)
    in_cycles: list[int] = field(default_factory=list)
    out_cycles: list[int] = field(default_factory=list)
    cycles: int = 0

    @property
    def latencies(self) -> list[int]:
        """Cycles from a word's input handshake to its output handshake (FIFO order)."""
        return [o - i for i, o in zip(self.in_cycles, self.out_cycles)]

    @property
    def initiation_interval(self) -> float:
        """Mean cycles between consecutive input handshakes."""
        if len(self.in_cycles) < 2:
            return float("nan")
        return (self.in_cycles[-1] - self.in_cycles[0]) / (len(self.in_cycles) - 1)


class HandshakeHarness:
    """Clock, reset, driver and monitor of a unit with one valid/ready input and one output.

    The rules of the module doc, for any mapping of items to ports: a subclass
    says how to drive one input item (:meth:`_drive_item`), junk
    (:meth:`_drive_junk`) and reset values (:meth:`_zero_inputs`), and how to
    read one output word (:meth:`read_word`).  Shared by :class:`StreamHarness`
    and the attention units' ``PortHarness`` (``sim/tb/attn_harness.py``).
    """

    def __init__(self, dut, seed: int = 1, period_ns: int = 10, in_valid: str = "in_valid",
                 in_ready: str = "in_ready", out_valid: str = "out_valid", out_ready: str = "out_ready"):
        self.dut = dut
        self.rng = random.Random(seed)
        self.period_ns = period_ns
        self.in_valid, self.in_ready = getattr(dut, in_valid), getattr(dut, in_ready)
        self.out_valid, self.out_ready = getattr(dut, out_valid), getattr(dut, out_ready)
        self._clock = None

    # --- what a subclass defines -------------------------------------------------------------

    def _drive_item(self, item) -> None:
        raise NotImplementedError

    def _drive_junk(self) -> None:
        raise NotImplementedError

    def _zero_inputs(self) -> None:
        raise NotImplementedError

    def read_word(self):
        raise NotImplementedError

    # --- shared ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the clock (once) and reset the unit."""
        from cocotb.clock import Clock

        if self._clock is None:
            self._clock = Clock(self.dut.clk, self.period_ns, unit="ns").start()
        await self.reset()

    async def reset(self, cycles: int = 3) -> None:
        from cocotb.triggers import RisingEdge

        d = self.dut
        self.in_valid.value = 0
        self.out_ready.value = 0
        self._zero_inputs()
        d.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await RisingEdge(d.clk)

    async def _transfer(self, items: list, n_out: int, p_gap: float, p_stall: float, stall_burst: int,
                        timeout: int, timeout_message) -> Transfer:
        """Offer ``items`` and collect ``n_out`` output words; ``timeout_message(accepted, delivered,
        cycle)`` words the error after ``timeout`` cycles."""
        from cocotb.triggers import ReadOnly, RisingEdge

        d, rng = self.dut, self.rng
        n = len(items)
        tr = Transfer(list(items))
        nxt = 0               # next item to offer
        offering = False
        ready = False
        stall_left = 0
        cycle = 0

        def drive() -> None:
            nonlocal offering, ready, stall_left
            if not offering and nxt < n and (p_gap == 0.0 or rng.random() >= p_gap):
                offering = True
            if offering:
                self._drive_item(items[nxt])
                self.in_valid.value = 1
            else:
                self._drive_junk()
                self.in_valid.value = 0
            if stall_left > 0:
                stall_left -= 1
                ready = False
            elif p_stall and rng.random() < p_stall:
                stall_left = stall_burst - 1
                ready = False
            else:
                ready = True
            self.out_ready.value = int(ready)

        drive()
        while nxt < n or len(tr.outputs) < n_out:
            await ReadOnly()
            if offering and int(self.in_ready.value):
                tr.in_cycles.append(cycle)
                nxt += 1
                offering = False
            if ready and int(self.out_valid.value):
                tr.outputs.append(self.read_word())
                tr.out_cycles.append(cycle)
            await RisingEdge(d.clk)
            cycle += 1
            if cycle > timeout:
                raise AssertionError(timeout_message(nxt, len(tr.outputs), cycle))
            drive()
        tr.cycles = cycle
        self.in_valid.value = 0
        return tr

    async def expect_idle(self, cycles: int) -> None:
        """With no input and the output ready, no output word may appear."""
        from cocotb.triggers import ReadOnly, RisingEdge

        self.in_valid.value = 0
        self.out_ready.value = 1
        for c in range(cycles):
            await ReadOnly()
            if int(self.out_valid.value):
                raise AssertionError(f"spurious output word {self.read_word()} {c} cycles after the last one")
            await RisingEdge(self.dut.clk)

    async def _hold(self, items: list, cycles: int) -> tuple[int, int]:
        """Offer ``items`` back to back with the output stalled for ``cycles``;
        returns (items accepted, cycles in which the output was valid)."""
        from cocotb.triggers import ReadOnly, RisingEdge

        self.out_ready.value = 0
        accepted = 0
        valid_cycles = 0
        for _ in range(cycles):
            if accepted < len(items):
                self._drive_item(items[accepted])
                self.in_valid.value = 1
            else:
                self.in_valid.value = 0
            await ReadOnly()
            fired = accepted < len(items) and int(self.in_ready.value)
            valid_cycles += int(self.out_valid.value)
            await RisingEdge(self.dut.clk)
            accepted += int(bool(fired))
        self.in_valid.value = 0
        return accepted, valid_cycles


class StreamHarness(HandshakeHarness):
    """Clock, reset, driver and monitor of one stream unit (see module doc)."""

    def __init__(self, dut, in_bits: int, in_signed: bool, out_bits: int, out_signed: bool,
                 seed: int = 1, period_ns: int = 10):
        super().__init__(dut, seed, period_ns)
        self.in_bits, self.in_signed = in_bits, in_signed
        self.out_bits, self.out_signed = out_bits, out_signed

    def _drive_item(self, item: int) -> None:
        self.dut.in_data.value = to_word(item, self.in_bits)

    def _drive_junk(self) -> None:
        self.dut.in_data.value = self.rng.getrandbits(self.in_bits)

    def _zero_inputs(self) -> None:
        self.dut.in_data.value = 0

    def read_word(self) -> int:
        v = self.dut.out_data.value
        if not v.is_resolvable:
            raise AssertionError(f"out_data has X/Z bits while out_valid is high: {v}")
        return from_word(v.to_unsigned(), self.out_bits, self.out_signed)

    async def transfer(self, words: list[int], p_gap: float = 0.0, p_stall: float = 0.0,
                       stall_burst: int = 1, timeout_cycles: int | None = None) -> Transfer:
        """Push ``words`` through the unit and collect as many outputs (see module doc)."""
        n = len(words)
        timeout = timeout_cycles or (64 + 4 * n * (1 + int(10 * (p_gap + p_stall))) * stall_burst)
        return await self._transfer(words, n, p_gap, p_stall, stall_burst, timeout,
                                    lambda acc, out, cyc: f"timeout: {acc}/{n} words accepted, "
                                                          f"{out}/{n} delivered after {cyc} cycles")

    async def drain(self, count: int, timeout_cycles: int = 256) -> list[int]:
        """With no input and ``out_ready`` high, collect ``count`` more output words."""
        from cocotb.triggers import ReadOnly, RisingEdge

        d = self.dut
        d.in_valid.value = 0
        d.out_ready.value = 1
        out: list[int] = []
        for _ in range(timeout_cycles):
            if len(out) >= count:
                return out
            await ReadOnly()
            if int(d.out_valid.value):
                out.append(self.read_word())
            await RisingEdge(d.clk)
        raise AssertionError(f"drain: {len(out)}/{count} words after {timeout_cycles} cycles")

    async def fill_and_hold(self, words: list[int], hold: int) -> tuple[int, int]:
        """Offer ``words`` back to back with ``out_ready`` low for ``hold`` cycles.

        Returns (words accepted, cycles in which out_valid was high) -- the
        pipeline must stop accepting once full and keep its words.
        """
        return await self._hold(words, hold)


def backpressure_parts(items: list) -> list[tuple[list, dict]]:
    """``items`` in three thirds, each with the gap / stall knobs of :meth:`HandshakeHarness._transfer`:
    random gaps and stalls; long stall bursts; a starved input."""
    third = max(len(items) // 3, 1)
    return [(items[:third], dict(p_gap=0.3, p_stall=0.3)),
            (items[third:2 * third], dict(p_gap=0.1, p_stall=0.5, stall_burst=7)),
            (items[2 * third:], dict(p_gap=0.6, p_stall=0.1))]


def compare(inputs: list[int], got: list[int], expected: list[int], label: str = "",
            max_report: int = 12) -> list[str]:
    """Scoreboard: exact, in order.  Returns one line per problem (empty = pass)."""
    problems = []
    if len(got) != len(expected):
        problems.append(f"{label}: {len(got)} outputs for {len(expected)} inputs")
    bad = [(k, x, e, g) for k, (x, e, g) in enumerate(zip(inputs, expected, got)) if e != g]
    for k, x, e, g in bad[:max_report]:
        problems.append(f"{label}: word {k}: in {x} (0x{x & (2**64 - 1):x}) expected {e} got {g} (diff {g - e})")
    if len(bad) > max_report:
        problems.append(f"{label}: ... {len(bad) - max_report} more mismatches ({len(bad)}/{len(expected)})")
    return problems


@dataclass
class TbContext:
    """The run's parameters, read from the environment the runner sets."""

    unit: str
    cfg: object
    seed: int
    n_random: int
    perf_path: Path | None
    perturb: bool
    simulator: str
    exhaustive: bool = False

    @classmethod
    def from_env(cls) -> "TbContext":
        import torch

        from edgemoe.config import load_config

        torch.set_num_threads(1)   # small tensors; parallel test workers share the cores
        unit = os.environ[ENV_UNIT]
        cfg = load_config(os.environ[ENV_CONFIG])
        perf = os.environ.get(ENV_PERF)
        return cls(unit, cfg, int(os.environ.get(ENV_SEED, "1")), int(os.environ.get(ENV_VECTORS, "1000")),
                   Path(perf) if perf else None, os.environ.get(ENV_PERTURB, "0") not in ("", "0"),
                   os.environ.get(ENV_SIMULATOR, ""),
                   os.environ.get(ENV_EXHAUSTIVE, "0") not in ("", "0"))

    @property
    def spec(self):
        from .units import get_unit
        return get_unit(self.unit)

    def harness(self, dut) -> StreamHarness:
        ti, to = self.spec.in_type(self.cfg), self.spec.out_type(self.cfg)
        return StreamHarness(dut, ti.bits, ti.signed, to.bits, to.signed, seed=self.seed)

    def expected(self, words: list[int]) -> list[int]:
        """The exact expectation (golden model), perturbed when the self-test flag is set."""
        spec = self.spec
        if self.perturb:
            if spec.perturb is None:
                raise RuntimeError(f"unit {self.unit} has no perturbation for the self-test")
            with spec.perturb():
                return spec.expected(self.cfg, words).tolist()
        return spec.expected(self.cfg, words).tolist()

    def record(self, **figures) -> None:
        """Merge measured figures into the run's perf JSON."""
        if self.perf_path is None:
            return
        data = json.loads(self.perf_path.read_text()) if self.perf_path.is_file() else {}
        data.update(figures)
        self.perf_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
