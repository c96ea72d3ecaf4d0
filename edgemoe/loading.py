"""Reading a config: a preset name, a YAML file or a Config, plus ``section.field=value`` overrides.

    cfg = load_config("m3vit-micro", ["precision.profile=w16a16", "model.depth=2"])
    cfg = load_config("my_board.yaml")

A YAML file holds ``{preset?, name?, model?, precision?, hardware?}``: the
preset it starts from (default: a config of every field's default) and the
fields it changes.  ``precision`` may name a profile, or map fields with an
optional ``base`` profile.  Every error is a one-line :class:`ConfigError`.

This module sits above both :mod:`edgemoe.config` (the typed config and its
validation) and :mod:`edgemoe.presets` (the built-in configs), which do not
import each other.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from edgemoe.config import (CONFIG_NAME, PRECISION_PROFILES, Config, ConfigError, HardwareConfig, ModelConfig,
                            PrecisionProfile, build_section, precision_profile)
from edgemoe.presets import DEFAULT_PRESET, PRESETS, preset


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"model.depth=4"`` -> ("model", "depth", 4) with the value parsed as YAML."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError("override", text, "must look like section.field=value, e.g. model.depth=4")
    key, raw = text.split("=", 1)
    section, name = key.strip().split(".", 1)
    if section not in ("model", "precision", "hardware"):
        raise ConfigError("override", text, "section must be model, precision or hardware")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and "<" in raw:  # fixed<...> is not YAML-special; keep as typed
        value = raw.strip()
    return section, name.strip(), value


def config_from_dict(data: dict, name: str = "custom") -> Config:
    """Build a config from plain data: ``{preset?, model?, precision?, hardware?}``.

    ``precision`` may be a profile name or a mapping with an optional ``base``
    profile name plus field overrides.
    """
    if not isinstance(data, dict):
        raise ConfigError("config", data, "must be a mapping with keys preset, model, precision, hardware")
    unknown = set(data) - {"preset", "name", "model", "precision", "hardware"}
    if unknown:
        raise ConfigError("config", sorted(map(str, unknown)),
                          "unknown top-level keys; allowed: preset, name, model, precision, hardware")
    base_name = data.get("preset")
    base = preset(base_name) if base_name is not None else Config(name="default")
    model = build_section(ModelConfig, "model", base.model, data.get("model") or {})
    prec_data = data.get("precision")
    if prec_data is None:
        precision = base.precision
    elif isinstance(prec_data, str):
        precision = precision_profile(prec_data)
    elif not isinstance(prec_data, dict):
        raise ConfigError("precision", prec_data, f"must be a profile name ({', '.join(PRECISION_PROFILES)}) or a "
                                                  "mapping of field: value with an optional base: profile name")
    else:
        prec_data = dict(prec_data)
        prec_base = precision_profile(prec_data.pop("base")) if "base" in prec_data else base.precision
        precision = build_section(PrecisionProfile, "precision", prec_base, prec_data)
        if "name" not in prec_data and prec_data:
            precision = dataclasses.replace(precision, name=f"{prec_base.name}+custom")
    hardware = build_section(HardwareConfig, "hardware", base.hardware, data.get("hardware") or {})
    return Config(model, precision, hardware, name=data.get("name", base_name or name))


def _read_yaml(path: Path) -> dict:
    """The mapping a YAML config file holds; ConfigError (one line, naming the file) for anything else."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("config", str(path), f"is not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                                               f"{e.start}); a config is a UTF-8 YAML file") from None
    except OSError as e:
        raise ConfigError("config", str(path), f"cannot be read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError("config", str(path), "is not valid YAML: " + " ".join(str(e).split())) from None
    if data is None:
        raise ConfigError("config", str(path), "is empty; a config file holds a mapping with keys "
                                               "preset, name, model, precision, hardware")
    if not isinstance(data, dict):
        raise ConfigError("config", str(path), "must hold a mapping with keys preset, model, precision, hardware")
    return data


def load_config(source: str | Path | Config | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A preset name, a YAML file path or a Config, with ``section.field=value`` overrides."""
    if isinstance(source, Config):
        data: dict = source.to_dict()
    else:
        src = DEFAULT_PRESET if source is None else str(source)
        if src in PRESETS:
            data = {"preset": src}
        else:
            path = Path(src)
            if not path.is_file():
                raise ConfigError("config", src, f"is neither a preset ({', '.join(PRESETS)}) nor a YAML file")
            data = _read_yaml(path)
            if "name" not in data:
                CONFIG_NAME.check("name", path.stem, f"; a config file without name: is named after its file: "
                                                     f"set name: in {path.name} or rename it")
                data["name"] = path.stem
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for text in overrides:
        section, name, value = parse_override(text)
        if section == "precision" and name == "profile":
            data["precision"] = value
            continue
        sec = data.get(section)
        if isinstance(sec, str):  # precision given by name: it becomes the base
            sec = {"base": sec}
        sec = dict(sec or {})
        if section == "precision" and "name" in sec and name != "name":
            sec["name"] = str(sec["name"]).split("+")[0] + "+custom"
        sec[name] = value
        data[section] = sec
    return config_from_dict(data)
