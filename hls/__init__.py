"""hls: config -> Jinja2 templates -> Vitis HLS project; g++ C simulation; perf/resource model."""
