"""golden: the specification of what the accelerator computes.

A float M3ViT (torch + timm) and a bit-accurate fixed-point model of the
hardware built on :mod:`edgemoe.golden.numerics`.  Every other stage (hls,
sim, host) is checked against this package.
"""
