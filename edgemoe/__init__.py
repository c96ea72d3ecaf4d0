"""edgemoe: FPGA accelerators for multi-task Mixture-of-Experts Vision Transformers."""

__version__ = "0.1.0"
