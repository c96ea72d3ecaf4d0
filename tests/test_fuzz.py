"""Property-based fuzzing of everything a user hands the command line: config fields, YAML files, images, weights.

Each property runs the real ``edgemoe`` entry point in-process and asserts
what the command line promises for any input:

- the exit status is 0 (accepted) or 2 (refused), never a traceback;
- a refusal is one line on stderr that starts with ``edgemoe <command>: error:``;
- nothing is written outside the folders the run was given (its output
  folder, ``$EDGEMOE_CACHE``, ``$EDGEMOE_BITSTREAMS``), and the repository's
  own ``bitstreams/`` is untouched;
- afterwards a normal run still works.

The default profile is derandomised (the same examples on every run, so CI
is reproducible) and sized to finish within a minute; ``HYPOTHESIS_PROFILE=deep``
(``make fuzz``) draws many more, fresh each time.
"""
from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgemoe.cli import main  # noqa: E402
from edgemoe.config import HardwareConfig, ModelConfig, PrecisionProfile  # noqa: E402
from edgemoe.host.paths import repo_root  # noqa: E402
from edgemoe.loading import load_config  # noqa: E402

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("deep", max_examples=400, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# --- the promise ---------------------------------------------------------------------------------

def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every file under ``root``."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


class Sandbox:
    """A scratch folder as the working directory, with private cache and bitstreams folders."""

    def __init__(self, root: Path, monkeypatch):
        self.root = root
        self.allowed = root / "allowed"
        self.allowed.mkdir(parents=True, exist_ok=True)
        self.inputs = root / "inputs"
        self.inputs.mkdir(exist_ok=True)
        monkeypatch.chdir(root)
        monkeypatch.setenv("EDGEMOE_CACHE", str(self.allowed / "cache"))
        monkeypatch.setenv("EDGEMOE_BITSTREAMS", str(self.allowed / "bitstreams"))
        (self.allowed / "bitstreams").mkdir(exist_ok=True)
        repo = repo_root()
        self.repo_bitstreams = repo / "bitstreams" if repo else None

    def run(self, argv: list[str], capsys) -> tuple[int, str, str]:
        """Run ``edgemoe argv``; check the promise; return (status, stdout, stderr)."""
        outside = {p: _tree(p) for p in (self.root / "inputs", self.repo_bitstreams) if p is not None}
        before_root = {p.name for p in self.root.iterdir()}
        code = main(argv)
        out, err = capsys.readouterr()
        assert code in (0, 2), f"exit status {code} for {argv}:\n{err}"
        assert "Traceback" not in err, f"traceback for {argv}:\n{err}"
        if code == 2:
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1, f"{argv}: refusal is not one line:\n{err}"
            assert lines[0].startswith(f"edgemoe {argv[0]}: error:") or lines[0].startswith("edgemoe: error:"), lines[0]
        for p, files in outside.items():
            assert _tree(p) == files, f"{argv} wrote into {p}"
        assert {p.name for p in self.root.iterdir()} <= before_root | {"allowed"}, f"{argv} wrote into the cwd"
        return code, out, err


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    return Sandbox(tmp_path, monkeypatch)


def _still_works(sandbox: Sandbox, capsys) -> None:
    code, out, _ = sandbox.run(["config", "--config", "m3vit-micro"], capsys)
    assert code == 0 and "# digest:" in out


# --- config fields and YAML documents ------------------------------------------------------------

FIELDS = [(s, f.name) for s, cls in (("model", ModelConfig), ("precision", PrecisionProfile),
                                     ("hardware", HardwareConfig)) for f in dataclasses.fields(cls)]
HOSTILE_TEXT = ["", " ", "../../etc/passwd", "$(shell touch pwned)", "`touch pwned`", "a\nb", "a;exec touch pwned",
                "[exec touch pwned]", "\"; system(\"touch pwned\"); //", "*/ int x; /*", "\x00", "é", "1e400", "nan",
                "-inf", "[1, 2]", "{a: 1}", "null", "true", "99999999999999999999", "-1", "0", "fixed<99,3>",
                "fixed<16,6,RND,WRAP>", "ufixed<8,0>", "odd", "all", "w8a16", "zcu102"]
values = st.one_of(st.sampled_from(HOSTILE_TEXT), st.integers(-2**70, 2**70).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=24))


