"""The ``virtio-mmio`` command line (SPEC §10).

Bad options print one line on stderr naming the option and what is allowed, and exit with
status 2; no traceback.
"""

import argparse
import sys
import time
from pathlib import Path

from .params import EndpointParams, BUSES, WISHBONE_MODES
from .regmap import PROFILES, Feature


__all__ = ["main"]


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message}")


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
}


def _option_message(error):
    message = str(error)
    for name in sorted(_OPTION_OF, key=len, reverse=True):
        if message.startswith(name + " "):
            return _OPTION_OF[name] + message[len(name):]
    return message


def _add_endpoint_options(parser):
    group = parser.add_argument_group("endpoint parameters")
    group.add_argument("--profile", choices=list(PROFILES), default="seed",
                       help="register-map profile (default: seed)")
    group.add_argument("--bus", choices=BUSES, default="axil",
                       help="subordinate (and MSI manager) bus (default: axil)")
    group.add_argument("--wishbone-mode", choices=WISHBONE_MODES, default=None,
                       help="Wishbone flavour, with --bus wishbone (default: classic)")
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


def _default_features(rng):
    if rng:
        from .rng import RNG_DEFAULT_FEATURES
        return RNG_DEFAULT_FEATURES
    return 1 << Feature.VERSION_1


def params_from_args(args):
    """Validated parameters; raises ValueError/TypeError naming the parameter."""
    if args.wishbone_mode is not None and args.bus != "wishbone":
        raise ValueError("wishbone_mode needs --bus wishbone")
    # An example device (generate --device) brings its own defaults and checks.
    rng = getattr(args, "device", "none") == "rng"
    params = EndpointParams(
        profile=args.profile, bus=args.bus, wishbone_mode=args.wishbone_mode or "classic",
        queues=args.queues,
        queue_size=args.queue_size if args.queue_size is not None else (8 if rng else 256),
        device_id=args.device_id,
        vendor_id=args.vendor_id,
        features=args.features if args.features is not None else _default_features(rng),
        notify_base=args.notify_base,
        notify_multiplier=args.notify_multiplier, notify_fifo_depth=args.notify_fifo_depth,
        config_size=args.config_size if args.config_size is not None else (0 if rng else 256),
        shm=args.shm,
        msi_window=args.msi_window, name=args.name, addr_width=args.addr_width)
    if rng:
        from .rng import check_rng_params
        check_rng_params(params)
    return params


def _cmd_generate(args, params):
    out = Path(args.output if args.output else f"build/{params.name}.v")
    if out.suffix not in (".v", ".sv"):
        raise UsageError(f"virtio-mmio generate: -o must name a .v file, not {str(out)!r}")
    from .generate import generate_verilog
    from .artefacts import write_artefacts
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    out.write_text(generate_verilog(params, args.device))
    written = {"verilog": out}
    if not args.no_artefacts:
        written.update(write_artefacts(params, out))
    for kind, path in written.items():
        print(f"{kind:>9}: {path}")
    print(f"{params.name}: profile {params.profile}, {params.bus}"
          f"{' ' + params.wishbone_mode if params.bus == 'wishbone' else ''}, "
          f"{params.queues} queue(s), {1 << params.addr_width:#x}-byte window "
          f"({time.monotonic() - start:.1f} s)")
    return 0


def _cmd_bench(args, params):
    if args.scaling:
        from virtio_mmio_sim.scaling import DEVICES, run_scaling
        devices = args.devices.split(",")
        for device in devices:
            if device not in DEVICES:
                raise UsageError(f"virtio-mmio bench: error: --devices must be among "
                                 f"{', '.join(DEVICES)}, not {device!r}")
        sizes = args.sizes if isinstance(args.sizes, list) else [args.sizes]
        for size in sizes:
            if not 1 <= size <= 2047:
                raise UsageError(f"virtio-mmio bench: error: --sizes must be integers in "
                                 f"1..2047, not {size}")
        if not 1 <= args.seeds <= 20:
            raise UsageError(f"virtio-mmio bench: error: --seeds must be in 1..20, "
                             f"not {args.seeds}")
        run_scaling(params, queues=sizes, devices=devices,
                    seeds=tuple(range(1, args.seeds + 1)), out_dir=args.out_dir)
        return 0
    from virtio_mmio_sim.bench import run_bench
    return run_bench(params, accesses=args.accesses, out=sys.stdout)


