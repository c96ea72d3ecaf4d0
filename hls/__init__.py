"""hls: config -> kernel plan -> Jinja2 templates -> Vitis HLS project; g++ C simulation (the generator only)."""
