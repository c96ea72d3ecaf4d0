"""cocotb driver / monitor for units with named multi-field ports (not a testbench module).

Used by ``tb_softmax``, ``tb_attn_schedule`` and ``tb_topk``.  The same rules
and the same cycle loop as :class:`edgemoe.sim.stream_tb.StreamHarness`
(both are :class:`edgemoe.sim.stream_tb.HandshakeHarness`), with several
input fields and any number of output words per input word:

* an input item is offered after a random gap (``p_gap``); once offered,
  ``*_valid`` and the fields hold until accepted; while not offering the
  fields carry random junk;
* the output's ready is low with probability ``p_stall`` per cycle (in bursts
  of ``stall_burst``);
* a transfer happens on a rising edge where valid and ready were both high,
  sampled in the ReadOnly phase before the edge.
"""
from __future__ import annotations

from edgemoe.sim.stream_tb import HandshakeHarness, Transfer, from_word, to_word


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


class PortHarness(HandshakeHarness):
    """Clock, reset, driver and monitor of one unit (see module doc)."""

    def __init__(self, dut, in_fields: tuple[str, ...], out_fields: dict[str, bool], seed: int = 1,
                 in_valid: str = "in_valid", in_ready: str = "in_ready",
                 out_valid: str = "out_valid", out_ready: str = "out_ready", period_ns: int = 10):
        super().__init__(dut, seed, period_ns, in_valid, in_ready, out_valid, out_ready)
        self.in_fields = [getattr(dut, f) for f in in_fields]
        self.in_bits = [len(h) for h in self.in_fields]
        self.out_fields = {f: (getattr(dut, f), len(getattr(dut, f)), signed) for f, signed in out_fields.items()}

    def _drive_item(self, item: tuple) -> None:
        for h, b, v in zip(self.in_fields, self.in_bits, item):
            h.value = to_word(v, b)

    def _drive_junk(self) -> None:
        for h, b in zip(self.in_fields, self.in_bits):
            h.value = self.rng.getrandbits(b)

    def _zero_inputs(self) -> None:
        for h in self.in_fields:
            h.value = 0

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
        n = len(items)
        timeout = timeout_cycles or (256 + 8 * (n + n_out) * (1 + int(10 * (p_gap + p_stall))) * stall_burst)
        return await self._transfer(items, n_out, p_gap, p_stall, stall_burst, timeout,
                                    lambda acc, out, cyc: f"timeout: {acc}/{n} inputs accepted, {out}/{n_out} "
                                                          f"outputs after {cyc} cycles")

    async def hold(self, items: list[tuple], cycles: int) -> int:
        """Offer ``items`` back to back with the output stalled for ``cycles``; returns how many were taken."""
        taken, _ = await self._hold(items, cycles)
        return taken


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
