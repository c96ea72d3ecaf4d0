"""Quick check of a stream unit in Amaranth's own Python simulator (no HDL toolchain).

The cocotb testbenches (Icarus, Verilator) are the verification of record;
this is a fast companion for sweeping many precision profiles: it pushes
words through the same Amaranth design at full rate and returns the outputs.
"""
from __future__ import annotations

from amaranth.sim import Simulator


def simulate_stream(unit, words: list[int], max_cycles: int | None = None) -> list[int]:
    """Outputs of StreamUnit ``unit`` for ``words`` (full rate, consumer always ready)."""
    sim = Simulator(unit)
    sim.add_clock(1e-8)
    got: list[int] = []
    limit = max_cycles or 4 * len(words) + 64

    async def bench(ctx):
        ctx.set(unit.out_ready, 1)
        i = cycles = 0
        while len(got) < len(words):
            if i < len(words):
                ctx.set(unit.in_data, words[i])
                ctx.set(unit.in_valid, 1)
            else:
                ctx.set(unit.in_valid, 0)
            _, _, in_ready, out_valid, out_data = await ctx.tick().sample(
                unit.in_ready, unit.out_valid, unit.out_data)
            if i < len(words) and in_ready:
                i += 1
            if out_valid:
                got.append(out_data)
            cycles += 1
            if cycles > limit:
                raise AssertionError(f"pysim: {len(got)}/{len(words)} outputs after {cycles} cycles")

    sim.add_testbench(bench)
    sim.run()
    return got


def check_unit(spec, cfg, words: list[int]) -> list[tuple[int, int, int]]:
    """(input, expected, got) for every mismatch of ``spec``'s unit against its model."""
    got = simulate_stream(spec.make(cfg), words)
    expected = spec.expected(cfg, words).tolist()
    return [(x, e, g) for x, e, g in zip(words, expected, got) if e != g] + \
        ([(None, len(expected), len(got))] if len(got) != len(expected) else [])
