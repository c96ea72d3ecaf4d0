"""A simulated PYNQ device: pynq.Overlay, pynq.allocate and the kernel driver run unchanged on any machine.

:class:`SimDevice` is a ``pynq.Device`` subclass.  It registers itself with
pynq's device probing (after every real device class, and it answers the
probe only when pynq found no board), serves ``allocate`` from host memory
with simulated physical addresses, and serves the kernel's AXI-Lite
registers through pynq's ``REGISTER_RW`` MMIO path.  Writing ap_start runs
the C-simulation library of the generated kernel on the memory behind the
addresses written to the pointer registers, then raises ap_done / ap_idle
and fills the config_hash and status output registers, as the hardware does.

A simulated overlay is a ``.simbit`` JSON file (:mod:`edgemoe.host.simbit`;
built by :func:`edgemoe.host.sim_overlay.build_sim_overlay`) naming the csim
library, the register map, the config and the memory placement.
``SimDevice.get_bitfile_metadata`` turns it into the ip_dict pynq expects,
so ``pynq.Overlay("x.simbit", device=sim).edgemoe_vit_0`` is the kernel driver
(``edgemoe_vit_1``, the compute unit, for an Alveo config).

Memory: for a Zynq config every buffer comes from one simulated PS DDR
(``pynq.allocate(..., target=device)``).  For an Alveo config the device is
a simulated HBM card, as XRT sees one: the overlay's memories
(``overlay.HBM0`` ..., :class:`SimMemory`) allocate inside their
pseudo-channel's address range, an allocation without a bank is refused
while the overlay uses several (pynq's "Multiple memories active"), and a
kernel call whose m_axi argument is a buffer outside the bank(s) the
argument is linked to fails with :class:`~edgemoe.host.errors.SimBusError`
naming the argument, the bank it is on and the bank it must be on (XRT
refuses such a buffer).

The kernel runs synchronously inside the register write that sets ap_start;
ap_done is up when that write returns (the driver's timeout only matters for
a hang).  Fault injection: ``SimDevice(hang=True)`` never raises ap_done (``hang=n``:
the next n starts hang); a hung kernel is reset by downloading the overlay again.
"""
from __future__ import annotations

import bisect
import re
import time
import weakref
from dataclasses import dataclass
import numpy as np
import pynq
from pynq.buffer import PynqBuffer

from edgemoe.hls.layout import join_lanes

from .errors import DeviceError, SimBusError
from .simbit import SimParser

#: simulated DDR: allocations start here, aligned to pages
DDR_BASE = 0x8_0000_0000
PAGE = 4096


