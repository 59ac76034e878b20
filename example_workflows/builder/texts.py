"""The workflows' notes: one Markdown file each in ``notes/``, loaded by name.

A note file is plain paragraphs separated by blank lines; lines inside a paragraph are
joined with one space (so the files wrap at any width), except a line starting with
``- ``, which stays a line of its own (a list). ``{name}`` is filled in from the
keyword arguments of ``note`` (values the workflow also uses, such as its fps), else with
the text of ``notes/<name>.md`` (a paragraph several notes share).
"""
from __future__ import annotations

import re
from pathlib import Path

NOTES_DIR = Path(__file__).resolve().parent / "notes"
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _unwrap(text: str) -> str:
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = []
        for line in block.splitlines():
            line = line.strip()
            if lines and not line.startswith("- "):
                lines[-1] += " " + line
            else:
                lines.append(line)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _fill(name: str, values: dict, used: set, parent: str = "") -> str:
    path = NOTES_DIR / f"{name}.md"
    if not path.is_file():
        raise FileNotFoundError(f"note {parent!r}: no value for {{{name}}} and no notes/{name}.md" if parent
                                else f"no note {name!r}: {path} is missing")

    def fill(m):
        key = m.group(1)
        if key in values:
            used.add(key)
            return _value(values[key])
        return _fill(key, values, used, name)

    return _unwrap(PLACEHOLDER.sub(fill, path.read_text(encoding="utf-8")))


def note(name: str, **values) -> str:
    """The text of ``notes/<name>.md`` with its placeholders filled in: from ``values``
    (a float as short as it goes: 16.0 -> 16), else with the note of that name, which
    gets the same ``values``."""
    used = set()
    text = _fill(name, values, used)
    if set(values) - used:
        raise KeyError(f"note {name!r} has no placeholder for {sorted(set(values) - used)}")
    return text