@given(field=st.sampled_from(FIELDS), value=values)
def test_any_set_override_is_accepted_or_refused_in_one_line(sandbox, capsys, field, value):
    code, out, _ = sandbox.run(["config", "--config", "m3vit-micro", "--set", f"{field[0]}.{field[1]}={value}"], capsys)
    if code == 0:
        assert load_config("m3vit-micro").__class__ is not None and "# digest:" in out
    assert not (sandbox.root / "pwned").exists()


def _yaml_values():
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                        st.sampled_from(HOSTILE_TEXT), st.text(max_size=12))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                        max_leaves=6)


@given(section=st.sampled_from(["model", "precision", "hardware", "name", "preset", "extra"]),
       key=st.one_of(st.sampled_from([f for _, f in FIELDS]), st.text(max_size=10)), value=_yaml_values())
def test_any_yaml_config_is_accepted_or_refused_in_one_line(sandbox, capsys, section, key, value):
    base = yaml.safe_load(load_config("m3vit-micro").to_yaml())
    if section in ("name", "preset", "extra"):
        base[section] = value
    else:
        sec = base.get(section)
        base[section] = {**(sec if isinstance(sec, dict) else {}), key: value}
    path = sandbox.inputs / "c.yaml"
    path.write_text(yaml.safe_dump(base, allow_unicode=True))
    sandbox.run(["config", "--config", str(path)], capsys)
    assert not (sandbox.root / "pwned").exists()


@given(data=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
                      st.sampled_from([b"", b"\xff\xfe", b"preset: [a, b]", b"precision: 5", b"- 1\n- 2",
                                       b"model: {depth: 100000}", b"model: {num_experts: 100000}", b"!!python/object:os.system {}",
                                       b"name: ../../x", b"&a [*a]"])))
def test_any_yaml_bytes_are_accepted_or_refused_in_one_line(sandbox, capsys, data):
    path = sandbox.inputs / "raw.yaml"
    path.write_bytes(data)
    sandbox.run(["config", "--config", str(path)], capsys)


# --- image files ----------------------------------------------------------------------------------

