"""Where the kernel's m_axi bundles meet memory on a board: the one source of the placement.

:func:`placement` maps each bundle (and the m_axi arguments on it) to the
board's memory ports (:class:`edgemoe.boards.Board` ``ports``):

* **Alveo** (HBM): each bundle is linked to its own run of HBM
  pseudo-channels, in the order of the kernel's arguments (image, weights,
  activations with the default bundles: ``HBM[0]``, ``HBM[1]``, ``HBM[2]``;
  with ``hardware.weight_lanes`` > 1 each lane's bundle gets its own run, in
  lane order, so the lanes stream from separate pseudo-channels).
  A run is as long as the bundle's data needs: a buffer must lie inside the
  banks its port is linked to and one pseudo-channel holds ``bank_bytes``
  (256 MiB), so weights larger than that span several (``HBM[1:3]``).  A
  longer run adds capacity only, not bandwidth: one bundle is one AXI port,
  at most ``port_gbps``.  The image and activation buffers grow with the
  batch; their bundles get the channels one image needs (one, for any model
  that fits) and the host runs as many images per call as fit there.
* **Zynq** (PS DDR): every port reaches the same memory, so there is no bank
  to choose; each bundle (each weight lane's included) has a PS slave port
  of its own, the board's ``ps_ports`` (HP0..HP3, then HPC0/HPC1 on the
  ZCU102) taken in sorted bundle-name order, as the block design wires them.

The v++ link config (``alveo_link.cfg``) and the block design render from it;
:func:`placement_data` is what the manifest and the simulated overlay record,
so the host reads the placement back instead of deriving it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from edgemoe.config import BUFFERS
from edgemoe.boards import BOARDS
from edgemoe.errors import ConfigError

from .interface import TOP, kernel_args, m_axi_bundles
from .plan import KernelPlan

#: the kernel's instance: the block design's cell (Zynq) or the link config's compute unit (Alveo, ``nk=``)
INSTANCE = {"zynq": f"{TOP}_0", "alveo": f"{TOP}_1"}
#: the memory behind the ports of each flow
MEMORY = {"zynq": "PS DDR", "alveo": "HBM"}
#: Zynq UltraScale+ PS slave port -> n of the PS IP's ``PSU__USE__S_AXI_GP<n>`` switch (the PS's numbering:
#: GP0/GP1 are HPC0/HPC1, GP2..GP5 are HP0..HP3)
PS_PORT_GP = {"S_AXI_HPC0_FPD": 0, "S_AXI_HPC1_FPD": 1, "S_AXI_HP0_FPD": 2, "S_AXI_HP1_FPD": 3,
              "S_AXI_HP2_FPD": 4, "S_AXI_HP3_FPD": 5}


@dataclass(frozen=True)
class BundlePlacement:
    """One m_axi bundle on the board: its arguments and the memory port(s) it is linked to.

    ``banks``: HBM pseudo-channel indices, consecutive (Alveo; empty on Zynq);
    ``hp``: the bundle's place in the board's ``ps_ports`` (Zynq; None on Alveo), ``ps_port`` that port's name.
    """

    bundle: str
    args: tuple[str, ...]
    banks: tuple[int, ...] = ()
    hp: int | None = None
    ps_port: str | None = None

    @property
    def gp(self) -> int:
        """The PS IP's ``S_AXI_GP<n>`` switch that enables ``ps_port`` (Zynq)."""
        return PS_PORT_GP[self.ps_port]

    @property
    def target(self) -> str:
        """Where the bundle is linked: the v++ ``sp`` memory (``HBM[1]``, ``HBM[1:3]``) or the PS port."""
        if self.ps_port is not None:
            return self.ps_port
        lo, hi = self.banks[0], self.banks[-1]
        return f"HBM[{lo}]" if lo == hi else f"HBM[{lo}:{hi}]"

    @property
    def bank_tags(self) -> tuple[str, ...]:
        """The memory banks as XRT's memory topology names them (``HBM[1]``, ``HBM[2]``, ...)."""
        return tuple(f"HBM[{b}]" for b in self.banks)


def buffer_bytes(cfg) -> dict[str, int]:
    """Bytes each m_axi argument's buffer must hold: one image's pixels and output words, the whole weight
    buffer (each weight lane its share)."""
    plan = KernelPlan.from_config(cfg)
    out = {name: plan.buffer_depths[name] * plan.buffer_types[name].itemsize for name in plan.buffer_depths}
    weights = out.pop("weights")
    lanes = plan.lanes.names
    return {"image": out["image"], **dict.fromkeys(lanes, weights // len(lanes)), "activations": out["activations"]}


def placement(cfg) -> list[BundlePlacement]:
    """Every bundle of ``cfg``'s kernel with its memory port(s) on ``cfg.hardware.board``, in argument order.

    ConfigError when the bundles need more ports (pseudo-channels) than the board has.
    """
    h = cfg.hardware
    board = BOARDS[h.board]
    if sorted(h.bundle_of) != sorted(BUFFERS):  # validate() refuses it too; a config built past it stops here
        raise ConfigError("hardware.bundles", dict(h.bundle_of), f"must map exactly the buffers {', '.join(BUFFERS)}")
    bundle_of = m_axi_bundles(cfg)
    names = [a.name for a in kernel_args(cfg) if a.kind == "m_axi"]
    args: dict[str, list[str]] = {}
    for name in names:
        args.setdefault(bundle_of[name], []).append(name)
    if board.flow == "zynq":
        hp = {b: i for i, b in enumerate(sorted(args))}  # validate() keeps len(args) <= board.ports
        return [BundlePlacement(b, tuple(names), hp=hp[b], ps_port=board.ps_ports[hp[b]])
                for b, names in args.items()]
    need = buffer_bytes(cfg)
    out, first = [], 0
    for b, names in args.items():
        count = max(1, math.ceil(sum(need[n] for n in names) / board.bank_bytes))
        out.append(BundlePlacement(b, tuple(names), banks=tuple(range(first, first + count))))
        first += count
    if first > board.ports:
        sizes = ", ".join(f"{p.bundle} ({'+'.join(p.args)}): {len(p.banks)}" for p in out)
        bank = f"{board.bank_bytes >> 20} MiB" if board.bank_bytes % (1 << 20) == 0 else f"{board.bank_bytes} bytes"
        raise ConfigError("model", f"{sum(need[n] for n in KernelPlan.from_config(cfg).lanes.names)} weight bytes",
                          f"the bundles need {first} HBM pseudo-channels of {bank} ({sizes}); board {h.board} has "
                          f"{board.ports}")
    return out


def placement_of(cfg) -> dict[str, BundlePlacement]:
    """m_axi argument name -> its bundle's placement."""
    return {name: p for p in placement(cfg) for name in p.args}


def placement_data(cfg) -> dict:
    """The placement as plain data (the manifest's and the ``.simbit``'s ``memory``)::

        {"board": "u50", "flow": "alveo", "memory": "HBM", "instance": "edgemoe_vit_1",
         "ports": 32, "bank_bytes": 268435456,
         "bundles": [{"bundle": "gmem1", "args": ["weights"], "banks": [1], "target": "HBM[1]"}, ...]}
    """
    board = BOARDS[cfg.hardware.board]
    return {"board": board.name, "flow": board.flow, "memory": MEMORY[board.flow], "instance": INSTANCE[board.flow],
            "ports": board.ports, "bank_bytes": board.bank_bytes,
            "bundles": [{"bundle": p.bundle, "args": list(p.args), "banks": list(p.banks), "target": p.target}
                        for p in placement(cfg)]}
