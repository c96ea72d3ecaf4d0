"""The cocotb testbenches of the RTL units, and what they share.

* :mod:`.context` -- :class:`~.context.TbParams`, the one record a run's
  parameters travel in (JSON in ``EDGEMOE_TB``, set by the runner, parsed by
  :func:`~.context.read_params`), and :class:`~.context.TbContext` (the
  config, the unit's spec, its expectation, the perf figures it records);
* :mod:`.harness` -- :class:`~.harness.Harness`: clock, reset, valid/ready
  driver and monitor of any unit (one stream word or named fields per
  transfer), with random input gaps and output stalls;
* :mod:`.scoreboard` -- :func:`~.scoreboard.compare` (exact, in order, same
  count) and :func:`~.scoreboard.check`;
* the test modules, one per unit kind: ``tb_stream_unit`` (every stream
  unit), ``tb_softmax``, ``tb_attn_schedule``, ``tb_topk``, ``tb_layernorm``,
  ``tb_compute_tile``; ``tb_no_tests`` (the runner must report that nothing ran).

The runner (:func:`edgemoe.sim.runner.run_unit`) loads a test module as
``edgemoe.sim.tb.<name>``.
"""
