"""sim: RTL units generated from Python, cocotb testbenches and runners, yosys reports."""
