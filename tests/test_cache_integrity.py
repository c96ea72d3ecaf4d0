"""Project folders, the compiled-library cache and simulated overlays under concurrent and damaged use.

Every library in the cache is the one its key names, whatever other runs do
to the project folder meanwhile; a damaged or foreign library is never
reused, in the cache or in bitstreams/; a project folder has one writer.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgemoe.cli import main as cli_main
from edgemoe.files import atomic_write_bytes
from edgemoe.hls import csim
from edgemoe.hls.csim import CsimLibrary, compile_library
from edgemoe.hls.interface import config_hash32
from edgemoe.hls.project import CSIM_SOURCES, HLSProject
from edgemoe.hls.shared_files import sha256_file
from edgemoe.hls.writer import write
from edgemoe.host import manifest as mf
from edgemoe.host.errors import OverlayMismatchError
from edgemoe.host.sim_overlay import build_sim_overlay
from edgemoe.host.simbit import SimParser
from edgemoe.loading import load_config

#: two configs whose kernels differ only in the config hash they export
A = ["hardware.clock_mhz=200"]
B = ["hardware.clock_mhz=250"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private library cache shared by this module's tests (each test also works alone).

    Damage is done by replacing files (a new inode), as another process would: this process has
    loaded some of these libraries, and a library truncated in place under a live mapping is a bus error.
    """
    return tmp_path_factory.mktemp("cache")


def _racing_compiler(monkeypatch, during_compile):
    """Run ``during_compile()`` just before g++ starts, as another process could."""
    real_run = subprocess.run

    def run(cmd, *args, **kwargs):
        if "-shared" in cmd:
            during_compile()
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(csim.subprocess, "run", run)


def test_a_project_rewritten_while_it_compiles_does_not_poison_the_cache(cache, tmp_path, monkeypatch):
    cfg_a, cfg_b = load_config("m3vit-micro", A), load_config("m3vit-micro", B)
    assert config_hash32(cfg_a) != config_hash32(cfg_b)
    prj = tmp_path / "prj"
    write(cfg_a, prj)
    # a second `generate` rewrites the shared folder with config B between hashing and compiling
    _racing_compiler(monkeypatch, lambda: write(cfg_b, prj))
    res = compile_library(prj, CSIM_SOURCES, cache / "lib")
    assert CsimLibrary(res.library).config_hash == config_hash32(cfg_a)
    monkeypatch.undo()
    # the entry under A's key holds A's kernel: the next compile of A reuses it
    write(cfg_a, prj)
    again = compile_library(prj, CSIM_SOURCES, cache / "lib")
    assert again.library == res.library and again.cached
    assert CsimLibrary(again.library).config_hash == config_hash32(cfg_a)


def test_generate_compile_uses_the_cache_of_EDGEMOE_CACHE(cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGEMOE_CACHE", str(cache))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert cli_main(["generate", "--config", "m3vit-micro", "--set", *A, "--out", str(tmp_path / "prj"),
                     "--compile"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("g++ C simulation library: "))
    assert line.split(": ", 1)[1].startswith(str(cache / "csim-cache" / "lib"))
    assert list(cwd.iterdir()) == []  # nothing written to ./build


def test_a_second_generate_into_a_folder_being_written_is_refused(tmp_path, capsys):
    out = tmp_path / "prj"
    out.mkdir()
    holder = subprocess.Popen(  # another process holding the folder, as a running generate does
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc = cli_main(["generate", "--config", "m3vit-micro", "--out", str(out)])
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"out = '{out}'" in err and "another edgemoe process is writing" in err
    assert not any(out.iterdir())
    assert cli_main(["generate", "--config", "m3vit-micro", "--out", str(out)]) == 0  # free again


@pytest.mark.parametrize("where", ["file", "file/sub"])
def test_generate_into_a_file_is_a_one_line_error(tmp_path, where, capsys):
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / where
    assert cli_main(["generate", "--config", "m3vit-micro", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"out = '{out}': " in err, err


def test_a_truncated_cached_library_is_rebuilt_with_a_message(cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGEMOE_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    args = ["generate", "--config", "m3vit-micro", "--set", *A, "--out", str(tmp_path / "prj"), "--compile"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    lib = Path(out.split("g++ C simulation library: ", 1)[1].split(" (", 1)[0])
    good = lib.read_bytes()
    atomic_write_bytes(lib, good[:len(good) // 3])  # a full disk, a killed copy
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    notice = [ln for ln in out.splitlines() if "rebuilt" in ln]
    assert len(notice) == 1 and str(lib) in notice[0] and "bytes, its build record says" in notice[0], out
    assert "(cached;" not in out
    record = json.loads((lib.parent / "library.json").read_text())
    assert sha256_file(lib) == record["sha256"] and lib.stat().st_size == len(good)
    assert record["config_hash"] == config_hash32(load_config("m3vit-micro", A))


def test_a_cached_library_of_another_config_is_rebuilt(cache):
    """What the race used to leave behind: config B's kernel under config A's key."""
    proj_a = HLSProject(load_config("m3vit-micro", A), cache_dir=cache)
    entry_a = proj_a.compile().library.parent
    entry_b = HLSProject(load_config("m3vit-micro", B), cache_dir=cache).compile().library.parent
    for f in entry_b.iterdir():
        atomic_write_bytes(entry_a / f.name, f.read_bytes())
    res = proj_a.compile()
    assert not res.cached and "exports config hash" in res.notice
    assert res.config_hash == config_hash32(proj_a.config) and sha256_file(res.library) == res.sha256
    assert proj_a.compile().cached


def test_a_simulated_overlay_registered_with_a_damaged_library_is_rebuilt(cache, tmp_path):
    cfg = load_config("m3vit-micro", A)
    bitstreams = tmp_path / "bitstreams"
    entry = build_sim_overlay(cfg, bitstreams, cache_dir=cache)
    lib = bitstreams / json.loads(entry.overlay.read_text())["library"]
    good = lib.read_bytes()
    # a damaged library registered with its own checksum (as a copy of a truncated cache entry once was)
    atomic_write_bytes(lib, good[:1000])
    mf.add_entry(cfg, entry.overlay, [lib], board="sim", flow="sim", name=entry.name, regmap=entry.regmap_path,
                 manifest=bitstreams)
    with pytest.raises(OverlayMismatchError, match=r"csim\.so has SHA-256 .* \(truncated or replaced"):
        SimParser(entry.overlay)
    log = []
    again = build_sim_overlay(cfg, bitstreams, cache_dir=cache, log=log.append)
    assert lib.read_bytes() == good and again.overlay == entry.overlay
    assert any("(truncated or replaced since it was built); rebuilding it" in line for line in log), log
    assert SimParser(again.overlay).library == lib
