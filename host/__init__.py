"""host: PYNQ runtime (overlay driver, weight packing, simulated device).

Modules (imported lazily: ``from edgemoe.host import Accelerator`` pulls in pynq only then):

- :mod:`~edgemoe.host.runtime`: :class:`Accelerator` (overlay + driver + weight buffer + heads; ``infer``),
  device selection, image preprocessing, :class:`Result`;
- :mod:`~edgemoe.host.driver`: :class:`EdgeMoEDriver`, the ``pynq.DefaultIP`` bound to the kernel's VLNV;
- :mod:`~edgemoe.host.simdevice`: :class:`SimDevice` (a ``pynq.Device`` running the csim library);
  :mod:`~edgemoe.host.simbit`: the ``.simbit`` overlay file and its pynq parser;
  :mod:`~edgemoe.host.sim_overlay`: :func:`build_sim_overlay`;
- :mod:`~edgemoe.host.weights_file`: packed weights files (versioned, checksummed);
- :mod:`~edgemoe.host.manifest`: bitstreams/manifest.json (add an entry, verify before loading);
- :mod:`~edgemoe.host.compare`: device vs golden per tap, fixed vs float per task output;
- :mod:`~edgemoe.host.visualize`: segmentation / depth PNGs;
- :mod:`~edgemoe.host.demo`: :func:`~edgemoe.host.demo.run_demo`, the main job (``make demo``; its command line is ``edgemoe.cli.demo``).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Accelerator": "runtime", "Result": "runtime", "select_device": "runtime", "preprocess": "runtime",
    "EdgeMoEDriver": "driver", "SimDevice": "simdevice", "build_sim_overlay": "sim_overlay",
    "PackedWeights": "weights_file", "pack_state_dict": "weights_file", "load_weights_file": "weights_file",
    "HostError": "errors", "ManifestError": "errors", "OverlayMismatchError": "errors", "WeightsFileError": "errors",
    "DeviceError": "errors", "KernelError": "errors", "KernelTimeout": "errors", "SimBusError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
