"""Generated files vs hostile config values: a value never leaves the place it is printed in.

Config validation refuses such values (tests/test_config.py).  Here they are
put into a config past validation (as a bug or a hand-built Config could),
every template is rendered, and each language's own tool reads what came out:
g++ compiles and loads the C++ (no injected constructor runs, the name comes
back byte for byte), make reads the Makefile (no ``$(shell)`` runs), a Tcl
interpreter runs the Tcl scripts against recording stand-ins of the Vivado /
Vitis commands (no ``exec``, no extra command, the part arrives as one word),
and the JSON / YAML files parse back.  Values that can only stand as
identifiers (bundle names, board) are refused at rendering.
"""
from __future__ import annotations

import copy
import ctypes
import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from edgemoe.boards import BOARDS
from edgemoe.config import ConfigError
from edgemoe.hls.csim import ap_types_dir
from edgemoe.hls.interface import config_hash32
from edgemoe.hls.project import HLSProject
from edgemoe.hls.project_files import ALVEO_FILES, PROJECT_FILES, ZYNQ_FILES
from edgemoe.hls.writer import SOURCES, TEMPLATES
from edgemoe.loading import load_config

tkinter = pytest.importorskip("tkinter")


def _payload(mark: Path) -> str:
    """One value that tries to break out of every language the generator writes."""
    return (f"x' \\\n#include <cstdlib>\nstatic int pwn = std::system(\"touch {mark}\");\n"
            f"// */ ??/\n$(shell touch {mark}) `touch {mark}` $$(touch {mark})\n"
            f"exec touch {mark}\n[exec touch {mark}] }} {{ \"; # \\u2028\u2028\r\0end \\")


def _past_validation(cfg, **sections):
    """``cfg`` with whole sections / the name replaced, without running validation."""
    out = copy.copy(cfg)
    for key, value in sections.items():
        object.__setattr__(out, key, value)
    return out


def _hostile(cfg, value: str):
    """Every string field that can be quoted where it lands, set to ``value``."""
    m, p, h = cfg.model, cfg.precision, cfg.hardware
    tasks = tuple(dataclasses.replace(t, name=f"{value}{i}", head=value) for i, t in enumerate(m.tasks))
    return _past_validation(cfg, name=value, precision=dataclasses.replace(p, name=value),
                            model=dataclasses.replace(m, tasks=tasks), hardware=dataclasses.replace(h, part=value))


def _write(cfg, out: Path) -> Path:
    return HLSProject(cfg).write(out)


def _templates_of(board: str) -> set[str]:
    flow = ALVEO_FILES if board != "zcu102" else ZYNQ_FILES
    return set(SOURCES.values()) | set(PROJECT_FILES.values()) | set(flow.values())


def test_the_board_flows_cover_every_template():
    every = {p.name for p in TEMPLATES.glob("*.j2")}
    assert _templates_of("zcu102") | _templates_of("u50") == every


def _text_files(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*")
            if p.is_file() and p.suffix != ".bin" and not p.name.startswith(".")}


def _same_shape(clean: dict[str, str], hostile: dict[str, str], clean_cfg) -> None:
    """Same files with the same lines; a line differs only where the clean one prints a name (or the digest)."""
    assert clean.keys() == hostile.keys()
    names = {clean_cfg.name, clean_cfg.precision.name, BOARDS[clean_cfg.hardware.board].part,
             clean_cfg.digest()[:12], str(config_hash32(clean_cfg))}
    for rel in set(clean) - {"config.yaml"}:           # YAML may fold a long value: it is parsed instead
        a, b = clean[rel].split("\n"), hostile[rel].split("\n")
        assert len(a) == len(b), f"{rel}: {len(b)} lines, {len(a)} without the hostile values"
        for la, lb in zip(a, b):
            if la != lb:
                assert any(n and n in la for n in names), f"{rel}: line changed: {lb!r}"


# --- Tcl: the scripts run in a safe interpreter; every unknown command is recorded ---------------------

def _tcl_calls(script: str) -> list[list[str]]:
    tcl = tkinter.Tcl()
    tcl.eval("interp create -safe box")
    tcl.call("interp", "eval", "box", "set ::calls {}; set ::argv {}\n"
             "proc unknown args { lappend ::calls $args; return {} }")
    tcl.call("interp", "eval", "box", script)
    calls = tcl.call("interp", "eval", "box", "set ::calls")
    return [[str(w) for w in tcl.splitlist(c)] for c in tcl.splitlist(calls)]


VIVADO_COMMANDS = {
    "open_project", "set_top", "add_files", "open_solution", "set_part", "create_clock", "config_interface",
    "config_compile", "csim_design", "csynth_design", "cosim_design", "export_design", "exit", "create_project",
    "set_property", "current_project", "update_ip_catalog", "create_bd_design", "create_bd_cell",
    "apply_bd_automation", "get_bd_intf_pins", "validate_bd_design", "save_bd_design", "make_wrapper", "get_files",
    "launch_runs", "wait_on_run", "file"}


