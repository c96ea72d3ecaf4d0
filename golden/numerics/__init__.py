"""The numerics spec: every fixed-point operation of the hardware, on raw words.

Everything downstream (HLS templates, RTL units, the host) takes its types,
tables and constants from here.  Modules: ``fixed`` (types, quantise),
``overflow`` (saturation counting), ``matmul`` (exact products, linear),
``tables`` (approximation tables), ``approx`` (exp, reciprocal, rsqrt, GELU),
``softmax`` (online and gate softmax), ``layernorm``, ``topk``, ``widths``
(which profiles are exact).
"""
from .fixed import FixedType, FixedTypeError, add, align, from_float, quantize, to_float
from .overflow import OverflowCounter

__all__ = ["FixedType", "FixedTypeError", "OverflowCounter", "add", "align", "from_float", "quantize", "to_float"]