def _cmd_linux(args, params):
    if args.timeout <= 0:
        raise UsageError(f"virtio-mmio linux: error: --timeout must be positive, "
                         f"not {args.timeout:g}")
    try:
        from virtio_mmio_sim.linux.run import run_linux
        from virtio_mmio_sim.linux.setup import SetupError
    except ImportError as error:
        raise UsageError(f"virtio-mmio linux: error: needs the test tools ({error.name} is "
                         f"missing): pip install -e '.[dev]'") from None
    try:
        run = run_linux(bus=args.bus, simulator=args.sim, device=args.device,
                        timeout=args.timeout, work_dir=args.work_dir, out=sys.stdout)
    except (SetupError, RuntimeError) as error:
        print(f"virtio-mmio linux: setup failed: {error}", file=sys.stderr)
        return 2
    for check in run.checks:
        print(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    print(f"virtio-mmio linux: {run.verdict()}")
    return 0 if run.passed else 1


def _cmd_build(args, params):
    try:
        from virtio_mmio_platforms import BOARDS
        from virtio_mmio_platforms.build import BuildError, build, program
    except ImportError as error:
        raise UsageError(f"virtio-mmio build: error: {error}") from None
    if args.list:
        for board in BOARDS.values():
            print(f"{board.name:<22} {board.description}; programs with {board.programmer}; "
                  f"--device {', '.join(board.devices)}"
                  + (f" (not rng: {board.misfit})" if "rng" not in board.devices else ""))
        return 0
    if args.board is None:
        raise UsageError("virtio-mmio build: error: --board is required (one of "
                         f"{', '.join(BOARDS)}; --list describes them)")
    if args.board not in BOARDS:
        raise UsageError(f"virtio-mmio build: error: --board must be one of "
                         f"{', '.join(BOARDS)}, not {args.board!r}")
    try:
        BOARDS[args.board].check_device(args.device)
    except ValueError as error:
        raise UsageError(f"virtio-mmio build: error: {error}") from None
    try:
        summary = build(args.board, args.build_dir, device=args.device, out=sys.stdout)
        print("\n".join(summary.lines()))
        if args.program:
            program(args.board, summary.bitstream, out=sys.stdout)
    except BuildError as error:
        print(f"virtio-mmio build: {error}", file=sys.stderr)
        return 1
    return 0


def _cmd_host(args, params):
    from virtio_mmio_sim.bridge_host import BridgeError, PortError, SerialTransport, \
        BridgeClient, run_sync
    from virtio_mmio_sim.host import host_session, rng_host_session, simulate_session
    say = lambda line: print(line, flush=True)
    session = rng_host_session if args.device == "rng" else host_session
    if args.simulate:
        print(f"virtio-mmio host: simulated demo SoC, device {args.device} (Amaranth "
              f"simulator, UART at bit level)")
        report = simulate_session(say=say, device=args.device)
    else:
        if args.port is None:
            raise UsageError("virtio-mmio host: error: --port is required (the board's serial "
                             "port, e.g. /dev/ttyUSB1), or --simulate")
        if args.timeout <= 0:
            raise UsageError(f"virtio-mmio host: error: --timeout must be positive, "
                             f"not {args.timeout:g}")
        try:
            transport = SerialTransport(args.port, args.baud, timeout_s=args.timeout)
        except PortError as error:
            raise UsageError(f"virtio-mmio host: error: {error}") from None
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
    generate.add_argument("--device", choices=("none", "rng"), default="none",
                          help="example device inside the module: rng = virtio-rng with its "
                               "own DMA manager port m_dma_axil_*/m_dma_wb_* (default: none)")
    _add_endpoint_options(generate)
    generate.set_defaults(handler=_cmd_generate)

    bench = commands.add_parser(
        "bench", help="measure the performance figures of SPEC §11 in simulation",
        description="Measure clocks per access, read latency and concurrency on both buses "
                    "in Amaranth's simulator and print a table against the SPEC §11 targets.")
    bench.add_argument("--accesses", type=_integer, default=64, metavar="K",
                       help="back-to-back accesses per measurement (default: 64)")
    bench.add_argument("--scaling", action="store_true",
                       help="instead: synthesise and place the endpoint for each N in the "
                            "SPEC §11 harness (Fmax, area, ratio to a bare AXI4-Lite register; "
                            "minutes)")
    bench.add_argument("--devices", default="ice40,ecp5", metavar="LIST",
                       help="--scaling: devices, of ice40, ecp5 (default: both)")
    bench.add_argument("--sizes", type=_integer_list, default=[1, 2, 8, 64, 512, 2047],
                       metavar="N,N,...", help="--scaling: queue counts "
                                               "(default: 1,2,8,64,512,2047)")
    bench.add_argument("--seeds", type=_integer, default=5, metavar="K",
                       help="--scaling: nextpnr seeds 1..K, median taken (default: 5)")
    bench.add_argument("--out-dir", default="build/scaling", metavar="DIR",
                       help="--scaling: where the table, JSON and plot go (default: "
                            "build/scaling)")
    _add_endpoint_options(bench)
    bench.set_defaults(handler=_cmd_bench)

    linux = commands.add_parser(
        "linux", help="boot stock Linux in QEMU against the generated Verilog",
        description="Boot Debian's arm64 kernel in QEMU with the endpoint (plain-v2, a "
                    "virtio-rng back-end) simulated by cocotb in virtio-mmio slot 31; the stock "
                    "virtio_mmio and virtio-rng drivers probe it and read /dev/hwrng. The "
                    "first run downloads and builds QEMU and the guest (minutes, cached).")
    linux.add_argument("--bus", choices=("axil", "wishbone"), default="axil",
                       help="the subordinate port the accesses arrive on (default: axil)")
    linux.add_argument("--sim", choices=("verilator", "icarus"), default="verilator",
                       help="the Verilog simulator (default: verilator)")
    linux.add_argument("--device", choices=("model", "rtl"), default="model",
                       help="behind the endpoint: a Python virtio-rng back-end on the "
                            "device-side ports (model), or the RTL virtio-rng device of "
                            "generate --device rng, its DMA port served from guest memory "
                            "(rtl) (default: model)")
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
    board.add_argument("--program", action="store_true",
                       help="load the bitstream with the board's programmer afterwards")
    board.add_argument("--build-dir", default="build/boards", metavar="DIR",
                       help="where each board's build goes (default: build/boards; the rng "
                            "variant in BOARD-rng)")
    board.add_argument("--device", choices=("demo", "rng"), default="demo",
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
    host.add_argument("--baud", type=_integer, default=115_200, help="baud rate (default: "
                      "115200, what the demo uses)")
    host.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS",
                      help="wait this long for each answer (default: 1)")
    host.add_argument("--simulate", action="store_true",
                      help="run the same session against the simulated demo SoC instead")
    host.add_argument("--device", choices=("demo", "rng"), default="demo",
                      help="the bitstream's device (build --device): rng runs the virtio-rng "
                           "session, buffers in the on-board guest RAM (default: demo)")
    host.set_defaults(handler=_cmd_host, endpoint_options=False)
    return parser


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        try:
            params = params_from_args(args) if getattr(args, "endpoint_options", True) \
                else None
        except (ValueError, TypeError) as error:
            raise UsageError(f"virtio-mmio {args.command}: error: {_option_message(error)}")
        return args.handler(args, params)
    except UsageError as error:
        print(str(error).splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("virtio-mmio: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
