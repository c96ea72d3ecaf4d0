"""The cocotb harness of every unit testbench: clock, reset, valid/ready driver and monitor.

:class:`Harness` drives one valid/ready input and one valid/ready output of
a unit and records every handshake with its clock cycle, in one
cycle-by-cycle loop (one coroutine, so it is cheap in simulation).  An input
item is one value per input field (a tuple), and an output word one value
per output field (a dict); :meth:`Harness.stream` is the stream units'
(``in_data`` -> ``out_data``, items and words are plain integers).  Any
number of output words may follow one input item.

* input side: each item is offered after a random gap (probability
  ``p_gap`` per cycle of not offering); once offered, the valid and the
  fields stay high with the same data until accepted (AXI-Stream rule); while
  the valid is low the fields carry random junk, which the unit must ignore;
* output side: the ready is low with probability ``p_stall`` per cycle, or
  in bursts of ``stall_burst`` cycles;
* a word moves on a rising edge where valid and ready were both high,
  sampled in the ReadOnly phase just before the edge.

:func:`backpressure_parts` splits a test's items into three gap / stall
regimes; :func:`reset_idle_test` is the shared ``reset_idle`` test.  The
scoreboard is :mod:`edgemoe.sim.tb.scoreboard`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field


def to_word(value: int, bits: int) -> int:
    """Two's complement bit pattern of ``value`` in ``bits`` bits (as an unsigned int)."""
    return value & ((1 << bits) - 1)


def from_word(word: int, bits: int, signed: bool) -> int:
    if signed and word >> (bits - 1):
        return word - (1 << bits)
    return word


@dataclass
class Transfer:
    """What one :meth:`Harness.transfer` saw: items, output words and handshake cycles."""

    inputs: list
    outputs: list = field(default_factory=list)
    in_cycles: list[int] = field(default_factory=list)
    out_cycles: list[int] = field(default_factory=list)
    cycles: int = 0

    @property
    def latencies(self) -> list[int]:
        """Cycles from an item's input handshake to its output handshake (one word per item, FIFO order)."""
        return [o - i for i, o in zip(self.in_cycles, self.out_cycles)]

    @property
    def initiation_interval(self) -> float:
        """Mean cycles between consecutive input handshakes."""
        if len(self.in_cycles) < 2:
            return float("nan")
        return (self.in_cycles[-1] - self.in_cycles[0]) / (len(self.in_cycles) - 1)


