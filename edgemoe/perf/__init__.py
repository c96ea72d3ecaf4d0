"""Analysis of a generated accelerator: cycle and resource models, design-space search, the report.

One concept per module:

* :mod:`.cycles` -- the cycle model of the kernel template, per layer and step, with the roofline;
* :mod:`.resources` -- DSP, BRAM36/URAM, LUT, FF per unit of the accelerator and of the RTL units;
* :mod:`.primitives` -- what one multiplier or memory bank costs on the FPGA;
* :mod:`.routing` -- tokens per expert in each MoE block (uniform, skewed, the golden model's);
* :mod:`.reference` -- Edge-MoE's published design modelled call by call, beside its measured figure;
* :mod:`.heads` -- the task heads' MACs, modelled time on the board's CPU and measured time on this host;
* :mod:`.measured` -- what the RTL units of ``sim/`` measured (latencies, yosys figures), read by
  the caller and passed in;
* :mod:`.explore` -- the design-space exploration under a board's resources;
* :mod:`.report` -- the HTML / markdown report.

The models read the kernel's numbers from the generator (``edgemoe.hls``) and
board facts from :mod:`edgemoe.boards`; they never import ``edgemoe.sim``.
"""
