"""The kernel's own error, shared by everything that calls the kernel.

:class:`KernelError` is raised wherever a call of the kernel is refused: by
its status register in C simulation (:class:`edgemoe.hls.project.HLSProject`)
and on a device, real or simulated (``edgemoe.host``, which re-exports it
beside its other errors).  It lives here, in the generator that defines the
status register, so the host imports it without the generator importing the
host.
"""
from __future__ import annotations


class KernelError(RuntimeError):
    """The kernel refused a call: a bad status register (bad task / bad tap), or a busy or incapable kernel."""