def _check_tcl(clean: dict[str, str], hostile: dict[str, str], part: str) -> None:
    scripts = [rel for rel in clean if rel.endswith(".tcl")]
    assert scripts
    for rel in scripts:
        want, got = _tcl_calls(clean[rel]), _tcl_calls(hostile[rel])
        assert {c[0] for c in got} <= VIVADO_COMMANDS, f"{rel}: ran {sorted({c[0] for c in got} - VIVADO_COMMANDS)}"
        assert [(c[0], len(c)) for c in got] == [(c[0], len(c)) for c in want], f"{rel}: other commands or words"
        parts = [c[1:] for c in got if c[0] == "set_part"] + [c[c.index("-part") + 1:][:1] for c in got
                                                              if c[0] == "create_project"]
        assert parts and all(p == [part] for p in parts), (rel, parts)


def _check_make(out: Path, mark: Path) -> None:
    run = subprocess.run(["make", "-n", "csim", "hls", "cosim", "rtlsim", "bitstream", "clean"], cwd=out,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert not mark.exists(), "the Makefile ran an injected command"


def _check_data_files(out: Path, value: str) -> None:
    for rel in ("regmap.json", "layout.json", "taps.json"):
        json.loads((out / rel).read_text())
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["name"] == value and written["precision"]["name"] == value
    assert written["model"]["tasks"][0]["name"] == f"{value}0"


@pytest.mark.parametrize("board", ["zcu102", "u50"])
def test_hostile_values_stay_inside_every_generated_file(board, tmp_path):
    mark = tmp_path / "pwned"
    value = _payload(mark)
    clean_cfg = load_config("m3vit-micro", [f"hardware.board={board}"])
    bad_cfg = _hostile(clean_cfg, value)
    clean = _text_files(_write(clean_cfg, tmp_path / "clean"))
    out = _write(bad_cfg, tmp_path / "hostile")
    hostile = _text_files(out)
    _same_shape(clean, hostile, clean_cfg)
    _check_tcl(clean, hostile, value)
    _check_make(out, mark)
    _check_data_files(out, value)


def test_hostile_name_compiles_into_a_library_that_runs_nothing(tmp_path):
    mark = tmp_path / "pwned"
    value = _payload(mark)
    cfg = _hostile(load_config("m3vit-micro"), value)
    out = _write(cfg, tmp_path / "prj")
    lib = tmp_path / "libhostile.so"
    cxx = shutil.which("g++")
    run = subprocess.run([cxx, "-std=c++14", "-O0", "-fPIC", "-shared", f"-I{out / 'include'}",
                          f"-isystem{ap_types_dir()}", str(out / "src/edgemoe_vit.cpp"),
                          str(out / "src/csim_bridge.cpp"), "-o", str(lib)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = ctypes.CDLL(str(lib))
    assert not mark.exists(), "loading the library ran an injected constructor"
    loaded.edgemoe_config_name.restype = ctypes.c_char_p
    assert loaded.edgemoe_config_name().decode() == value.split("\0")[0]  # a C string ends at NUL


@pytest.mark.parametrize("field", ["bundle name", "extra bundle buffer", "board"])
def test_values_that_can_only_be_identifiers_are_refused(field, tmp_path):
    cfg = load_config("m3vit-micro", ["hardware.board=u50"])
    value = "g0\n#include <cstdlib> // $(shell id) [exec id]"
    h = cfg.hardware
    hardware = {
        "bundle name": dataclasses.replace(h, bundles=tuple((b, value if b == "weights" else n) for b, n in h.bundles)),
        "extra bundle buffer": dataclasses.replace(h, bundles=h.bundles + ((value, "gmem9"),)),
        "board": dataclasses.replace(h, board=value),
    }[field]
    with pytest.raises((ConfigError, KeyError)):
        _write(_past_validation(cfg, hardware=hardware), tmp_path / "prj")


# --- file names made from the config's name ---------------------------------------------------------------

def test_file_names_made_from_a_name_cannot_leave_their_folder(tmp_path):
    from edgemoe.golden.synthetic import synthetic_state_dict
    from edgemoe.host.sim_overlay import overlay_name
    from edgemoe.host.weights_file import packed_for

    cfg = load_config("m3vit-micro")
    assert overlay_name(cfg).startswith("m3vit-micro-")
    escaping = _past_validation(cfg, name="../../escape")
    with pytest.raises(ConfigError):
        overlay_name(escaping)
    with pytest.raises(ConfigError):
        packed_for(escaping, synthetic_state_dict(cfg.model, seed=0), cache_dir=tmp_path / "cache")
    assert not (tmp_path.parent / "escape").exists() and not list(tmp_path.rglob("*escape*"))


def test_run_refuses_a_name_that_leaves_the_folder_before_writing_anything(tmp_path, monkeypatch, capsys):
    import numpy as np
    from PIL import Image

    from edgemoe.cli import main

    monkeypatch.setenv("EDGEMOE_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "c.yaml"
    config.write_text("preset: m3vit-micro\nname: ../../escape\n")
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(image)
    before = set(tmp_path.rglob("*"))
    assert main(["run", "--config", str(config), "--device", "sim", "--out", str(tmp_path / "out"), str(image)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "name = '../../escape'" in err
    assert set(tmp_path.rglob("*")) == before
