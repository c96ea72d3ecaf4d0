"""The non-kernel files of a generated project: testbench and its data, tcl, board flow, Makefile."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgemoe.boards import BOARDS

from .csim import ap_types_dir
from .file_record import replace_record
from .interface import TOP
from .memory_map import INSTANCE, placement
from .writer import DATA_FILES, SOURCES, _env, context

#: generated file -> template ("{board}" is the board's name)
PROJECT_FILES = {
    "tb/tb_edgemoe.cpp": "tb_edgemoe.cpp.j2",
    "build_prj.tcl": "build_prj.tcl.j2",
    "Makefile": "Makefile.j2",
}
ZYNQ_FILES = {"bd_{board}.tcl": "bd_zynq.tcl.j2"}
ALVEO_FILES = {"alveo_link.cfg": "alveo_link.cfg.j2"}
#: what write_testbench_data writes into tb/data
TB_DATA_FILES = ("pixels.bin", "weights.bin", "expected.bin", "meta.txt")


def write_testbench_data(project, out: Path, images: torch.Tensor | None = None, task: int = 0) -> Path:
    """tb/data: pixel codes, weight words and the golden model's expected tokens."""
    from edgemoe.golden.fixed_model import FixedM3ViT
    from edgemoe.golden.synthetic import synthetic_images

    cfg = project.config
    data = out / "tb" / "data"
    data.mkdir(parents=True, exist_ok=True)
    if images is None:
        images = synthetic_images(cfg.model, 1, seed=0)
    pixels = project.pixels(images)
    golden = FixedM3ViT.from_quantized(cfg, project.weights)
    tokens = golden.forward(torch.from_numpy(pixels), task, keep_taps=False).tokens.numpy()
    pixels.astype(np.int32).tofile(data / "pixels.bin")
    project.packed_weights.astype(np.int32).tofile(data / "weights.bin")
    tokens.astype(np.int64).tofile(data / "expected.bin")
    (data / "meta.txt").write_text(f"{task} {pixels.shape[0]}\n")
    return data


def write_project_files(project, out: Path) -> list[Path]:
    """Testbench, tb data, Vitis HLS tcl, the board flow and the Makefile; the last step of writing a project.

    Records every file of the project (these and the kernel sources of
    :func:`~edgemoe.hls.writer.write`) in the folder and removes what an
    earlier run generated there and this one did not (:mod:`.file_record`).
    """
    cfg = project.config
    board = BOARDS[cfg.hardware.board]
    env = _env()
    ctx = context(cfg) | {"board": board, "part": cfg.hardware.part or board.part,
                          "ap_types": ap_types_dir(), "placement": placement(cfg), "instance": INSTANCE[board.flow]}
    files = dict(PROJECT_FILES)
    files.update(ALVEO_FILES if board.flow == "alveo" else
                 {k.format(board=board.name): v for k, v in ZYNQ_FILES.items()})
    paths = []
    for rel, template in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.get_template(template).render(**ctx))
        paths.append(path)
    data = write_testbench_data(project, out)
    paths += [data / name for name in TB_DATA_FILES]
    replace_record(out, [out / rel for rel in (*SOURCES, *DATA_FILES)] + paths)
    return paths


__all__ = ["TOP", "write_project_files", "write_testbench_data"]
