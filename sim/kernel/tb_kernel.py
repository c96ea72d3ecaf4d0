"""cocotb test of the kernel top ``edgemoe_vit``: Vitis-exported RTL or the stand-in, the same way.

The job (a JSON file written by :func:`edgemoe.sim.kernel.harness.run_kernel_rtl`,
named by the run's :class:`~edgemoe.sim.tb.context.TbParams` ``job``, with an ``.npz`` of the
golden inputs and expected words) says everything: the register map (offsets
from ``hls/interface.py``), the buffers (bundle, address, bytes), the calls
(task, tap, images, expected status, expected words per image and their stride),
the expected ``config_hash`` and the status names.  This module only drives and
checks; it computes nothing of the network.

Bench: clock on ``ap_clk``, ``ap_rst_n`` low for 8 cycles; cocotbext-axi's
``AxiLiteMaster`` on ``s_axi_control``; one RAM (an ``AxiRam`` on a
``bytearray``, placed at a 64-bit window) per m_axi bundle -- arguments that
share a bundle share its RAM.  Widths (data, address, ID) are read from the
DUT's ports at run time (Vitis widens m_axi ports up to ``max_widen_bitwidth``).
Vitis's 2-bit AxLOCK is left out of the bus (cocotbext-axi wants 1 bit; the
kernel never locks).  Optional random back-pressure: pause generators on every
channel of every RAM and of the control master.

Per call: every RAM back to its initial content (inputs, everything else a
canary byte), pointer words, task, num_images, tap, then ap_start; ap_ctrl is
polled until ap_done (a cycle limit fails clearly).  A monitor counts cycles
from the W handshake that sets ap_start to the rise of ``interrupt`` (GIE and
IER ap_done enabled).  Checks: ap_done clears on read and ap_idle is up;
``config_hash`` (a mismatch fails the run at once: RTL of another config) and
``status`` with their ap_vld; every RAM byte against the expectation (output
words written at their stride, nothing else touched): the first mismatching
word (image, index, expected, got) and the count; no access outside a RAM's
window.  Results (cycles, statuses, widths) go to the job's results JSON;
problems fail the test with one line each.
"""
from __future__ import annotations

import json
import logging
import random
import warnings
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from edgemoe.sim.tb.context import read_params

# cocotbext-axi 0.1.28 still uses APIs cocotb 2 deprecates (setimmediatevalue, Task.kill, ...): not ours to fix
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")

CANARY = 0xA5               #: every RAM byte that is not an input, before each call
LITE_TIMEOUT_CYCLES = 10_000


def _sig(dut, name: str):
    """The DUT's port ``name`` (exact case first, then case-insensitive), or None."""
    try:
        return getattr(dut, name)
    except AttributeError:
        pass
    for n in dir(dut):
        if n.lower() == name.lower():
            return getattr(dut, n)
    return None


class WindowRam:
    """An AXI4 slave RAM answering ``[base, base + size)`` of a 64-bit address space.

    cocotbext-axi's ``AxiRam`` machinery (``AxiRamWrite`` / ``AxiRamRead`` on a shared
    ``bytearray``); an access outside the window is recorded (the slave answers SLVERR).
    """

    def __init__(self, name: str, bus, clock, reset, base: int, size: int):
        from cocotbext.axi.axi_ram import AxiRamRead, AxiRamWrite

        self.name, self.base, self.size = name, base, size
        self.mem = bytearray(size)
        self.violations: list[str] = []
        self.bytes_read = 0
        self.bytes_written = 0
        ram = self

        class _Write(AxiRamWrite):
            async def _write(self, address, data):
                ram._check(address, len(data), "write")
                ram.bytes_written += len(data)
                self.write(address - ram.base, data)

        class _Read(AxiRamRead):
            async def _read(self, address, length):
                ram._check(address, length, "read")
                ram.bytes_read += length
                return self.read(address - ram.base, length)

        self.write_if = _Write(bus.write, clock, reset, reset_active_level=False, mem=self.mem)
        self.read_if = _Read(bus.read, clock, reset, reset_active_level=False, mem=self.mem)

    def _check(self, address: int, length: int, what: str) -> None:
        if not (self.base <= address and address + length <= self.base + self.size):
            self.violations.append(f"{self.name}: {what} of {length} bytes at {address:#x}, outside the RAM "
                                   f"window [{self.base:#x}, {self.base + self.size:#x})")
            raise IndexError(self.violations[-1])

    def channels(self):
        return [self.write_if.aw_channel, self.write_if.w_channel, self.write_if.b_channel,
                self.read_if.ar_channel, self.read_if.r_channel]


