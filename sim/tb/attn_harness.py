"""cocotb driver / monitor for units with named multi-field ports (not a testbench module).

Used by ``tb_softmax``, ``tb_attn_schedule`` and ``tb_topk``.  The same rules
as :class:`edgemoe.sim.stream_tb.StreamHarness`, generalised to several
input fields and to any number of output words per input word:

* an input item is offered after a random gap (``p_gap``); once offered,
  ``*_valid`` and the fields hold until accepted; while not offering the
  fields carry random junk;
* the output's ready is low with probability ``p_stall`` per cycle (in bursts
  of ``stall_burst``);
* a transfer happens on a rising edge where valid and ready were both high,
  sampled in the ReadOnly phase before the edge.
"""
from __future__ import annotations

import random

from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from edgemoe.sim.stream_tb import Transfer, from_word, to_word


def check(problems: list[str], what: str = "mismatch against the golden model") -> None:
    if problems:
        raise AssertionError(f"{what}:\n  " + "\n  ".join(problems))


def compare_words(got: list, expected: list, label: str, max_report: int = 12) -> list[str]:
    """Exact, in order, same count (one line per problem)."""
    probs = []
    if len(got) != len(expected):
        probs.append(f"{label}: {len(got)} output words, expected {len(expected)}")
    bad = [(i, e, g) for i, (e, g) in enumerate(zip(expected, got)) if e != g]
    for i, e, g in bad[:max_report]:
        probs.append(f"{label}: word {i}: expected {e} got {g}")
    if len(bad) > max_report:
        probs.append(f"{label}: ... {len(bad) - max_report} more mismatches ({len(bad)}/{len(expected)})")
    return probs


class PortHarness:
    """Clock, reset, driver and monitor of one unit (see module doc)."""

    def __init__(self, dut, in_fields: tuple[str, ...], out_fields: dict[str, bool], seed: int = 1,
                 in_valid: str = "in_valid", in_ready: str = "in_ready",
                 out_valid: str = "out_valid", out_ready: str = "out_ready", period_ns: int = 10):
        self.dut = dut
        self.rng = random.Random(seed)
        self.in_fields = [getattr(dut, f) for f in in_fields]
        self.in_bits = [len(h) for h in self.in_fields]
        self.out_fields = {f: (getattr(dut, f), len(getattr(dut, f)), signed) for f, signed in out_fields.items()}
        self.in_valid, self.in_ready = getattr(dut, in_valid), getattr(dut, in_ready)
        self.out_valid, self.out_ready = getattr(dut, out_valid), getattr(dut, out_ready)
        self.period_ns = period_ns
        self._clock = None

    async def start(self) -> None:
        if self._clock is None:
            self._clock = Clock(self.dut.clk, self.period_ns, unit="ns").start()
        await self.reset()

    async def reset(self, cycles: int = 3) -> None:
        d = self.dut
        self.in_valid.value = 0
        self.out_ready.value = 0
        for h in self.in_fields:
            h.value = 0
        d.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await RisingEdge(d.clk)

    def read(self, name: str) -> int:
        h, bits, signed = self.out_fields[name]
        v = h.value
        if not v.is_resolvable:
            raise AssertionError(f"{name} has X/Z bits while valid: {v}")
        u = v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)
        return from_word(u, bits, signed)

    def read_word(self) -> dict[str, int]:
        return {f: self.read(f) for f in self.out_fields}

    async def transfer(self, items: list[tuple], n_out: int, p_gap: float = 0.0, p_stall: float = 0.0,
                       stall_burst: int = 1, timeout_cycles: int | None = None) -> Transfer:
        """Offer ``items`` (tuples of the input fields) and collect ``n_out`` output words (dicts)."""
        d, rng = self.dut, self.rng
        n = len(items)
        tr = Transfer(list(items))
        timeout = timeout_cycles or (256 + 8 * (n + n_out) * (1 + int(10 * (p_gap + p_stall))) * stall_burst)
        nxt, offering, ready, stall_left, cycle = 0, False, False, 0, 0

        def drive() -> None:
            nonlocal offering, ready, stall_left
            if not offering and nxt < n and (p_gap == 0.0 or rng.random() >= p_gap):
                offering = True
            if offering:
                for h, b, v in zip(self.in_fields, self.in_bits, items[nxt]):
                    h.value = to_word(v, b)
                self.in_valid.value = 1
            else:
                for h, b in zip(self.in_fields, self.in_bits):
                    h.value = rng.getrandbits(b)
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
                raise AssertionError(f"timeout: {nxt}/{n} inputs accepted, {len(tr.outputs)}/{n_out} "
                                     f"outputs after {cycle} cycles")
            drive()
        tr.cycles = cycle
        self.in_valid.value = 0
        return tr

    async def expect_idle(self, cycles: int) -> None:
        """No input, ready high: no output word may appear."""
        self.in_valid.value = 0
        self.out_ready.value = 1
        for c in range(cycles):
            await ReadOnly()
            if int(self.out_valid.value):
                raise AssertionError(f"spurious output word {self.read_word()} {c} cycles after the last one")
            await RisingEdge(self.dut.clk)

    async def hold(self, items: list[tuple], cycles: int) -> int:
        """Offer ``items`` back to back with the output stalled for ``cycles``; returns how many were taken."""
        self.out_ready.value = 0
        taken = 0
        for _ in range(cycles):
            if taken < len(items):
                for h, b, v in zip(self.in_fields, self.in_bits, items[taken]):
                    h.value = to_word(v, b)
                self.in_valid.value = 1
            else:
                self.in_valid.value = 0
            await ReadOnly()
            fired = taken < len(items) and int(self.in_ready.value)
            await RisingEdge(self.dut.clk)
            taken += int(bool(fired))
        self.in_valid.value = 0
        return taken
