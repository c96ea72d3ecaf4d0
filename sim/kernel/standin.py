"""A stand-in for the Vitis-exported kernel top: its control interface and AXI behaviour, not its network.

What it is for: the RTL harness (:mod:`edgemoe.sim.kernel.harness`,
``sim/kernel/tb_kernel.py``) drives the kernel that ``make hls`` exports; without
Vitis HLS there is no such RTL, so the harness itself is tested on this
Amaranth module, which has the same Verilog module name (``edgemoe_vit``),
the same port names and case as Vitis HLS's (``ap_clk``, ``ap_rst_n``,
``interrupt``, ``s_axi_control_*``, ``m_axi_<bundle>_*`` with the full AXI4
signal set of :data:`edgemoe.sim.kernel.rtl.M_AXI_SIGNALS`, 64-bit addresses,
data width ``cfg.hardware.axi_width``), and the same control register map.
It computes ONE tap for real (``pixels``); it is not the accelerator.

Control slave (every offset and bit from :mod:`edgemoe.hls.interface`):

* ``ap_ctrl``: ap_start (set by writing 1, cleared when the kernel is ready for
  the next start unless auto_restart), ap_done and ap_ready (clear on read, as
  Vitis HLS's ap_ctrl_hs), ap_idle, auto_restart; ``gie``, ``ier``, ``isr``
  (set on ap_done / ap_ready when enabled, toggle on write); ``interrupt`` =
  gie and any isr bit;
* pointer arguments: low / high words (byte-strobed writes, read back);
  scalars at their C width (``ap_uint<8>`` task, ``ap_uint<16>`` num_images and tap);
* output scalars ``config_hash`` and ``status`` (read-only) with their control
  words holding ap_vld (set when the kernel writes the output, clear on read).

Behaviour after ap_start, mirroring the top function of
``hls/templates/edgemoe_vit.cpp.j2``:

1. writes ``config_hash`` = :func:`~edgemoe.hls.interface.config_hash32` (cfg);
2. ``task >= tasks`` -> status ``bad_task``; ``tap != TAP_NONE`` and
   ``tap >= taps`` -> ``bad_tap``; both end the call without memory traffic;
3. tap ``pixels`` (id 0): status ``ok``, then per image ``i < num_images`` it
   reads the image's pixel words (``image + i * C*H*W`` words) with AXI4 INCR
   burst reads on the image's bundle and writes them, zero-extended to output
   words, to ``activations + i * MAX_TAP_WORDS`` words (``MAX_TAP_WORDS``: the
   plan's tap-call stride, whole bus words) with AXI4 burst writes on the
   activations' bundle: bursts of at most 256 beats that never cross a 4 KB
   boundary, whole bus words as the kernel's ``act_beat_t`` writes (the last
   one's words past the region zero; a pointer off the bus word, which the
   kernel's cannot be, gets a partial first beat), WLAST on each burst's last
   beat, ap_done only after every write response;
4. any other valid tap, and TAP_NONE (the whole network): status
   :data:`STATUS_NOT_IMPLEMENTED` ("not implemented by the stand-in"), then ap_done.

The pixel path moves one word per clock (an R beat is held until all its words
have gone into the W beat being packed); it does not model the kernel's timing.
The weights' bundle stays idle, and the ID / USER / RESP fields of the AXI
responses are ignored (the stand-in issues one ID and does not act on error responses).  Pointers must be aligned
to their word size (as C pointers are).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from amaranth import Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.hdl import ClockDomain, Value

from edgemoe.hls.interface import CONTROL_REGISTERS, STATUS, TOP, kernel_args, register_map

from ..units.softmax import eq_const, pick
from .rtl import (CONTROL_PREFIX, M_AXI_SIGNALS, S_AXI_SIGNALS, KernelRTL, bundles, control_addr_bits,
                         m_axi_prefix)

#: status value of the stand-in for a valid tap it does not compute (and for TAP_NONE); not a kernel status
STATUS_NOT_IMPLEMENTED = 0x100
#: the kernel's status values plus the stand-in's own
STANDIN_STATUS = {**STATUS, "not_implemented_by_standin": STATUS_NOT_IMPLEMENTED}
assert STATUS_NOT_IMPLEMENTED not in STATUS.values()

UNIT = "kernel_standin"
AXI_BURST_INCR = 1
AXI_CACHE = 3           # Vitis HLS's default C_M_AXI_*_CACHE_VALUE (bufferable, modifiable)
AXI_MAX_BEATS = 256     # AXI4 INCR burst length limit
AXI_BOUNDARY = 4096     # bursts never cross a 4 KB boundary


def _eq(v, c: int) -> Value:
    """``v == c`` (for 0 as ``~v.any()``: Yosys prints ``v == 0`` as a logical not of a word, which
    Verilator's lint flags)."""
    return eq_const(v, c)


def _min(a, b) -> Value:
    return Mux(a < b, a, b)


def _log2(n: int) -> int:
    if n <= 0 or n & (n - 1):
        raise ValueError(f"{n} is not a power of two")
    return n.bit_length() - 1


class KernelStandin(Elaboratable):
    """The stand-in top ``edgemoe_vit`` for ``cfg`` (see the module doc); ports as Vitis HLS names them.

    RTL style (lint-clean under ``verilator -Wall`` and exact on Icarus): one clock domain ``ap``
    (its clock port is ``ap_clk``; its reset, ``ap_rst`` = ``~ap_rst_n``, synchronous as Vitis's),
    combinational values as plain expressions (continuous assignments: no ``always @*`` block, which
    Icarus would not evaluate at time 0), state machines as registers compared in ``if`` chains.
    """

    def __init__(self, cfg):
        from edgemoe.hls.interface import TAP_NONE, config_hash32
        from edgemoe.hls.plan import KernelPlan

        plan = KernelPlan.from_config(cfg)
        self.cfg = cfg
        self.regmap = register_map(cfg)["registers"]
        self.args = kernel_args(cfg)
        self.tasks = len(cfg.model.tasks)
        self.num_taps = len(plan.taps)
        self.tap_pixels = plan.tap_id["pixels"]
        self.tap_none = TAP_NONE
        self.config_hash = config_hash32(cfg)
        self.pixel_bits = plan.pixel_word_bits
        self.out_bits = plan.out_word_bits
        self.max_tap_words = plan.max_tap_words
        self.pixel_words = plan.tap_words["pixels"]
        self.data_bits = cfg.hardware.axi_width
        self.addr_bits = 64
        if self.pixel_bits > self.out_bits:
            raise ValueError(f"{self.pixel_bits}-bit pixel words do not fit {self.out_bits}-bit output words")
        self.bundles = bundles(cfg)
        self.bundle_of = cfg.hardware.bundle_of
        self.ctrl_addr_bits = control_addr_bits(cfg)

        self.domain = ClockDomain("ap")                  # clock port "ap_clk", reset "ap_rst"
        self.ap_clk = self.domain.clk
        self.ap_rst_n = Signal(name="ap_rst_n")
        self.interrupt = Signal(name="interrupt")
        widths = {"addr": self.ctrl_addr_bits}
        self.s_axi = {n: Signal(widths.get(w, w), name=f"{CONTROL_PREFIX}_{n}") for n, _, w in S_AXI_SIGNALS}
        mw = {"addr": self.addr_bits, "data": self.data_bits, "strb": self.data_bits // 8, "id": 1, "user": 1}
        self.m_axi = {b: {n: Signal(mw.get(w, w), name=f"{m_axi_prefix(b)}_{n}") for n, _, w in M_AXI_SIGNALS}
                      for b in self.bundles}

    @property
    def ports(self) -> list[Signal]:
        out = [self.ap_clk, self.ap_rst_n]
        for b in self.bundles:
            out += list(self.m_axi[b].values())
        return out + list(self.s_axi.values()) + [self.interrupt]

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        m.domains.ap = self.domain
        m.d.comb += self.domain.rst.eq(~self.ap_rst_n)
        core = self._control_slave(m)
        self._core(m, core)
        return m

    # --- s_axilite: the register map of hls/interface.py ------------------------------------------
    def _control_slave(self, m: Module) -> dict:
        s, regs, sync = self.s_axi, self.regmap, m.d.ap
        bits = {name: r["bits"] for name, r in CONTROL_REGISTERS.items()}
        ctl = bits["ap_ctrl"]

        ap_start, ap_done, ap_ready, auto_restart = (Signal(name=n) for n in
                                                     ("int_ap_start", "int_ap_done", "int_ap_ready",
                                                      "int_auto_restart"))
        gie = Signal(name="int_gie")
        ier = Signal(2, name="int_ier")                  # [ap_done, ap_ready]
        isr = Signal(2, name="int_isr")
        ptrs = {a.name: Signal(64, name=f"int_{a.name}") for a in self.args if a.kind == "m_axi"}
        scalars = {a.name: Signal(a.value_bits, name=f"int_{a.name}") for a in self.args if a.kind == "scalar"}
        outs = {a.name: Signal(32, name=f"int_{a.name}") for a in self.args if a.kind == "output"}
        out_vld = {a.name: Signal(name=f"int_{a.name}_ap_vld") for a in self.args if a.kind == "output"}
        # core -> slave: set by _core
        core = {"idle": Signal(name="core_idle"), "done": Signal(name="core_done"),
                "out_write": {n: Signal(name=f"core_{n}_write") for n in outs},
                "ap_start": ap_start, "ptrs": ptrs, "scalars": scalars,
                **self._decide(scalars["task"], scalars["tap"])}
        core["out_value"] = {"config_hash": Const(self.config_hash, 32), "status": core["status"]}
        idle, done_pulse = core["idle"], core["done"]

        # write channel: address, then data, then response (Vitis's WRIDLE / WRDATA / WRRESP)
        W_IDLE, W_DATA, W_RESP = 0, 1, 2
        wstate = Signal(2, name="ctrl_wstate")
        waddr = Signal(self.ctrl_addr_bits, name="ctrl_waddr")
        m.d.comb += [s["AWREADY"].eq(_eq(wstate, W_IDLE)), s["WREADY"].eq(_eq(wstate, W_DATA)),
                     s["BVALID"].eq(_eq(wstate, W_RESP)), s["BRESP"].eq(0)]
        with m.If(_eq(wstate, W_IDLE) & s["AWVALID"]):
            sync += [waddr.eq(s["AWADDR"]), wstate.eq(W_DATA)]
        with m.Elif(_eq(wstate, W_DATA) & s["WVALID"]):
            sync += wstate.eq(W_RESP)
        with m.Elif(_eq(wstate, W_RESP) & s["BREADY"]):
            sync += wstate.eq(W_IDLE)
        w_hs = _eq(wstate, W_DATA) & s["WVALID"]
        wdata, wstrb = s["WDATA"], s["WSTRB"]

        def wr(offset: int) -> Value:
            return w_hs & _eq(waddr, offset)

        def masked(old: Value) -> Value:
            """``old`` (at most 32 bits, at bit 0 of the data word) with the strobed bytes of WDATA."""
            return Cat(*[Mux(wstrb[i // 8], wdata[i:i + min(8, len(old) - i)], old[i:i + min(8, len(old) - i)])
                         for i in range(0, len(old), 8)])

        # read channel: address, then data (Vitis's RDIDLE / RDDATA); RVALID and RDATA are the registers
        rvalid, rdata = s["RVALID"], s["RDATA"]
        m.d.comb += [s["ARREADY"].eq(~rvalid), s["RRESP"].eq(0)]
        ar_hs = ~rvalid & s["ARVALID"]
        raddr = s["ARADDR"]
        with m.If(ar_hs):
            sync += rvalid.eq(1)
        with m.Elif(s["RREADY"]):
            sync += rvalid.eq(0)

        def rd(offset: int) -> Value:
            return ar_hs & _eq(raddr, offset)

        def word(fields: dict[int, Value]) -> Value:
            """A 32-bit read word with ``fields`` {bit position: 1-bit value}."""
            return Cat(*[fields.get(i, Const(0, 1)) for i in range(32)])

        # ap_ctrl
        o = regs["ap_ctrl"]["offset"]
        with m.If(wr(o) & wstrb[0]):
            with m.If(wdata[ctl["ap_start"]]):
                sync += ap_start.eq(1)
            sync += auto_restart.eq(wdata[ctl["auto_restart"]])
        with m.If(rd(o)):                                          # clear on read ...
            sync += [ap_done.eq(0), ap_ready.eq(0)]
        with m.If(done_pulse):                                     # ... unless set in the same cycle
            sync += [ap_done.eq(1), ap_ready.eq(1), ap_start.eq(auto_restart)]
        reads: dict[int, Value] = {o: word({ctl["ap_start"]: ap_start, ctl["ap_done"]: ap_done,
                                            ctl["ap_idle"]: idle, ctl["ap_ready"]: ap_ready,
                                            ctl["auto_restart"]: auto_restart})}
        # gie / ier / isr
        g = bits["gie"]["global_interrupt_enable"]
        with m.If(wr(regs["gie"]["offset"]) & wstrb[0]):
            sync += gie.eq(wdata[g])
        ier_bits = [bits["ier"]["ap_done"], bits["ier"]["ap_ready"]]
        isr_bits = [bits["isr"]["ap_done"], bits["isr"]["ap_ready"]]
        with m.If(wr(regs["ier"]["offset"]) & wstrb[0]):
            sync += ier.eq(Cat(*[wdata[b] for b in ier_bits]))
        for i in range(2):                                         # toggle on write; events win
            with m.If(wr(regs["isr"]["offset"]) & wstrb[0] & wdata[isr_bits[i]]):
                sync += isr[i].eq(~isr[i])
            with m.If(done_pulse & ier[i]):                        # ap_done and ap_ready coincide here
                sync += isr[i].eq(1)
        m.d.comb += self.interrupt.eq(gie & isr.any())
        reads[regs["gie"]["offset"]] = word({g: gie})
        reads[regs["ier"]["offset"]] = word({b: ier[i] for i, b in enumerate(ier_bits)})
        reads[regs["isr"]["offset"]] = word({b: isr[i] for i, b in enumerate(isr_bits)})

        # pointers (low / high words) and scalars
        for name, p in ptrs.items():
            base = regs[name]["offset"]
            for half in range(2):
                sl = p[32 * half:32 * half + 32]
                with m.If(wr(base + 4 * half)):
                    sync += sl.eq(masked(sl))
                reads[base + 4 * half] = sl
        for name, v in scalars.items():
            off = regs[name]["offset"]
            with m.If(wr(off)):
                sync += v.eq(masked(v))
            reads[off] = v
        # outputs: data word (read-only) and its control word with ap_vld (clear on read)
        for name, v in outs.items():
            off, ctrl_off = regs[name]["offset"], regs[name]["ctrl_offset"]
            with m.If(rd(ctrl_off)):
                sync += out_vld[name].eq(0)
            with m.If(core["out_write"][name]):
                sync += [v.eq(core["out_value"][name]), out_vld[name].eq(1)]
            reads[off] = v
            reads[ctrl_off] = word({regs[name]["ap_vld_bit"]: out_vld[name]})
        # the read data register: a multiplexer chain over the map (unmapped words read 0)
        value: Value = Const(0, 32)
        for off, val in sorted(reads.items(), reverse=True):
            value = Mux(_eq(raddr, off), val, value)
        with m.If(ar_hs):
            sync += rdata.eq(value)
        return core

    # --- the kernel's behaviour --------------------------------------------------------------------
    def _decide(self, task: Value, tap: Value) -> dict:
        """The checks of the top function and the status they give (the stand-in's own for other taps)."""
        bad_task = task >= self.tasks
        bad_tap = ~_eq(tap, self.tap_none) & (tap >= self.num_taps)
        pixels = _eq(tap, self.tap_pixels)
        status = Mux(bad_task, STATUS["bad_task"], Mux(bad_tap, STATUS["bad_tap"],
                                                       Mux(pixels, STATUS["ok"], STATUS_NOT_IMPLEMENTED)))
        return {"bad_task": bad_task, "bad_tap": bad_tap, "pixels": pixels, "status": status}

    def _core(self, m: Module, c: dict) -> None:
        sync = m.d.ap
        W = self.data_bits
        B = W // 8                            # bytes per beat
        lb = _log2(B)
        P, O = self.pixel_bits, self.out_bits
        pb, ob = P // 8, O // 8
        lanes_r, lanes_w = W // P, W // O
        n_words = self.pixel_words
        pix_bytes = n_words * pb                                  # one image's pixels
        out_bytes = n_words * ob                                  # one image's output words
        stride = self.max_tap_words * ob                          # output stride per image (a tap call)
        max_beats = max(pix_bytes, out_bytes) // B + 2
        beat_shape = range(max_beats + 1)
        image_bus = self.m_axi[self.bundle_of["image"]]
        act_bus = self.m_axi[self.bundle_of["activations"]]
        ptrs, sc = c["ptrs"], c["scalars"]
        num_images = sc["num_images"]

        def beats_of(addr: Value, nbytes: int) -> Value:
            """Beats covering ``nbytes`` from byte address ``addr``."""
            return ((addr[:lb] + (nbytes + B - 1)) >> lb)[:len(Signal(beat_shape))]

        def burst_len(addr: Value, left: Value) -> Value:
            """Beats of the next INCR burst: at most 256, never across a 4 KB boundary (addr beat-aligned)."""
            to_4k = (Cat(~addr[lb:12], Const(0, 1)) + 1)[:13 - lb] if lb < 12 else Const(1, 1)
            return _min(_min(left, Const(AXI_MAX_BEATS, 9)), to_4k)

        def aligned(addr: Value) -> Value:
            return Cat(Const(0, lb), addr[lb:])

        # every m_axi output driven: constants of Vitis's adapters, channels of unused directions idle
        for bus in self.m_axi.values():
            m.d.comb += [bus["AWID"].eq(0), bus["AWSIZE"].eq(lb), bus["AWBURST"].eq(AXI_BURST_INCR),
                         bus["AWLOCK"].eq(0), bus["AWCACHE"].eq(AXI_CACHE), bus["AWPROT"].eq(0), bus["AWQOS"].eq(0),
                         bus["AWREGION"].eq(0), bus["AWUSER"].eq(0), bus["WID"].eq(0), bus["WUSER"].eq(0),
                         bus["ARID"].eq(0), bus["ARSIZE"].eq(lb), bus["ARBURST"].eq(AXI_BURST_INCR),
                         bus["ARLOCK"].eq(0), bus["ARCACHE"].eq(AXI_CACHE), bus["ARPROT"].eq(0), bus["ARQOS"].eq(0),
                         bus["ARREGION"].eq(0), bus["ARUSER"].eq(0)]
            if bus is not image_bus:
                m.d.comb += [bus["ARVALID"].eq(0), bus["ARADDR"].eq(0), bus["ARLEN"].eq(0), bus["RREADY"].eq(0)]
            if bus is not act_bus:
                m.d.comb += [bus["AWVALID"].eq(0), bus["AWADDR"].eq(0), bus["AWLEN"].eq(0), bus["WVALID"].eq(0),
                             bus["WDATA"].eq(0), bus["WSTRB"].eq(0), bus["WLAST"].eq(0), bus["BREADY"].eq(0)]

        # control state machine
        IDLE, CHECK, IMG_LOOP, IMG_RUN, FINISH = range(5)
        state = Signal(range(5), name="core_state")
        img = Signal(16, name="img")
        src = Signal(64, name="src")
        dst = Signal(64, name="dst")
        words = Signal(range(n_words + 1), name="words")
        run = _eq(state, IMG_RUN)

        # read engine (image bundle): ARADDR is its address register, the R beat is held in rbuf
        ib = image_bus
        ar_addr = ib["ARADDR"]
        ar_left = Signal(beat_shape, name="ar_left")
        rbuf = Signal(W, name="rbuf")
        rbuf_valid = Signal(name="rbuf_valid")
        rd_lane = Signal(range(max(lanes_r, 2)), name="rd_lane")
        # write engine (activations bundle): AWADDR, and WDATA / WSTRB / WVALID as the beat being packed
        ab = act_bus
        aw_addr = ab["AWADDR"]
        aw_left = Signal(beat_shape, name="aw_left")
        w_addr = Signal(64, name="w_addr")
        w_left = Signal(beat_shape, name="w_left")
        w_burst_left = Signal(9, name="w_burst_left")
        b_pending = Signal(beat_shape, name="b_pending")
        wbuf, wstrb, wbuf_full = ab["WDATA"], ab["WSTRB"], ab["WVALID"]
        wr_lane = Signal(range(max(lanes_w, 2)), name="wr_lane")

        # the call: config_hash and status first (as the top function), then the images
        bad_task, bad_tap, pixels = c["bad_task"], c["bad_tap"], c["pixels"]
        m.d.comb += [c["idle"].eq(_eq(state, IDLE)), c["done"].eq(_eq(state, FINISH)),
                     c["out_write"]["config_hash"].eq(_eq(state, CHECK)),
                     c["out_write"]["status"].eq(_eq(state, CHECK))]
        image_done = (_eq(words, n_words) & ~wbuf_full & _eq(aw_left, 0) & _eq(w_left, 0) & _eq(b_pending, 0))
        with m.If(_eq(state, IDLE)):
            with m.If(c["ap_start"]):
                sync += state.eq(CHECK)
        with m.Elif(_eq(state, CHECK)):
            sync += [img.eq(0), src.eq(ptrs["image"]), dst.eq(ptrs["activations"])]
            sync += state.eq(Mux(~bad_task & ~bad_tap & pixels, IMG_LOOP, FINISH))
        with m.Elif(_eq(state, IMG_LOOP)):
            with m.If(img == num_images):
                sync += state.eq(FINISH)
            with m.Else():
                sync += [ar_addr.eq(aligned(src)), ar_left.eq(beats_of(src, pix_bytes)),
                         aw_addr.eq(aligned(dst)), aw_left.eq(beats_of(dst, out_bytes)),
                         w_addr.eq(aligned(dst)), w_left.eq(beats_of(dst, out_bytes)),
                         w_burst_left.eq(0), words.eq(0),
                         rd_lane.eq(src[_log2(pb):lb] if lanes_r > 1 else 0),
                         wr_lane.eq(dst[_log2(ob):lb] if lanes_w > 1 else 0),
                         state.eq(IMG_RUN)]
        with m.Elif(run):
            with m.If(image_done):
                sync += [img.eq(img + 1), src.eq(src + pix_bytes), dst.eq(dst + stride), state.eq(IMG_LOOP)]
        with m.Elif(_eq(state, FINISH)):
            sync += state.eq(IDLE)

        # AR: INCR bursts over the image's beats
        ar_len = burst_len(ar_addr, ar_left)
        m.d.comb += [ib["ARVALID"].eq(run & ~_eq(ar_left, 0)), ib["ARLEN"].eq(ar_len - 1)]
        with m.If(ib["ARVALID"] & ib["ARREADY"]):
            sync += [ar_addr.eq(ar_addr + (ar_len << lb)), ar_left.eq(ar_left - ar_len)]
        # R: one beat held while its words are taken
        m.d.comb += ib["RREADY"].eq(run & ~rbuf_valid)
        with m.If(ib["RVALID"] & ib["RREADY"]):
            sync += [rbuf.eq(ib["RDATA"]), rbuf_valid.eq(1)]

        # one word per cycle from the R beat into the W beat being packed (zero-extended: pixels are unsigned)
        take = run & rbuf_valid & ~wbuf_full & ~_eq(words, n_words)
        last_word = _eq(words, n_words - 1)
        pixel = pick([rbuf[i * P:(i + 1) * P] for i in range(lanes_r)], rd_lane) if lanes_r > 1 else rbuf[:P]
        with m.If(take):
            sync += words.eq(words + 1)
            for i in range(lanes_w):
                with m.If(_eq(wr_lane, i)):
                    sync += [wbuf[i * O:(i + 1) * O].eq(pixel), wstrb[i * ob:(i + 1) * ob].eq(-1)]
            with m.If(_eq(rd_lane, lanes_r - 1) | last_word):
                sync += [rbuf_valid.eq(0), rd_lane.eq(0)]
            with m.Else():
                sync += rd_lane.eq(rd_lane + 1)
            with m.If(last_word):   # the region's last bus word: whole, its words past the region zero
                for i in range(1, lanes_w):
                    with m.If(wr_lane < i):
                        sync += wstrb[i * ob:(i + 1) * ob].eq(-1)
            with m.If(_eq(wr_lane, lanes_w - 1) | last_word):
                sync += [wbuf_full.eq(1), wr_lane.eq(0)]
            with m.Else():
                sync += wr_lane.eq(wr_lane + 1)

        # AW: INCR bursts over the output beats; W: the packed beats, WLAST from the same burst split
        aw_len = burst_len(aw_addr, aw_left)
        m.d.comb += [ab["AWVALID"].eq(run & ~_eq(aw_left, 0)), ab["AWLEN"].eq(aw_len - 1)]
        aw_hs = ab["AWVALID"] & ab["AWREADY"]
        with m.If(aw_hs):
            sync += [aw_addr.eq(aw_addr + (aw_len << lb)), aw_left.eq(aw_left - aw_len)]
        cur_len = Mux(_eq(w_burst_left, 0), burst_len(w_addr, w_left), w_burst_left)
        m.d.comb += ab["WLAST"].eq(_eq(cur_len, 1))
        with m.If(ab["WVALID"] & ab["WREADY"]):
            sync += [wbuf_full.eq(0), wbuf.eq(0), wstrb.eq(0), w_burst_left.eq(cur_len - 1),
                     w_addr.eq(w_addr + B), w_left.eq(w_left - 1)]
        # B: one response per burst
        m.d.comb += ab["BREADY"].eq(1)
        b_hs = ab["BVALID"] & ab["BREADY"]
        sync += b_pending.eq(b_pending + aw_hs - b_hs)


# --- generation (cached like the RTL units: build/sim/<digest12>/kernel_standin/rtl/) ------------

def _stamp() -> str:
    """The unit sources' stamp plus the stand-in's own sources and the HLS interface files it reads its map from."""
    from ..build import REPO, source_stamp

    h = hashlib.sha256(source_stamp().encode())
    for f in (Path(__file__), Path(__file__).with_name("rtl.py"), *(REPO / "hls" / f for f in
                                                                  ("interface.py", "writer.py", "layout.py"))):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def standin_verilog(cfg, root: Path | None = None, force: bool = False) -> Path:
    """The stand-in's Verilog for ``cfg`` (``build/sim/<digest12>/kernel_standin/rtl/edgemoe_vit.v``), generated
    unless cached; ``standin.json`` beside it records the parameters."""
    from ..build import cached_output, emit_verilog
    from ..results import atomic_write, unit_dir

    rtl = unit_dir(cfg, UNIT, root) / "rtl"

    def make():
        top = KernelStandin(cfg)
        emit_verilog(top, TOP, ports=top.ports, out_dir=rtl)
        info = {"unit": UNIT, "top": TOP, "config": cfg.name, "digest": cfg.digest()[:12],
                "config_hash": top.config_hash, "axi_width": top.data_bits, "bundles": top.bundles,
                "control_addr_bits": top.ctrl_addr_bits, "pixel_word_bits": top.pixel_bits,
                "out_word_bits": top.out_bits, "max_tap_words": top.max_tap_words, "status": STANDIN_STATUS,
                "implements": ["pixels"]}
        atomic_write(rtl / "standin.json", json.dumps(info, indent=2) + "\n")

    return cached_output(rtl / f"{TOP}.v", _stamp(), make, force)


def standin_rtl(cfg, root: Path | None = None) -> KernelRTL:
    """The stand-in as a :class:`~edgemoe.sim.kernel.rtl.KernelRTL` (origin "stand-in")."""
    path = standin_verilog(cfg, root)
    return KernelRTL([path], TOP, [], "stand-in", path.parent)
