"""host: PYNQ runtime (overlay driver, weight packing, simulated device) and its CLI."""