def _png(width: int, height: int, colour_type: int, depth: int, payload: bytes, truncate: int | None) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour_type, 1)
    row = 1 + width * channels * max(depth, 8) // 8
    raw = (payload * (row * height // max(len(payload), 1) + 1))[:row * height] if payload else bytes(row * height)
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return data[:truncate] if truncate is not None else data


images = st.one_of(
    st.builds(_png, st.integers(1, 64), st.integers(1, 48), st.sampled_from([0, 2, 4, 6, 3, 5]),
              st.sampled_from([1, 8, 16, 7]), st.binary(max_size=32), st.one_of(st.none(), st.integers(0, 80))),
    st.binary(max_size=300),
    st.sampled_from([b"", b"GIF89a", b"\xff\xd8\xff", b"P6\n1 1\n255\n\x00\x00\x00", b"BM" + bytes(60)]),
)


@given(data=images, suffix=st.sampled_from([".png", ".jpg", ".npy", ".txt", ""]))
def test_any_image_file_is_accepted_or_refused_in_one_line(sandbox, capsys, data, suffix):
    path = sandbox.inputs / f"img{suffix}"
    path.write_bytes(data)
    sandbox.run(["golden", "--config", "m3vit-micro", "--image", str(path)], capsys)


@given(shape=st.lists(st.integers(0, 40), min_size=0, max_size=4),
       dtype=st.sampled_from(["uint8", "uint16", "float32", "float64", "int64", "bool", "complex64", "U3"]),
       fill=st.sampled_from([0.0, 1.0, -1.0, np.nan, np.inf, 300.0]))
def test_any_npy_array_is_accepted_or_refused_in_one_line(sandbox, capsys, shape, dtype, fill):
    arr = np.full(shape, fill if dtype not in ("U3",) else "abc").astype(dtype) if dtype != "U3" else np.full(shape, "abc")
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    path = sandbox.inputs / "a.npy"
    path.write_bytes(buf.getvalue())
    sandbox.run(["golden", "--config", "m3vit-micro", "--image", str(path)], capsys)


# --- weights files -----------------------------------------------------------------------------------

def _micro_state_dict():
    from edgemoe.golden.synthetic import synthetic_state_dict

    return synthetic_state_dict(load_config("m3vit-micro").model, seed=0)


@dataclasses.dataclass(frozen=True)
class WeightsRecipe:
    """How to spoil a good checkpoint (drawn small, so a failing example prints short)."""

    kind: str
    key: int
    how: str
    extra: str
    cut: float
    junk: bytes

    def bytes(self) -> bytes:
        import torch

        sd = _micro_state_dict()
        keys = sorted(sd)
        key = keys[self.key % len(keys)]
        buf = io.BytesIO()
        if self.kind == "junk":
            return self.junk
        if self.kind == "not-a-dict":
            torch.save({"list": [1, 2], "text": "text", "float": 3.5, "none": None, "nested": {"a": [1]},
                        "int-keys": {1: torch.zeros(2)}}[self.how if self.how in ("list", "text") else "int-keys"], buf)
            return buf.getvalue()
        if self.kind == "tensor":
            t = sd[key]
            sd[key] = {"nan": lambda: t.float().fill_(float("nan")), "inf": lambda: t.float().fill_(float("inf")),
                       "huge": lambda: t.float() * 1e6, "shape": lambda: torch.zeros(3, 1),
                       "dtype": lambda: t.to(torch.float16), "empty": lambda: torch.zeros(0),
                       "int": lambda: torch.ones_like(t, dtype=torch.int32)}.get(self.how, lambda: t)()
        elif self.kind == "drop":
            del sd[key]
        elif self.kind == "extra":
            sd[self.extra] = torch.ones(2)
        elif self.kind == "prefix":
            sd = {"module." + k: v for k, v in sd.items()}
        torch.save(sd, buf)
        data = buf.getvalue()
        return data[:int(self.cut * len(data))] if self.kind == "truncated" else data


weight_recipes = st.builds(
    WeightsRecipe, kind=st.sampled_from(["tensor", "drop", "extra", "junk", "truncated", "not-a-dict", "prefix"]),
    key=st.integers(0, 10_000), how=st.sampled_from(["nan", "inf", "huge", "shape", "dtype", "empty", "int",
                                                     "list", "text"]),
    extra=st.sampled_from(["backbone.blocks.99.x", "decoders.normals.conv_0.weight", "junk", "../x"]),
    cut=st.floats(0.0, 0.999), junk=st.binary(max_size=64))


@settings(max_examples=15)
@given(recipe=weight_recipes, suffix=st.sampled_from([".pth", ".npz", ".pt"]))
def test_any_weights_file_is_accepted_or_refused_in_one_line(sandbox, capsys, recipe, suffix):
    path = sandbox.inputs / f"w{suffix}"
    path.write_bytes(recipe.bytes())
    out = sandbox.allowed / "packed.npz"
    out.unlink(missing_ok=True)
    code, _, _ = sandbox.run(["pack", "--config", "m3vit-micro", "--weights", str(path), "--out", str(out)], capsys)
    assert (code == 0) == out.is_file()


def test_a_normal_run_still_works_after_fuzzing(sandbox, capsys):
    _still_works(sandbox, capsys)
    code, out, _ = sandbox.run(["golden", "--config", "m3vit-micro", "--images", "1"], capsys)
    assert code == 0 and "task semseg" in out
