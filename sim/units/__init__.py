"""The RTL units, written in Amaranth, and their registry.

* :mod:`.base` -- the unit base classes (``StreamUnit``, ``Lane``, ``Pipe``,
  ``DatapathUnit``) and the exact integer steps they are built from;
* one module per unit: :mod:`.exp`, :mod:`.recip`, :mod:`.rsqrt`, :mod:`.gelu`,
  :mod:`.gelu_naive` (stream units), :mod:`.softmax`, :mod:`.attn_schedule`,
  :mod:`.topk`, :mod:`.layernorm`, :mod:`.compute_tile` (multi-field units);
* :mod:`.registry` -- the one registry (:data:`~.registry.UNITS`,
  :func:`~.registry.get_unit`, :func:`~.registry.all_units`): builder, ports,
  golden expectation and testbench of every unit.  It imports no Amaranth.

Importing this package imports nothing else.
"""
