"""GLSL sources from the ``shaders/`` folder installed as the ``heightfusion.shaders`` package, and the
setting of a program's uniforms.

GLSL has no include mechanism, so ``#include "name"`` lines are replaced here by that file's text.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_INCLUDE = re.compile(r'^#include\s+"([^"]+)"\s*$', re.MULTILINE)


@functools.lru_cache(maxsize=None)
def load_shader(name: str) -> str:
    """Source text of ``shaders/<name>`` (e.g. ``"heightmap.vert"``) with includes resolved."""
    try:
        text = (resources.files("heightfusion.shaders") / name).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        raise FileNotFoundError(
            f"GLSL shader {name!r} not found in the installed heightfusion.shaders package; "
            "reinstall heightfusion (pip install .)"
        ) from None
    return _INCLUDE.sub(lambda m: load_shader(m.group(1)), text)


def set_uniforms(program, values: dict) -> None:
    """Set the uniforms of a moderngl ``program`` that it uses (the GLSL compiler drops unused ones);
    ``bytes`` values are written raw (matrices), others assigned."""
    for name, value in values.items():
        if name in program:
            if isinstance(value, bytes):
                program[name].write(value)
            else:
                program[name].value = value
