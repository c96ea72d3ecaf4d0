"""The error every config check raises, in a module of its own so that the numerics' width rules
(``edgemoe.golden.numerics.widths``) can raise it without importing the config they check."""
from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value outside what is allowed; names the field."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field = field_name
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field_name} = {value!r}: {allowed}")