def _axi_bus(dut, prefix: str):
    """cocotbext-axi's AxiBus on ``<prefix>_*`` without AxLOCK wider than 1 bit (Vitis's are 2 bits)."""
    from cocotbext.axi import AxiBus

    bus = AxiBus.from_prefix(dut, prefix)
    for ch, sig in ((bus.write.aw, "awlock"), (bus.read.ar, "arlock")):
        if hasattr(ch, sig) and len(getattr(ch, sig)) != 1:
            delattr(ch, sig)
            ch._signals.pop(sig, None)
    return bus


def _pauses(rng: random.Random, p: float, burst: int = 1):
    """Endless random pause pattern: paused with probability ``p``, in runs of ``burst`` cycles."""
    while True:
        v = rng.random() < p
        for _ in range(burst if v else 1):
            yield v


class KernelBench:
    def __init__(self, dut, job: dict, data):
        self.dut, self.job, self.data = dut, job, data
        self.regs = job["regmap"]["registers"]
        self.bits = self.regs["ap_ctrl"]["bits"]
        self.log = logging.getLogger("cocotb.tb_kernel")
        self.cycle = 0
        self.start_cycle: int | None = None
        self.irq_cycle: int | None = None
        self.problems: list[str] = []

    # --- set-up -----------------------------------------------------------------------------
    async def start(self) -> None:
        from cocotbext.axi import AxiLiteBus, AxiLiteMaster

        dut, job = self.dut, self.job
        for prefix in [job["control_prefix"], *(b["prefix"] for b in job["rams"].values())]:
            logging.getLogger(f"cocotb.{dut._name}.{prefix}").setLevel(logging.WARNING)
        self.clk, self.rst_n = _sig(dut, "ap_clk"), _sig(dut, "ap_rst_n")
        self.irq = _sig(dut, "interrupt")
        self.clock = Clock(self.clk, job["clock_ns"], unit="ns")
        self.clock.start()
        self.rst_n.value = 0
        self.ctrl = AxiLiteMaster(AxiLiteBus.from_prefix(dut, job["control_prefix"]), self.clk, self.rst_n,
                                  reset_active_level=False)
        self.rams: dict[str, WindowRam] = {}
        self.widths: dict[str, dict] = {}
        for bundle, r in job["rams"].items():
            bus = _axi_bus(dut, r["prefix"])
            ram = WindowRam(bundle, bus, self.clk, self.rst_n, r["base"], r["size"])
            self.rams[bundle] = ram
            self.widths[bundle] = {"data": len(bus.write.w.wdata), "addr": len(bus.write.aw.awaddr),
                                   "id": len(bus.write.aw.awid)}
            if len(bus.read.r.rdata) != self.widths[bundle]["data"]:
                self.problems.append(f"m_axi_{bundle}: RDATA is {len(bus.read.r.rdata)} bits, WDATA "
                                     f"{self.widths[bundle]['data']}")
        self.initial = {b: self._initial_bytes(b) for b in self.rams}
        if job["backpressure"]:
            rng = random.Random(job["seed"])
            for ram in self.rams.values():
                for ch in ram.channels():
                    ch.set_pause_generator(_pauses(random.Random(rng.getrandbits(32)), 0.3, rng.choice((1, 3))))
            for ch in (self.ctrl.write_if.aw_channel, self.ctrl.write_if.w_channel, self.ctrl.write_if.b_channel,
                       self.ctrl.read_if.ar_channel, self.ctrl.read_if.r_channel):
                ch.set_pause_generator(_pauses(random.Random(rng.getrandbits(32)), 0.2))
        cocotb.start_soon(self._monitor())
        for _ in range(8):
            await RisingEdge(self.clk)
        self.rst_n.value = 1
        for _ in range(4):
            await RisingEdge(self.clk)

    def _initial_bytes(self, bundle: str) -> bytes:
        """A RAM's content before every call: the canary, with the input buffers of its arguments."""
        r = self.job["rams"][bundle]
        mem = bytearray([CANARY]) * r["size"]
        for name, buf in self.job["buffers"].items():
            if buf["bundle"] == bundle and buf["input"]:
                raw = self.data[name].tobytes()
                lo = buf["address"] - r["base"]
                mem[lo:lo + len(raw)] = raw
        return bytes(mem)

    async def _monitor(self) -> None:
        """Cycle counter; the cycle of the ap_start write (W handshake) and of the interrupt's rise."""
        d, p = self.dut, self.job["control_prefix"]
        awv, awr, awa = _sig(d, f"{p}_AWVALID"), _sig(d, f"{p}_AWREADY"), _sig(d, f"{p}_AWADDR")
        wv, wr, wd, ws = _sig(d, f"{p}_WVALID"), _sig(d, f"{p}_WREADY"), _sig(d, f"{p}_WDATA"), _sig(d, f"{p}_WSTRB")
        ctrl_off, start_bit = self.regs["ap_ctrl"]["offset"], self.bits["ap_start"]
        last_aw = None
        irq_prev = 0
        while True:
            await RisingEdge(self.clk)
            await ReadOnly()
            self.cycle += 1
            if int(awv.value) and int(awr.value):
                last_aw = int(awa.value)
            if int(wv.value) and int(wr.value) and last_aw == ctrl_off and int(ws.value) & 1 \
                    and (int(wd.value) >> start_bit) & 1:
                self.start_cycle, self.irq_cycle = self.cycle, None
            if self.irq is not None:
                irq = int(self.irq.value)
                if irq and not irq_prev and self.start_cycle is not None and self.irq_cycle is None:
                    self.irq_cycle = self.cycle
                irq_prev = irq

    # --- register access (a slave that never answers fails the test instead of hanging it) -----
    async def _lite(self, coro, what: str):
        from cocotb.triggers import SimTimeoutError, with_timeout

        try:
            return await with_timeout(coro, LITE_TIMEOUT_CYCLES * self.job["clock_ns"], "ns")
        except SimTimeoutError:
            raise AssertionError(f"s_axi_control: {what} not answered within {LITE_TIMEOUT_CYCLES} cycles") from None

    async def write(self, offset: int, value: int) -> None:
        await self._lite(self.ctrl.write_dword(offset, value & 0xFFFF_FFFF), f"write of {offset:#x}")

    async def read(self, offset: int) -> int:
        return await self._lite(self.ctrl.read_dword(offset), f"read of {offset:#x}")

    def bit(self, word: int, name: str) -> int:
        return (word >> self.bits[name]) & 1

    # --- one kernel call ----------------------------------------------------------------------
    async def run_call(self, k: int, call: dict) -> dict:
        job, regs = self.job, self.regs
        label = f"call {k} (task {call['task']}, tap {call['tap_name']}, {call['num_images']} image(s))"
        out = {"task": call["task"], "tap": call["tap"], "tap_name": call["tap_name"],
               "num_images": call["num_images"], "expected_status": call["expect_status"]}
        for bundle, ram in self.rams.items():
            ram.mem[:] = self.initial[bundle]
        for name, buf in job["buffers"].items():
            off = regs[name]["offset"]
            await self.write(off, buf["address"])
            await self.write(off + 4, buf["address"] >> 32)
        for name in ("task", "num_images", "tap"):
            await self.write(regs[name]["offset"], call[name])
        # interrupts: global enable + ap_done, a stale status bit cleared (toggle on write)
        await self.write(regs["gie"]["offset"], 1 << regs["gie"]["bits"]["global_interrupt_enable"])
        await self.write(regs["ier"]["offset"], 1 << regs["ier"]["bits"]["ap_done"])
        isr = await self.read(regs["isr"]["offset"])
        if isr:
            await self.write(regs["isr"]["offset"], isr)
        ctrl = await self.read(regs["ap_ctrl"]["offset"])
        if not self.bit(ctrl, "ap_idle") or self.bit(ctrl, "ap_start"):
            self.problems.append(f"{label}: kernel not idle before ap_start (ap_ctrl {ctrl:#x})")
        self.start_cycle = None
        await self.write(regs["ap_ctrl"]["offset"], 1 << self.bits["ap_start"])
        t0 = self.cycle
        while True:
            for _ in range(job["poll_cycles"]):
                await RisingEdge(self.clk)
            ctrl = await self.read(regs["ap_ctrl"]["offset"])
            if self.bit(ctrl, "ap_done"):
                break
            if self.cycle - t0 > job["max_cycles"]:
                raise AssertionError(f"{label}: timeout, no ap_done within {job['max_cycles']} cycles "
                                     f"(ap_ctrl {ctrl:#x}: ap_start {self.bit(ctrl, 'ap_start')}, "
                                     f"ap_idle {self.bit(ctrl, 'ap_idle')}); raise --max-cycles if it is slow")
        poll_cycles = self.cycle - t0
        if self.irq is None:
            out.update(cycles=poll_cycles, cycles_from="poll")
        elif self.irq_cycle is None or self.start_cycle is None:
            self.problems.append(f"{label}: interrupt did not rise with ap_done (GIE and IER ap_done set)")
            out.update(cycles=poll_cycles, cycles_from="poll")
        else:
            out.update(cycles=self.irq_cycle - self.start_cycle, cycles_from="interrupt")
        if not self.bit(ctrl, "ap_idle"):
            self.problems.append(f"{label}: ap_idle low with ap_done (ap_ctrl {ctrl:#x})")
        again = await self.read(regs["ap_ctrl"]["offset"])
        if self.bit(again, "ap_done"):
            self.problems.append(f"{label}: ap_done did not clear on read (ap_ctrl {again:#x})")
        if self.irq is not None:
            await self.write(regs["isr"]["offset"], await self.read(regs["isr"]["offset"]))
            for _ in range(2):
                await RisingEdge(self.clk)
            if int(self.irq.value):
                self.problems.append(f"{label}: interrupt still high after clearing ISR")

        # outputs: config_hash, status and their ap_vld (clear on read)
        values = {}
        for name in ("config_hash", "status"):
            values[name] = await self.read(regs[name]["offset"])
            vld_bit = regs[name]["ap_vld_bit"]
            vld = (await self.read(regs[name]["ctrl_offset"]) >> vld_bit) & 1
            vld2 = (await self.read(regs[name]["ctrl_offset"]) >> vld_bit) & 1
            if not vld:
                self.problems.append(f"{label}: {name}_ap_vld not set after the call")
            if vld2:
                self.problems.append(f"{label}: {name}_ap_vld did not clear on read")
        names = {int(v): n for n, v in job["status"].items()}
        out.update(config_hash=values["config_hash"], status=values["status"],
                   status_name=names.get(values["status"], f"unknown status {values['status']:#x}"))
        if values["config_hash"] != job["config_hash"]:
            raise AssertionError(
                f"config_hash mismatch: the RTL reports {values['config_hash']:#010x}, config "
                f"{job['config_name']!r} (digest {job['config_digest'][:12]}, edgemoe {job['version']}) expects "
                f"{job['config_hash']:#010x}: this RTL was generated for another config or generator version")
        expect = job["status"][call["expect_status"]]
        if values["status"] != expect:
            note = f"; {job['status_notes'][out['status_name']]}" if out["status_name"] in job["status_notes"] else ""
            self.problems.append(f"{label}: status {values['status']:#x} ({out['status_name']}), expected "
                                 f"{expect} ({call['expect_status']}){note}")
            return out
        out.update(self._compare(label, k, call))
        return out

    def _compare(self, label: str, k: int, call: dict) -> dict:
        """Every RAM byte against the expectation; problems for wrong words and stray writes."""
        job = self.job
        ob = job["out_word_bytes"]
        act = job["buffers"]["activations"]
        exp_words = self.data[f"expected_{k}"] if call["expect_status"] == "ok" else None
        report = {"words_compared": 0, "mismatches": 0, "first_mismatch": None, "stray_bytes": 0}
        for bundle, ram in self.rams.items():
            base = job["rams"][bundle]["base"]
            got = np.frombuffer(bytes(ram.mem), dtype=np.uint8)
            want = np.frombuffer(self.initial[bundle], dtype=np.uint8).copy()
            written = np.zeros(len(want), dtype=bool)
            if exp_words is not None and act["bundle"] == bundle:
                for i in range(call["num_images"]):
                    lo = act["address"] - base + i * call["stride_words"] * ob
                    raw = exp_words[i].astype(np.int64).astype(f"<u{ob}").tobytes()
                    want[lo:lo + len(raw)] = np.frombuffer(raw, dtype=np.uint8)
                    written[lo:lo + len(raw)] = True
                    g = got[lo:lo + len(raw)].view(f"<i{ob}").astype(np.int64)
                    e = exp_words[i].astype(np.int64)
                    bad = np.nonzero(g != e)[0]
                    report["words_compared"] += len(e)
                    if len(bad):
                        if report["first_mismatch"] is None:
                            j = int(bad[0])
                            report["first_mismatch"] = {"image": i, "index": j, "expected": int(e[j]),
                                                        "got": int(g[j])}
                        report["mismatches"] += len(bad)
            stray = np.nonzero((got != want) & ~written)[0]
            if len(stray):
                a = int(stray[0])
                report["stray_bytes"] += len(stray)
                what = next((n for n, b in job["buffers"].items() if b["bundle"] == bundle
                             and b["address"] - base <= a < b["address"] - base + b["bytes"]), None)
                self.problems.append(
                    f"{label}: {len(stray)} byte(s) of m_axi_{bundle} changed outside the expected output words, "
                    f"first at {base + a:#x} ({'inside ' + what if what else 'outside every buffer'}): "
                    f"{int(want[a]):#04x} -> {int(got[a]):#04x}")
            for v in ram.violations:
                self.problems.append(f"{label}: {v}")
            ram.violations.clear()
        if report["mismatches"]:
            f = report["first_mismatch"]
            self.problems.append(
                f"{label}: {report['mismatches']}/{report['words_compared']} output words differ from the golden "
                f"model; first: image {f['image']}, index {f['index']}: expected {f['expected']}, got {f['got']}")
        return report


@cocotb.test()
async def kernel_calls(dut):
    """Every call of the job, bit for bit against the golden words."""
    job = json.loads(Path(read_params().job).read_text())
    data = np.load(job["data"])
    tb = KernelBench(dut, job, data)
    results = {"calls": [], "widths": None, "problems": tb.problems}
    try:
        await tb.start()
        results["widths"] = tb.widths
        for k, call in enumerate(job["calls"]):
            results["calls"].append(await tb.run_call(k, call))
    except AssertionError as e:
        results["fatal"] = str(e)
        raise
    finally:
        results["ram_traffic"] = {b: {"read": r.bytes_read, "written": r.bytes_written}
                                  for b, r in getattr(tb, "rams", {}).items()}
        results["cycles_total"] = tb.cycle
        Path(job["results"]).write_text(json.dumps(results, indent=1))
    if tb.problems:
        raise AssertionError("\n".join(tb.problems))