class Harness:
    """Clock, reset, driver and monitor of one unit (see the module doc).

    ``in_fields``: the input ports of an item, in order; ``out_fields``: the
    output ports of a word and whether each is signed.  ``scalar``: one field
    each side, items and words are plain integers (:meth:`stream`).
    """

    def __init__(self, dut, in_fields: tuple[str, ...], out_fields: dict[str, bool], seed: int = 1,
                 period_ns: int = 10, in_valid: str = "in_valid", in_ready: str = "in_ready",
                 out_valid: str = "out_valid", out_ready: str = "out_ready", scalar: bool = False):
        self.dut = dut
        self.rng = random.Random(seed)
        self.period_ns = period_ns
        self.in_valid, self.in_ready = getattr(dut, in_valid), getattr(dut, in_ready)
        self.out_valid, self.out_ready = getattr(dut, out_valid), getattr(dut, out_ready)
        self.out_valid_name = out_valid
        self.in_fields = [getattr(dut, f) for f in in_fields]
        self.in_bits = [len(h) for h in self.in_fields]
        self.out_fields = {f: (getattr(dut, f), len(getattr(dut, f)), signed) for f, signed in out_fields.items()}
        if scalar and (len(self.in_fields) != 1 or len(self.out_fields) != 1):
            raise ValueError("a scalar harness has one input and one output field")
        self.scalar = scalar
        self._clock = None

    @classmethod
    def stream(cls, dut, out_signed: bool, seed: int = 1, period_ns: int = 10) -> "Harness":
        """A stream unit's harness: ``in_data`` -> ``out_data``, plain integer items and words."""
        return cls(dut, ("in_data",), {"out_data": out_signed}, seed=seed, period_ns=period_ns, scalar=True)

    # --- ports ---------------------------------------------------------------------------------

    def drive(self, item) -> None:
        """Put one item on the input fields (a tuple; a plain integer for a scalar harness)."""
        for h, b, v in zip(self.in_fields, self.in_bits, (item,) if self.scalar else item):
            h.value = to_word(v, b)

    def _drive_junk(self) -> None:
        for h, b in zip(self.in_fields, self.in_bits):
            h.value = self.rng.getrandbits(b)

    def _zero_inputs(self) -> None:
        for h in self.in_fields:
            h.value = 0

    def read(self, name: str) -> int:
        """The value of output field ``name`` (X/Z bits are an error)."""
        h, bits, signed = self.out_fields[name]
        v = h.value
        if not v.is_resolvable:
            raise AssertionError(f"{name} has X/Z bits while {self.out_valid_name} is high: {v}")
        u = v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)
        return from_word(u, bits, signed)

    def read_word(self):
        """The output word (a dict of the fields; a plain integer for a scalar harness)."""
        if self.scalar:
            return self.read(next(iter(self.out_fields)))
        return {f: self.read(f) for f in self.out_fields}

    # --- clock and reset -----------------------------------------------------------------------

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

    # --- transfers -----------------------------------------------------------------------------

    async def transfer(self, items: list, n_out: int | None = None, p_gap: float = 0.0, p_stall: float = 0.0,
                       stall_burst: int = 1, timeout_cycles: int | None = None) -> Transfer:
        """Offer ``items`` and collect ``n_out`` output words (default: one per item)."""
        from cocotb.triggers import ReadOnly, RisingEdge

        d, rng = self.dut, self.rng
        n = len(items)
        n_out = n if n_out is None else n_out
        timeout = timeout_cycles or (256 + 8 * (n + n_out) * (1 + int(10 * (p_gap + p_stall))) * stall_burst)
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
                self.drive(items[nxt])
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
                raise AssertionError(f"timeout: {nxt}/{n} inputs accepted, {len(tr.outputs)}/{n_out} outputs "
                                     f"after {cycle} cycles")
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

    async def hold(self, items: list, cycles: int) -> int:
        """Offer ``items`` back to back with the output stalled for ``cycles``; returns how many were
        taken (the unit must stop accepting once full and keep what it took)."""
        from cocotb.triggers import ReadOnly, RisingEdge

        self.out_ready.value = 0
        accepted = 0
        for _ in range(cycles):
            if accepted < len(items):
                self.drive(items[accepted])
                self.in_valid.value = 1
            else:
                self.in_valid.value = 0
            await ReadOnly()
            fired = accepted < len(items) and int(self.in_ready.value)
            await RisingEdge(self.dut.clk)
            accepted += int(bool(fired))
        self.in_valid.value = 0
        return accepted

    async def drain(self, count: int, timeout_cycles: int = 256) -> list:
        """With no input and the output ready, collect ``count`` more output words."""
        from cocotb.triggers import ReadOnly, RisingEdge

        self.in_valid.value = 0
        self.out_ready.value = 1
        out: list = []
        for _ in range(timeout_cycles):
            if len(out) >= count:
                return out
            await ReadOnly()
            if int(self.out_valid.value):
                out.append(self.read_word())
            await RisingEdge(self.dut.clk)
        raise AssertionError(f"drain: {len(out)}/{count} words after {timeout_cycles} cycles")


def backpressure_parts(items: list) -> list[tuple[list, dict]]:
    """``items`` in three thirds, each with the gap / stall knobs of :meth:`Harness.transfer`:
    random gaps and stalls; long stall bursts; a starved input."""
    third = max(len(items) // 3, 1)
    return [(items[:third], dict(p_gap=0.3, p_stall=0.3)),
            (items[third:2 * third], dict(p_gap=0.1, p_stall=0.5, stall_burst=7)),
            (items[2 * third:], dict(p_gap=0.6, p_stall=0.1))]


def reset_idle_test(setup, cycles: int = 24):
    """The ``reset_idle`` cocotb test of a test module: after reset and with no input, no output word.

    ``setup(dut)`` is the module's own ``(ctx, harness)`` factory; the test is
    named and filed as that module's ``reset_idle``.
    """
    import cocotb

    async def reset_idle(dut):
        _, h = setup(dut)
        await h.start()
        await h.expect_idle(cycles)

    reset_idle.__module__ = setup.__module__
    reset_idle.__qualname__ = "reset_idle"
    return cocotb.test()(reset_idle)
