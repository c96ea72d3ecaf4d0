"""What a testbench run is about: one typed record from the runner, and the context built on it.

The runner serialises a :class:`TbParams` as JSON into one environment
variable, ``EDGEMOE_TB`` (:meth:`TbParams.to_env`); a testbench reads it
back with :func:`read_params`, the only parser.  :class:`TbContext` adds
what the unit testbenches derive from it: the loaded config, the unit's
registry spec, its harness, its (optionally perturbed) expectation, and the
perf JSON the measured figures are merged into.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

#: the environment variable holding a run's :class:`TbParams` as JSON
ENV_TB = "EDGEMOE_TB"


@dataclass(frozen=True)
class TbParams:
    """One testbench run's parameters (the runner writes them, the testbench reads them)."""

    unit: str                           #: registry unit name (``"kernel"`` for the kernel testbench)
    config: str                         #: YAML file of the config
    seed: int = 1
    vectors: int = 1000                 #: random part of the run (words, rows or images)
    perf: str | None = None             #: JSON file the measured figures are merged into
    perturb: bool | str = False         #: self-test: a wrong expectation (a name picks a unit's variant)
    simulator: str = ""
    exhaustive: bool = False            #: a stream unit's back-pressure test sends every input word
    job: str | None = None              #: the kernel testbench's job file (golden data, register map, calls)

    def to_env(self) -> dict[str, str]:
        """``{EDGEMOE_TB: json}``: the environment entry the simulator gets."""
        return {ENV_TB: json.dumps(dataclasses.asdict(self), sort_keys=True)}


def read_params(environ=None) -> TbParams:
    """The run's :class:`TbParams` from ``EDGEMOE_TB`` (of ``environ``, default ``os.environ``)."""
    text = (os.environ if environ is None else environ).get(ENV_TB)
    if not text:
        raise RuntimeError(f"{ENV_TB} is not set: testbenches are started by edgemoe.sim.runner.run_unit "
                           f"or edgemoe.sim.kernel.harness.run_kernel_rtl")
    data = json.loads(text)
    known = {f.name for f in dataclasses.fields(TbParams)}
    if not isinstance(data, dict) or set(data) - known:
        raise RuntimeError(f"{ENV_TB}: unexpected content {text[:200]!r} (fields: {', '.join(sorted(known))})")
    return TbParams(**data)


@dataclass
class TbContext:
    """A unit testbench's view of the run: :class:`TbParams` plus the loaded config."""

    params: TbParams
    cfg: object

    @classmethod
    def from_env(cls) -> "TbContext":
        import torch

        from edgemoe.loading import load_config

        torch.set_num_threads(1)   # small tensors; parallel test workers share the cores
        params = read_params()
        return cls(params, load_config(params.config))

    @property
    def unit(self) -> str:
        return self.params.unit

    @property
    def seed(self) -> int:
        return self.params.seed

    @property
    def n_random(self) -> int:
        return self.params.vectors

    @property
    def perturb(self) -> bool | str:
        return self.params.perturb

    @property
    def exhaustive(self) -> bool:
        return self.params.exhaustive

    @property
    def simulator(self) -> str:
        return self.params.simulator

    @property
    def spec(self):
        from edgemoe.sim.units.registry import get_unit
        return get_unit(self.unit)

    def harness(self, dut, in_fields: tuple[str, ...] | None = None, out_fields: dict[str, bool] | None = None,
                **ports):
        """The unit's :class:`~edgemoe.sim.tb.harness.Harness`: without fields, a stream unit's
        (``in_data`` -> ``out_data``, plain words); else over the named fields (``ports``: other
        handshake names, e.g. ``in_valid="start_valid"``)."""
        from .harness import Harness

        if in_fields is None and out_fields is None:
            return Harness.stream(dut, self.spec.out_type(self.cfg).signed, seed=self.seed)
        return Harness(dut, in_fields or (), out_fields or {}, seed=self.seed, **ports)

    def expected(self, words: list[int]) -> list[int]:
        """A stream unit's exact expectation (golden model), perturbed when the self-test flag is set."""
        spec = self.spec
        if self.perturb:
            if spec.perturb is None:
                raise RuntimeError(f"unit {self.unit} has no perturbation for the self-test")
            with spec.perturb():
                return spec.expected(self.cfg, words).tolist()
        return spec.expected(self.cfg, words).tolist()

    def record(self, **figures) -> None:
        """Merge measured figures into the run's perf JSON."""
        if self.params.perf is None:
            return
        path = Path(self.params.perf)
        data = json.loads(path.read_text()) if path.is_file() else {}
        data.update(figures)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
