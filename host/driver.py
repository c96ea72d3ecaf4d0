"""The pynq driver of the edgemoe_vit kernel, bound by its VLNV when an overlay is loaded.

    ol = pynq.Overlay("edgemoe_vit.bit")          # or a .simbit on a SimDevice
    k = ol.edgemoe_vit_0                          # -> EdgeMoEDriver (pynq matched the VLNV)
    k.bind_register_map(json.load(open("edgemoe_vit.regmap.json")))
    k.run(image_buf, weight_buf, act_buf, task=0, num_images=3)   # weight_buf: one buffer per weight lane
                                                                   # where the kernel has several

Every register offset comes from the generated register map (regmap.json,
:func:`edgemoe.hls.interface.register_map`); none is written here.  The
kernel is started with ap_start and finished when it raises ap_done, within
a timeout.
"""
from __future__ import annotations

import time

from pynq import DefaultIP

from edgemoe.hls.interface import VLNVS

from .errors import KernelError, KernelTimeout, OverlayMismatchError

REQUIRED = ("ap_ctrl", "image", "activations", "task", "tap")


def _address(buf) -> int:
    """Physical address of a pynq buffer (or a plain integer address)."""
    if isinstance(buf, int):
        return buf
    addr = getattr(buf, "device_address", None)
    if addr is None:
        raise TypeError("kernel buffers must be pynq buffers (pynq.allocate) or physical addresses")
    return int(addr)


