"""Errors of the host runtime.  Every message names what is wrong and what to do about it.

All derive from :class:`HostError`, which the command line turns into a
one-line error (exit status 2) instead of a traceback; so does
:class:`KernelError` (the kernel refused a call), which is the generator's
(:mod:`edgemoe.hls.errors`) and is re-exported here.
"""
from __future__ import annotations

from edgemoe.hls.errors import KernelError  # the kernel's one error: C simulation and devices raise it alike


class HostError(RuntimeError):
    """Base of every host-runtime error a user can cause (bad file, wrong config, no board...)."""


class ManifestError(HostError):
    """A bitstream/overlay that is missing, unregistered, changed since its build, or built for another config."""


class OverlayMismatchError(HostError):
    """The loaded overlay is not the accelerator the runtime config expects (config hash register, VLNV...)."""


class WeightsFileError(HostError):
    """A packed weights file that cannot be used: wrong format version, checksum, config or shapes."""


class DeviceError(HostError):
    """No usable device: no board where one was asked for, or an unknown device name."""


class KernelTimeout(HostError):
    """The kernel did not raise ap_done in time (the runtime resets it and stays usable)."""


class SimBusError(HostError):
    """The simulated kernel was pointed at memory that is not an allocated buffer."""


__all__ = ["DeviceError", "HostError", "KernelError", "KernelTimeout", "ManifestError", "OverlayMismatchError",
           "SimBusError", "WeightsFileError"]
