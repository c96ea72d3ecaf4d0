"""Atomic writes (edgemoe.files): the destination is replaced whole or not at all."""
import pytest

from edgemoe.files import atomic_output, atomic_write_bytes, atomic_write_text, temporary_path


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "one\n")
    atomic_write_text(path, "two\n")
    assert path.read_text() == "two\n"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_temporary_names_are_unique_hidden_and_beside_the_file(tmp_path):
    path = tmp_path / "w.npz"
    names = {temporary_path(path) for _ in range(100)}
    assert len(names) == 100
    assert all(p.parent == tmp_path and p.name.startswith(".w.npz.") and p.name.endswith(".tmp") for p in names)
    with atomic_output(path, suffix=".tmp.npz") as tmp:
        assert tmp.name.endswith(".tmp.npz")
        tmp.write_bytes(b"x")
    assert path.read_bytes() == b"x"
