"""Quoting of values interpolated into generated files, one function per target language.

The templates (hls/templates/) never print a value raw: each value goes
through the filter of the place it lands in, so a value that is not what
the config's validation allows still cannot end a comment, a string, a
Makefile line or a Tcl word.  :data:`FILTERS` is what the Jinja2
environment registers (``{{ cfg.name | comment }}``).

- ``comment``: one line of a ``//`` or ``#`` comment (C++, Makefile, Tcl,
  v++ .cfg): characters outside a plain set are percent-encoded (``%0A``),
  so there is no newline, backslash, trigraph or brace to end or extend it.
- ``cpp_string``: a C++ string literal, with octal escapes.
- ``tcl_word``: one Tcl word, every special character backslash-escaped.
- ``make_word``: the value of a Makefile variable that recipes use as one
  shell word (quoted for the shell; ``$`` and ``#`` escaped for make).
- ``ident``: a C / HLS / Tcl identifier; anything else is refused
  (:class:`~edgemoe.config.ConfigError`), as it cannot be quoted there.

JSON and YAML files are written with ``json.dumps`` / ``yaml.safe_dump``,
never from templates.
"""
from __future__ import annotations

import re
import shlex

from edgemoe.config import ConfigError

_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
#: characters a comment keeps as they are (no newline, backslash, '?', braces, '$', '%', '#')
COMMENT_PLAIN = _ALNUM | frozenset(" _.,:;=+-/()<>[]*@!'|~^&")
#: characters a C++ string literal keeps as they are (no '"', backslash or '?')
CPP_STRING_PLAIN = COMMENT_PLAIN | frozenset("#$%{}")
#: characters a bare Tcl word keeps as they are
TCL_PLAIN = _ALNUM | frozenset("_.-:/+,=@")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: characters a line-based file cannot carry inside one word
_LINE_BREAKS = frozenset("\n\r\0\v\f\x85\u2028\u2029")


def comment(value) -> str:
    """``value`` as text for one comment line: non-plain characters become ``%XX`` (UTF-8 bytes)."""
    return "".join(c if c in COMMENT_PLAIN else "".join(f"%{b:02X}" for b in c.encode("utf-8", "backslashreplace"))
                   for c in str(value))


def cpp_string(value) -> str:
    """``value`` as a C++ string literal (quotes included); non-plain bytes as 3-digit octal escapes."""
    return '"' + "".join(c if c in CPP_STRING_PLAIN else "".join(f"\\{b:03o}" for b in c.encode("utf-8", "backslashreplace"))
                         for c in str(value)) + '"'


def tcl_word(value) -> str:
    """``value`` as one Tcl word: no substitution, no word or command break can happen inside it."""
    text = str(value)
    if not text:
        return "{}"
    out = []
    for c in text:
        if c in TCL_PLAIN:
            out.append(c)
        elif c.isascii() and c.isprintable():
            out.append("\\" + c)                       # \c is the character c for any punctuation or space
        elif ord(c) <= 0xFFFF:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    return "".join(out)


def make_word(value) -> str:
    """``value`` as a Makefile variable's value that a recipe expands into one shell word."""
    text = str(value)
    if any(c in _LINE_BREAKS for c in text):
        raise ConfigError("generated Makefile", text, "a value on a Makefile line cannot hold a line break")
    return shlex.quote(text).replace("$", "$$").replace("#", "\\#")


def ident(value) -> str:
    """``value`` where only an identifier can stand (C names, HLS pragma arguments, v++ names)."""
    text = str(value)
    if not IDENTIFIER.fullmatch(text):
        raise ConfigError("generated code", text, "must be an identifier (ASCII letters, digits, _) "
                                                  "where it lands in the generated sources")
    return text


def single_line(value):
    """The environment's ``finalize``: whatever a template prints must not break a line on its own."""
    if isinstance(value, str) and any(c in _LINE_BREAKS for c in value):
        raise ConfigError("generated code", value, "an interpolated value must not hold a line break "
                                                   "(pass it through a quoting filter)")
    return value


FILTERS = {"comment": comment, "cpp_string": cpp_string, "tcl_word": tcl_word, "make_word": make_word,
           "ident": ident}