class EdgeMoEDriver(DefaultIP):
    """Register-level driver of one edgemoe_vit instance."""

    #: the VLNVs the driver binds to (:data:`edgemoe.hls.interface.VLNVS`)
    bindto = list(VLNVS)

    def __init__(self, description):
        super().__init__(description=description)
        self.vlnv = description.get("type")
        self.name = description.get("fullpath", "edgemoe_vit")
        self.regmap: dict | None = None
        self._off: dict[str, int] = {}

    # --- register map ----------------------------------------------------------------
    def bind_register_map(self, regmap: dict) -> "EdgeMoEDriver":
        """Take every offset from the generated register map; refuse one that is not this kernel's."""
        regs = regmap.get("registers", {}) if isinstance(regmap, dict) else {}
        lanes = regmap.get("weight_lanes", ["weights"]) if isinstance(regmap, dict) else ["weights"]
        missing = [r for r in (*REQUIRED, *lanes) if r not in regs]
        if missing:
            raise OverlayMismatchError(f"register map for {regmap.get('kernel') if isinstance(regmap, dict) else '?'} "
                                       f"lacks the kernel registers {', '.join(missing)}: not an edgemoe_vit register map")
        self.regmap = regmap
        #: the weight pointer registers, lane 0 first (hls.layout.WeightLanes)
        self.weight_lanes = tuple(lanes)
        self._off = {name: r["offset"] for name, r in regs.items()}
        bits = regs["ap_ctrl"]["bits"]
        self.AP_START, self.AP_DONE = 1 << bits["ap_start"], 1 << bits["ap_done"]
        self.AP_IDLE = 1 << bits["ap_idle"]
        self.tap_none = regmap.get("tap_none", 0xFFFF)
        self.status_names = {v: k for k, v in regmap.get("status", {"ok": 0}).items()}
        return self

    @property
    def supports_batch(self) -> bool:
        """Whether the kernel takes several images per call (a num_images register)."""
        return "num_images" in self._off

    @property
    def has_config_hash(self) -> bool:
        return "config_hash" in self._off

    def _need_map(self) -> None:
        if self.regmap is None:
            raise OverlayMismatchError(f"{self.name}: bind_register_map(regmap.json) before using the kernel")

    # --- control ---------------------------------------------------------------------
    def control(self) -> int:
        """ap_ctrl (reading it clears ap_done on the hardware)."""
        self._need_map()
        return self.read(self._off["ap_ctrl"])

    def is_idle(self) -> bool:
        return bool(self.control() & self.AP_IDLE)

    def start(self, image, weights, activations, task: int, num_images: int = 1, tap: int | None = None) -> None:
        """Write the arguments, then ap_start.  ``weights``: the weight buffer, or a sequence of one buffer per
        weight lane (``weight_lanes``) where the kernel has several; a plain address goes to every lane."""
        self._need_map()
        if isinstance(weights, int):
            lanes = [weights] * len(self.weight_lanes)
        else:
            lanes = list(weights) if isinstance(weights, (list, tuple)) else [weights]
        if len(lanes) != len(self.weight_lanes):
            raise KernelError(f"{self.name} reads its weights through {len(self.weight_lanes)} pointer(s) "
                              f"({', '.join(self.weight_lanes)}); got {len(lanes)} buffer(s)")
        ctrl = self.read(self._off["ap_ctrl"])
        if not ctrl & self.AP_IDLE:
            raise KernelError(f"{self.name} is busy (ap_ctrl={ctrl:#x}, ap_idle=0): a previous call has not "
                              f"finished; reload the overlay to reset it")
        for name, buf in (("image", image), *zip(self.weight_lanes, lanes), ("activations", activations)):
            addr = _address(buf)
            off = self._off[name]
            self.write(off, addr & 0xFFFF_FFFF)
            self.write(off + 4, (addr >> 32) & 0xFFFF_FFFF)
        if num_images != 1 and not self.supports_batch:
            raise KernelError(f"{self.name} has no num_images register: one image per call")
        self.write(self._off["task"], int(task))
        if self.supports_batch:
            self.write(self._off["num_images"], int(num_images))
        self.write(self._off["tap"], self.tap_none if tap is None else int(tap))
        self.write(self._off["ap_ctrl"], self.AP_START)

    def wait(self, timeout: float = 10.0) -> float:
        """Poll until ap_done; returns the seconds waited.  :class:`KernelTimeout` after ``timeout`` s."""
        t0 = time.perf_counter()
        deadline = t0 + timeout
        pause = 0.0
        while True:
            ctrl = self.read(self._off["ap_ctrl"])
            if ctrl & self.AP_DONE:
                return time.perf_counter() - t0
            now = time.perf_counter()
            if now > deadline:
                raise KernelTimeout(f"{self.name} did not raise ap_done within {timeout:g} s "
                                    f"(ap_ctrl={ctrl:#x}: ap_start={int(bool(ctrl & self.AP_START))}, "
                                    f"ap_idle={int(bool(ctrl & self.AP_IDLE))})")
            time.sleep(pause)
            pause = min(max(pause * 2, 1e-5), 1e-3)

    def read_output(self, name: str) -> int:
        return self.read(self._off[name])

    def status(self) -> int:
        return self.read_output("status") if "status" in self._off else 0

    def check_status(self, what: str = "call") -> None:
        st = self.status()
        if st != self.regmap.get("status", {}).get("ok", 0):
            name = self.status_names.get(st, f"status {st}")
            raise KernelError(f"{self.name} refused the {what}: status register = {st} ({name})")

    def run(self, image, weights, activations, task: int, num_images: int = 1, tap: int | None = None,
            timeout: float = 10.0) -> float:
        """start + wait + status check; returns the kernel time in seconds."""
        t0 = time.perf_counter()
        self.start(image, weights, activations, task, num_images, tap)
        self.wait(timeout)
        seconds = time.perf_counter() - t0
        self.check_status(f"call (task {task}, {num_images} image(s), tap {tap if tap is not None else 'none'})")
        return seconds

    def read_config_hash(self, weights=0, timeout: float = 10.0) -> int | None:
        """The kernel's config_hash register, from a call on zero images (reads no buffer); None if absent."""
        self._need_map()
        if not (self.has_config_hash and self.supports_batch):
            return None
        self.start(0, weights, 0, task=0, num_images=0, tap=None)
        self.wait(timeout)
        return self.read_output("config_hash")
