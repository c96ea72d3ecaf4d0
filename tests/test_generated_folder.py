"""Regenerating a project folder: the generator's old files go, everything else stays.

The folder records what the generator wrote (``hls/file_record.py``); a file
the previous run wrote and this one does not (another board's flow files) is
removed, unless it was edited since.  Files the record does not name, and
paths that lead outside the folder, are never touched.
"""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from edgemoe.hls.file_record import RECORD
from edgemoe.hls.project import HLSProject
from edgemoe.loading import load_config


def _generate(out, board):
    return HLSProject(load_config("m3vit-micro", [f"hardware.board={board}"])).write(out)


def _record(out) -> dict[str, str]:
    return json.loads((out / RECORD).read_text())["files"]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_regenerating_for_another_board_leaves_no_files_of_the_old_one(tmp_path):
    out = tmp_path / "prj"
    _generate(out, "zcu102")
    assert (out / "bd_zcu102.tcl").is_file()
    (out / "notes.txt").write_text("mine\n")
    (out / "tb" / "extra_test.cpp").write_text("// mine\n")
    _generate(out, "u50")
    assert (out / "alveo_link.cfg").is_file()
    assert not (out / "bd_zcu102.tcl").exists()
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "tb" / "extra_test.cpp").is_file()
    _generate(out, "zcu102")
    assert (out / "bd_zcu102.tcl").is_file() and not (out / "alveo_link.cfg").exists()
    assert (out / "notes.txt").is_file()


def test_the_record_names_every_generated_file(tmp_path):
    out = _generate(tmp_path / "prj", "u280")
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")}
    recorded = _record(out)
    assert set(recorded) == on_disk
    assert all(recorded[rel] == _sha(out / rel) for rel in recorded)


def test_an_edited_generated_file_is_kept(tmp_path):
    out = _generate(tmp_path / "prj", "zcu102")
    bd = out / "bd_zcu102.tcl"
    bd.write_text(bd.read_text() + "# my change\n")
    _generate(out, "u50")
    assert bd.read_text().endswith("# my change\n")
    assert "bd_zcu102.tcl" not in _record(out)        # no longer the generator's: never removed later


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_record_cannot_lead_outside_the_folder(tmp_path):
    out = _generate(tmp_path / "prj", "u50")
    outside = tmp_path / "outside.txt"
    outside.write_text("not the generator's\n")
    (out / "link.txt").symlink_to(outside)
    (out / "up").symlink_to(tmp_path, target_is_directory=True)
    record = json.loads((out / RECORD).read_text())
    for rel in ("../outside.txt", str(outside), "link.txt", "up/outside.txt", "tb/../../outside.txt"):
        record["files"][rel] = _sha(outside)
    (out / RECORD).write_text(json.dumps(record))
    _generate(out, "u50")
    assert outside.read_text() == "not the generator's\n"
    assert (out / "link.txt").is_symlink()


def test_a_damaged_record_removes_nothing(tmp_path):
    out = _generate(tmp_path / "prj", "zcu102")
    (out / RECORD).write_bytes(b"\xff not json")
    _generate(out, "u50")
    assert (out / "bd_zcu102.tcl").is_file()          # unknown whether it was ours: left in place
    assert "alveo_link.cfg" in _record(out)
