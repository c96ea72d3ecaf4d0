"""Design-space exploration: block sizes, attention parallelism, AXI width, weight lanes, precision, batch.

For every grid point the hardware config is built (and validated) like a
user's config; invalid points are skipped with the reason counted.  Each
valid point gets a latency (:func:`edgemoe.perf.cycles.estimate`) and a
resource estimate (:func:`edgemoe.perf.resources.estimate_resources`);
it is feasible when DSP, BRAM36, URAM and LUT stay under ``cap`` of the
board.  The result holds the Pareto fronts (latency vs DSP, latency vs BRAM)
of the feasible points and the chosen point: the fastest feasible one, ties
(within 1 %) to fewer DSPs, then fewer BRAMs.  :meth:`ExploreResult.write_yaml`
writes the chosen hardware + precision as a config file ``load_config`` reads
(``preset: <name>`` plus overrides), for ``edgemoe generate``.

Batch sizes are images per kernel call (``num_images``); they are not a config
field, so the YAML records the chosen batch in a comment.  At a batch above 1
the grid's ``moe_batch`` values up to the batch are tried too
(``hardware.moe_batch``: the kernel runs a call's images in groups of that many
and streams each active expert's weights once per group, at the cost of the
group's MoE state on chip); the dense layers' weights stream once per image.
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edgemoe.boards import BOARDS
from edgemoe.config import Config, ConfigError

from .cycles import MODES, estimate
from .measured import SimResults
from .resources import DEFAULT_CAP, estimate_resources
from .routing import as_routing

#: the default grid (every combination is tried; invalid ones are skipped)
GRID = {
    "cu_in": (8, 16, 32, 64),
    "cu_out": (8, 16, 24, 32, 48, 64, 96),
    "attn_parallel": (1, 2, 4, 5, 6, 8, 12, 16),
    "axi_width": (128, 256, 512),
    # m_axi pointers the weight bus word is striped over (a memory port each): points whose lanes are too
    # narrow or whose bundles outnumber the board's ports are skipped as invalid
    "weight_lanes": (1, 2, 4, 8),
    "profile": ("w16a32", "w16a16", "w8a16"),
    # images whose experts share one weight stream (tried at batches of at least that many)
    "moe_batch": (1, 2, 4, 8),
}
#: a small grid for tests and quick looks
QUICK_GRID = {
    "cu_in": (8, 16, 32),
    "cu_out": (8, 16, 32),
    "attn_parallel": (2, 4),
    "axi_width": (256,),
    "profile": ("w16a32", "w16a16"),
}
TIE = 0.01


@dataclass
class DesignPoint:
    cu_in: int
    cu_out: int
    attn_parallel: int
    axi_width: int
    profile: str
    batch: int
    mode: str
    ms_per_image: float
    dsp: float
    bram36: float
    uram: float
    lut: float
    ff: float
    utilisation: dict
    feasible: bool
    violations: list
    roofline_ratio: float
    weight_mb_per_image: float
    cfg: Config = field(repr=False, default=None)
    weight_lanes: int = 1
    moe_batch: int = 1

    @property
    def images_per_s(self) -> float:
        return 1e3 / self.ms_per_image

    def label(self) -> str:
        lanes = f"/{self.weight_lanes}" if self.weight_lanes > 1 else ""
        return (f"{self.cu_in}x{self.cu_out} P={self.attn_parallel} AXI {self.axi_width}{lanes} {self.profile} "
                f"B={self.batch}" + (f"/{self.moe_batch}" if self.moe_batch > 1 else "")
                + ("" if self.mode == "onchip" else f" [{self.mode}]"))

    def row(self) -> str:
        u = self.utilisation
        return (f"  {self.label():<46}{self.ms_per_image:>9.2f}{self.images_per_s:>8.1f}{self.dsp:>7.0f}"
                f"{100 * u['dsp']:>6.0f}%{self.bram36:>8.1f}{100 * u['bram36']:>6.0f}%{self.uram:>5.0f}"
                f"{self.roofline_ratio:>8.1f}x")


HEADER = (f"  {'design':<46}{'ms/img':>9}{'img/s':>8}{'DSP':>7}{'':>7}{'BRAM36':>8}{'':>7}{'URAM':>5}"
          f"{'vs roof':>9}")


def pareto(points: list[DesignPoint], key: str) -> list[DesignPoint]:
    """Points not dominated in (ms_per_image, ``key``), sorted by ``key``."""
    pts = sorted(points, key=lambda p: (getattr(p, key), p.ms_per_image))
    front, best = [], math.inf
    for p in pts:
        if p.ms_per_image < best - 1e-12:
            front.append(p)
            best = p.ms_per_image
    return front


def choose(points: list[DesignPoint]) -> DesignPoint | None:
    """Fastest feasible point; within 1 % of the fastest, fewer DSPs, then fewer BRAMs."""
    feas = [p for p in points if p.feasible]
    if not feas:
        return None
    best = min(p.ms_per_image for p in feas)
    near = [p for p in feas if p.ms_per_image <= best * (1 + TIE)]
    order = {name: i for i, name in enumerate(GRID["profile"])}  # exact ties: the wider (more accurate) profile
    return min(near, key=lambda p: (p.dsp, p.bram36, p.ms_per_image, order.get(p.profile, 99)))


@dataclass
class ExploreResult:
    base: Config
    board: str
    cap: float
    modes: tuple
    batches: tuple
    points: list[DesignPoint]
    skipped: Counter
    grid: dict

    @property
    def feasible(self) -> list[DesignPoint]:
        return [p for p in self.points if p.feasible]

    @property
    def chosen(self) -> DesignPoint | None:
        return choose(self.points)

    def best(self, batch: int | None = None, mode: str | None = None) -> DesignPoint | None:
        return choose([p for p in self.points if (batch is None or p.batch == batch)
                       and (mode is None or p.mode == mode)])

    def front(self, key: str) -> list[DesignPoint]:
        return pareto(self.feasible, key)

    def summary(self, max_rows: int = 20) -> str:
        b = BOARDS[self.board]
        lines = [f"explored {len(self.points)} design points of {self.base.name} for {self.board} "
                 f"({b.dsp} DSP, {b.bram36} BRAM36, {b.uram} URAM, {b.mem_gbps:g} GB/s), cap {self.cap:.0%}; "
                 f"modes {', '.join(self.modes)}; batches {', '.join(map(str, self.batches))}",
                 f"  feasible: {len(self.feasible)}; infeasible: {len(self.points) - len(self.feasible)}"
                 + (f" ({', '.join(f'{k} {v}' for k, v in self._limit_counts().items())})" if self._limit_counts() else "")]
        if self.skipped:
            lines.append(f"  skipped (invalid config): {sum(self.skipped.values())}")
            for reason, n in self.skipped.most_common():
                lines.append(f"    {n:>5} x {reason}")
        for key, what in (("dsp", "DSP"), ("bram36", "BRAM36")):
            front = self.front(key)
            lines.append(f"Pareto front: latency vs {what} ({len(front)} points)")
            lines.append(HEADER)
            step = max(1, math.ceil(len(front) / max_rows))
            shown = front[::step] + ([front[-1]] if front and (len(front) - 1) % step else [])
            lines += [p.row() for p in shown]
        for batch in self.batches:
            for mode in self.modes:
                bp = self.best(batch, mode)
                lines.append(f"best at batch {batch}, {mode}: " + (f"{bp.label()}: {bp.ms_per_image:.2f} ms/image, "
                                                                   f"{bp.dsp:.0f} DSP, {bp.bram36:.0f} BRAM36, "
                                                                   f"{bp.roofline_ratio:.1f}x roofline"
                                                                   if bp else "no feasible point"))
        c = self.chosen
        lines.append("chosen: " + (f"{c.label()}: {c.ms_per_image:.2f} ms/image ({c.images_per_s:.1f} img/s), "
                                   f"{c.dsp:.0f} DSP, {c.bram36:.0f} BRAM36, {c.uram:.0f} URAM, "
                                   f"{c.roofline_ratio:.1f}x the board roofline" if c else "no feasible point"))
        return "\n".join(lines)

    def _limit_counts(self) -> dict:
        cnt: Counter = Counter()
        for p in self.points:
            for v in p.violations:
                cnt[v] += 1
        return dict(cnt)

    def chosen_config_data(self, point: DesignPoint | None = None) -> dict:
        """The YAML data of a point: ``preset`` (if the model is a preset's) + hardware + precision."""
        from edgemoe.config import PRECISION_PROFILES
        from edgemoe.presets import PRESETS, preset

        p = point or self.chosen
        if p is None:
            raise ConfigError("explore", self.board, "no feasible design point to write")
        cfg = p.cfg
        data: dict = {}
        base_preset = next((n for n in PRESETS if preset(n).model == self.base.model), None)
        if base_preset:
            data["preset"] = base_preset
        else:
            data["model"] = self.base.to_dict()["model"]
        prof = cfg.precision
        if prof.name in PRECISION_PROFILES and PRECISION_PROFILES[prof.name] == prof:
            data["precision"] = prof.name
        else:
            data["precision"] = cfg.to_dict()["precision"]
        data["hardware"] = cfg.to_dict()["hardware"]
        return data

    def write_yaml(self, path: str | Path, point: DesignPoint | None = None) -> Path:
        p = point or self.chosen
        data = self.chosen_config_data(p)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        head = (f"# written by edgemoe explore for board {self.board} (cap {self.cap:.0%}): {p.label()}\n"
                f"# modelled {p.ms_per_image:.2f} ms/image, {p.dsp:.0f} DSP, {p.bram36:.0f} BRAM36, {p.uram:.0f} URAM\n"
                f"# batch {p.batch} = images per kernel call (num_images), not a config field"
                + (f" (experts shared by groups of hardware.moe_batch = {p.moe_batch} images)" if p.batch > 1 else "")
                + (f"\n# mode {p.mode}: Edge-MoE's DRAM dataflow, not what generate builds" if p.mode != "onchip" else "")
                + "\n")
        path.write_text(head + yaml.safe_dump(data, sort_keys=False))
        return path


def _point_config(base: Config, board: str, cu_in, cu_out, par, axi, profile, lanes=None) -> Config:
    from edgemoe.config import precision_profile

    hw = dataclasses.replace(base.hardware, board=board, part="", cu_in=cu_in, cu_out=cu_out, attn_parallel=par,
                             axi_width=axi, weight_lanes=base.hardware.weight_lanes if lanes is None else lanes,
                             moe_batch=1)
    prec = base.precision if profile is None else precision_profile(profile)
    return base.replace(hardware=hw, precision=prec)


def explore(cfg: Config, board: str | None = None, batches=(1,), modes=("onchip",), grid: dict | None = None,
            cap: float = DEFAULT_CAP, routing=None, progress: bool = True, port_limit: bool = False,
            measured: SimResults | None = None) -> ExploreResult:
    """Sweep ``grid`` (default :data:`GRID`; ``profile`` None = keep the config's precision) on ``board``.

    ``port_limit``: cap each AXI bundle at its physical port (ZCU102 HP port, one HBM pseudo-channel).
    ``measured``: what the sim tools wrote (calibrates each point's unit latencies).
    """
    from tqdm import tqdm

    board = board or cfg.hardware.board
    if board not in BOARDS:
        raise ConfigError("--board", board, f"must be one of {', '.join(BOARDS)}")
    for mode in modes:
        if mode not in MODES:
            raise ConfigError("--mode", mode, f"must be one of {', '.join(MODES)}")
    batches = tuple(int(b) for b in batches)
    if any(b < 1 for b in batches):
        raise ConfigError("--batch", list(batches), "batch sizes must be >= 1")
    g = dict(GRID if grid is None else grid)
    profiles = g.get("profile") or (None,)
    lane_counts = g.get("weight_lanes") or (None,)   # None: the config's
    moe_batches = sorted({1, *(int(mb) for mb in g.get("moe_batch") or (1,))})
    rt = as_routing(cfg, routing)
    combos = [(ci, co, par, axi, lanes, prof) for ci in g["cu_in"] for co in g["cu_out"] for par in g["attn_parallel"]
              for axi in g["axi_width"] for lanes in lane_counts for prof in profiles]
    points: list[DesignPoint] = []
    skipped: Counter = Counter()
    bar = tqdm(total=len(combos) * len(batches) * len(modes), desc=f"explore {board}", unit="pt",
               disable=not progress, leave=False)
    for ci, co, par, axi, lanes, prof in combos:
        try:
            pc = _point_config(cfg, board, ci, co, par, axi, prof, lanes)
        except ConfigError as e:
            skipped[f"{e.field}: {str(e.allowed).split(';')[0]}"] += len(batches) * len(modes)
            bar.update(len(batches) * len(modes))
            continue
        for mode in modes:
            for batch in batches:
                groups = [mb for mb in moe_batches if mb <= batch] if mode == "onchip" else []
                for mb in groups or [1]:
                    try:
                        pm = pc if mb == 1 else pc.replace(hardware=dataclasses.replace(pc.hardware, moe_batch=mb))
                    except ConfigError as e:
                        skipped[f"{e.field}: {str(e.allowed).split(';')[0]}"] += 1
                        continue
                    est = estimate(pm, rt, batch, mode, port_limit=port_limit, measured=measured)
                    res = estimate_resources(pm, mode, batch)
                    t, u = res.totals, res.utilisation
                    viol = res.violations(cap)
                    points.append(DesignPoint(ci, co, par, axi, pm.precision.name, batch, mode, est.ms_per_image,
                                              t["dsp"], t["bram36"], t["uram"], t["lut"], t["ff"], u, not viol, viol,
                                              est.roofline.ratio, est.weight_bytes_per_image / 1e6, pm,
                                              pm.hardware.weight_lanes, mb))
                bar.update(1)
    bar.close()
    return ExploreResult(cfg, board, cap, tuple(modes), batches, points, skipped, g)