def _pages(nbytes: int) -> int:
    """Bytes a buffer of ``nbytes`` occupies: whole pages, at least one."""
    return -(-max(nbytes, 1) // PAGE) * PAGE


def pynq_memory_name(tag: str) -> str:
    """The overlay attribute pynq gives a memory bank (``HBM[1]`` -> ``overlay.HBM1``)."""
    return re.sub("[^A-Za-z0-9_]", "", tag)


class SimMemory:
    """One memory bank of the simulated card (pynq's ``XrtMemory``): ``pynq.allocate(..., target=memory)``
    places the buffer inside the bank's address range.  Equal memories are interchangeable."""

    def __init__(self, device: "SimDevice", desc: dict):
        self.device = device
        self.desc = desc
        self.idx = desc["idx"]
        self.tag = desc["tag"]
        self.base_address = desc["base_address"]
        self.size = desc["size"]

    def allocate(self, shape, dtype, **kwargs) -> PynqBuffer:
        # (no ``buf.memory`` as XrtMemory sets: a PynqBuffer with one unmaps its memory when freed)
        return self.device._allocate_in(shape, dtype, self.base_address, self.base_address + self.size, self.tag)

    def __eq__(self, other) -> bool:
        return type(other) is SimMemory and other.device is self.device and other.idx == self.idx

    def __hash__(self) -> int:
        return hash((id(self.device), self.idx))

    def __repr__(self) -> str:
        return f"SimMemory({self.tag!r}, base {self.base_address:#x}, {self.size} bytes)"


# --- the kernel as the simulated PL runs it ---------------------------------------------

@dataclass
class KernelCall:
    """One ap_start seen by the simulated kernel (for tests and statistics)."""

    task: int
    num_images: int
    tap: int
    status: int | None
    seconds: float
    hung: bool = False


class _SimKernel:
    """Register file and behaviour of one edgemoe_vit instance."""

    def __init__(self, device: "SimDevice", parser: SimParser):
        from edgemoe.hls.csim import CsimLibrary

        self.device = device
        self.simbit = parser.simbit
        self.base = parser.simbit["phys_addr"]
        self.range = parser.simbit["addr_range"]
        self.lib = CsimLibrary(parser.library)
        regs = parser.regmap["registers"]
        self.reg = {name: r["offset"] for name, r in regs.items()}
        bits = regs["ap_ctrl"]["bits"]
        self.AP_START, self.AP_DONE = 1 << bits["ap_start"], 1 << bits["ap_done"]
        self.AP_IDLE, self.AP_READY = 1 << bits["ap_idle"], 1 << bits["ap_ready"]
        self.outputs = {r["offset"]: r["ctrl_offset"] for r in regs.values() if r.get("kind") == "output"}
        self.tap_none = parser.regmap["tap_none"]
        #: Alveo: m_axi argument -> (linked range [lo, hi), its tags, the sp target); empty on Zynq
        self.linked: dict[str, tuple[int, int, list[str], str]] = {}
        if parser.alveo:
            targets = {a: b["target"] for b in parser.simbit["memory"]["bundles"] for a in b["args"]}
            for name, reg in parser.ip_dict[parser.simbit["instance"]]["registers"].items():
                if "memory" in reg:
                    tags = reg.get("MBG", [reg["memory"]])
                    banks = [parser.mem_dict[t] for t in tags]
                    self.linked[name] = (min(b["base_address"] for b in banks),
                                         max(b["base_address"] + b["size"] for b in banks), tags, targets[name])
        self.instance = parser.simbit["instance"]
        self.values: dict[int, int] = {}
        self.reset()

    def reset(self) -> None:
        self.values = {}  # every register reads 0 until written
        self.ctrl = self.AP_IDLE

    def contains(self, address: int) -> bool:
        return self.base <= address < self.base + self.range

    def read(self, offset: int) -> int:
        if offset == self.reg["ap_ctrl"]:
            value = self.ctrl
            self.ctrl &= ~(self.AP_DONE | self.AP_READY)  # clear on read, as Vitis HLS's ap_ctrl_hs
            return value
        value = self.values.get(offset, 0)
        if offset in self.outputs.values():  # ap_vld: clear on read
            self.values[offset] = 0
        return value

    def write(self, offset: int, value: int) -> None:
        if offset == self.reg["ap_ctrl"]:
            if value & self.AP_START and self.ctrl & self.AP_IDLE:
                self.ctrl = (self.ctrl & ~self.AP_IDLE) | self.AP_START
                self.run()
            return
        if offset in self.outputs or offset in self.outputs.values():
            return  # read-only output registers
        self.values[offset] = value & 0xFFFF_FFFF

    def _ptr(self, name: str) -> int:
        off = self.reg[name]
        return self.values.get(off, 0) | (self.values.get(off + 4, 0) << 32)

    def check_linked(self, name: str) -> None:
        """Refuse an m_axi argument whose buffer is outside the bank(s) the argument is linked to (Alveo)."""
        if name not in self.linked:
            return
        lo, hi, tags, target = self.linked[name]
        address = self._ptr(name)
        if lo <= address < hi:
            return
        on = self.device.bank_of(address)
        raise SimBusError(
            f"kernel argument {name!r} is a buffer on {on} (address {address:#x}), but {self.instance}.{name} is "
            f"linked to {target} (sp={self.instance}.{name}:{target} in alveo_link.cfg): XRT refuses a buffer "
            f"outside the memory its argument is linked to; allocate it on {target} "
            f"(pynq.allocate(..., target=overlay.{pynq_memory_name(tags[0])}))")

    def _weights(self, sw: dict) -> np.ndarray:
        """The weight words behind the weight pointer registers: the one buffer, or each lane's joined."""
        lanes = sw.get("lanes")
        if not lanes:
            return self.device.memory(self._ptr("weights"), sw["words"], sw["dtype"], "weights")
        per_lane = sw["words"] // len(lanes)
        return join_lanes([self.device.memory(self._ptr(name), per_lane, sw["dtype"], name) for name in lanes],
                          sw["lane_words"])

    def run(self) -> None:
        """ap_start: run the csim library on the buffers behind the pointer registers."""
        task = self.values.get(self.reg["task"], 0) & 0xFF
        n = self.values.get(self.reg["num_images"], 0) & 0xFFFF
        tap = self.values.get(self.reg["tap"], 0) & 0xFFFF
        if self.device._take_hang():
            self.ctrl &= ~self.AP_START  # started, never finishes
            self.device.calls.append(KernelCall(task, n, tap, None, 0.0, hung=True))
            return
        t0 = time.perf_counter()
        sb = self.simbit["buffers"]
        touches_memory = n > 0 and task < self.simbit["tasks"] and (tap == self.tap_none or tap < self.simbit["taps"])
        out_per_image = sb["activations"]["words_per_image"] if tap == self.tap_none \
            else sb["activations"]["tap_words_per_image"]
        try:
            if touches_memory:
                for name in self.linked:
                    self.check_linked(name)
                pix = self.device.memory(self._ptr("image"), n * sb["image"]["words_per_image"],
                                         sb["image"]["dtype"], "image")
                w = self._weights(sb["weights"])
                act = self.device.memory(self._ptr("activations"), n * out_per_image, sb["activations"]["dtype"],
                                         "activations")
            else:  # the kernel returns before reading any buffer
                pix = np.zeros(0, np.int32)
                w = np.zeros(sb["weights"]["words"], np.int32)
                act = None
        except SimBusError:
            self.ctrl = (self.ctrl | self.AP_IDLE) & ~self.AP_START
            raise
        # the buffer's bytes are the kernel's bus words: the library writes the regions it writes in place
        _, config_hash, status = self.lib.run(pix, w, task, n, tap, act)
        for name, value in (("config_hash", config_hash), ("status", status)):
            off = self.reg[name]
            self.values[off] = value & 0xFFFF_FFFF
            self.values[self.outputs[off]] = 1  # ap_vld
        self.ctrl = (self.ctrl | self.AP_DONE | self.AP_IDLE | self.AP_READY) & ~self.AP_START
        self.device.calls.append(KernelCall(task, n, tap, status, time.perf_counter() - t0))


# --- the device --------------------------------------------------------------------------

class SimDevice(pynq.Device):
    """A pynq device backed by host memory and the kernel's C simulation.

    ``hang``: fault injection; True makes every ap_start hang, an integer n
    only the next n.  ``calls`` lists every kernel start (task, images, tap,
    status, seconds).
    """

    #: probed after every real pynq device class (those use 40..200)
    _probe_priority_ = 1000

    @classmethod
    def _probe_(cls):
        # pynq probes device classes in priority order into Device._devices; ours comes last and
        # answers only when no real device was found, so a board always wins automatic selection.
        from pynq.pl_server.device import DeviceMeta

        found = [d for c in (pynq.Device, *DeviceMeta._subclasses.values()) for d in c.__dict__.get("_devices", [])]
        if any(not isinstance(d, SimDevice) for d in found):
            return []
        return [cls("edgemoe_sim0")]

    def __init__(self, tag: str = "edgemoe_sim", hang: bool | int = False):
        super().__init__(tag)
        self.name = "edgemoe-sim"
        self.capabilities = {"REGISTER_RW": True}
        self.hang = hang
        self.calls: list[KernelCall] = []
        self.bitfile_name = None
        self.timestamp = ""
        self.kernel: _SimKernel | None = None
        self._next = DDR_BASE
        self._starts: list[int] = []
        self._allocs: list[tuple[int, int, weakref.ref]] = []

    def __repr__(self) -> str:
        return f"SimDevice({self.tag!r})"

    # --- pynq.Device interface ------------------------------------------------------
    def get_bitfile_metadata(self, bitfile_name, partial: bool = False) -> SimParser:
        return SimParser(bitfile_name)

    def download(self, bitstream, parser=None) -> None:
        """'Program' the simulated PL: load the csim library, reset the kernel's registers."""
        if parser is None:
            parser = self.get_bitfile_metadata(bitstream.bitfile_name)
        self.kernel = _SimKernel(self, parser)
        self.post_download(bitstream, parser)

    def gen_cache(self, bitstream, parser=None) -> None:
        pass

    def allocate(self, shape, dtype, **kwargs) -> PynqBuffer:
        """A zeroed, coherent buffer at a fresh simulated physical address (Zynq: the PS DDR).

        With an Alveo overlay loaded this is pynq's allocation on the default memory, which is
        refused while the overlay uses several banks: allocate on a bank (``target=overlay.HBM1``).
        """
        if self._banks():
            return self.default_memory.allocate(shape, dtype, **kwargs)
        dtype = np.dtype(dtype)
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        addr = self._next
        self._next += _pages(nbytes)
        return self._place(shape, dtype, addr, nbytes)

    # --- memory banks (Alveo) ---------------------------------------------------------
    def _banks(self) -> list[dict]:
        """The loaded overlay's used memory banks (empty for a Zynq overlay or none loaded)."""
        return [m for m in (getattr(self, "mem_dict", None) or {}).values() if m["used"] and not m["streaming"]]

    @property
    def default_memory(self) -> SimMemory:
        """pynq's default memory of an XRT device: the one used bank; an error when there are several."""
        banks = self._banks()
        if not banks:
            raise RuntimeError("No active memories in design")
        if len(banks) > 1:
            raise RuntimeError("Multiple memories active in design: specify the memory using the `target` "
                               f"parameters ({', '.join(b['tag'] for b in banks)} are used)")
        return self.get_memory(banks[0])

    def get_memory(self, desc: dict) -> SimMemory:
        """The memory bank of a ``mem_dict`` entry (what ``overlay.HBM1`` returns)."""
        return SimMemory(self, desc)

    def get_memory_by_name(self, name: str) -> SimMemory:
        for m in (getattr(self, "mem_dict", None) or {}).values():
            if m["tag"] == name:
                return self.get_memory(m)
        raise RuntimeError("Could not find memory")

    def bank_of(self, address: int) -> str:
        """The memory bank holding ``address``, as a phrase for messages."""
        for m in (getattr(self, "mem_dict", None) or {}).values():
            if not m["streaming"] and m["base_address"] <= address < m["base_address"] + m["size"]:
                return m["tag"]
        return "no memory bank of the card (host memory, or an allocation without a bank)"

    def _allocate_in(self, shape, dtype, lo: int, hi: int, tag: str) -> PynqBuffer:
        """A buffer inside [lo, hi): after every earlier one there, else in the first gap freed buffers left."""
        dtype = np.dtype(dtype)
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        need = _pages(nbytes)
        i0, i1 = bisect.bisect_left(self._starts, lo), bisect.bisect_left(self._starts, hi)
        inside = self._allocs[i0:i1]
        top = max((s + _pages(n) for s, n, _ in inside), default=lo)
        if top + need <= hi:
            return self._place(shape, dtype, top, nbytes)
        live = [(s, n) for s, n, ref in inside if ref() is not None]
        self._allocs[i0:i1] = [a for a in inside if a[2]() is not None]  # freed buffers' space is reused
        self._starts = [a[0] for a in self._allocs]
        cur = lo
        for s, n in live + [(hi, 0)]:
            if s - cur >= need:
                return self._place(shape, dtype, cur, nbytes)
            cur = s + _pages(n)
        used = sum(_pages(n) for _, n in live)
        raise DeviceError(f"cannot allocate {nbytes} bytes on {tag}: {hi - lo} bytes, {used} of them in live "
                          f"buffers")

    def _place(self, shape, dtype, addr: int, nbytes: int) -> PynqBuffer:
        """Record a zeroed buffer of ``nbytes`` at ``addr`` (kept sorted by address)."""
        backing = np.zeros(max(nbytes, 1), dtype=np.uint8)
        if len(self._allocs) > 256:  # forget freed buffers (the PS DDR's addresses are never reused)
            self._allocs = [a for a in self._allocs if a[2]() is not None]
            self._starts = [a[0] for a in self._allocs]
        i = bisect.bisect_left(self._starts, addr)
        self._starts.insert(i, addr)
        self._allocs.insert(i, (addr, nbytes, weakref.ref(backing)))
        return PynqBuffer(shape, dtype, buffer=backing, device=self, device_address=addr, bo=addr, coherent=True)

    def read_registers(self, address: int, length: int) -> bytes:
        k = self._kernel_at(address)
        out = b""
        for i in range(0, length, 4):
            out += int(k.read(address + i - k.base)).to_bytes(4, "little")
        return out[:length]

    def write_registers(self, address: int, data: bytes) -> None:
        k = self._kernel_at(address)
        data = bytes(data) + b"\0" * (-len(data) % 4)
        for i in range(0, len(data), 4):
            k.write(address + i - k.base, int.from_bytes(data[i:i + 4], "little"))

    def flush(self, bo, offset, ptr, size) -> None:
        pass  # coherent host memory

    def invalidate(self, bo, offset, ptr, size) -> None:
        pass

    # --- simulation helpers -----------------------------------------------------------
    def reset_kernel(self) -> None:
        """What a PL reset does: the kernel back to idle, registers cleared."""
        if self.kernel is not None:
            self.kernel.reset()

    def _take_hang(self) -> bool:
        if self.hang is True:
            return True
        if isinstance(self.hang, int) and self.hang > 0:
            self.hang -= 1
            return True
        return False

    def _kernel_at(self, address: int) -> _SimKernel:
        if self.kernel is None or not self.kernel.contains(address):
            raise SimBusError(f"no AXI-Lite slave at address {address:#x} on {self.tag} "
                              f"({'no overlay loaded' if self.kernel is None else 'outside the kernel registers'})")
        return self.kernel

    def memory(self, address: int, words: int, dtype, what: str = "buffer") -> np.ndarray:
        """The ``words`` words at a simulated physical address, as a writable numpy view."""
        dtype = np.dtype(dtype)
        nbytes = words * dtype.itemsize
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0:
            start, size, ref = self._allocs[i]
            backing = ref()
            if backing is not None and address + nbytes <= start + size:
                lo = address - start
                return backing[lo:lo + nbytes].view(dtype)
            if backing is None and address < start + max(size, 1):
                raise SimBusError(f"kernel {what} pointer {address:#x}: that buffer was freed")
        raise SimBusError(f"kernel {what} pointer {address:#x}: {nbytes} bytes there are not inside one "
                          f"allocated buffer (allocate with pynq.allocate(..., target=device))")
