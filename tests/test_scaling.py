"""``virtio-mmio bench --scaling``: the docs/spec.md §11 harness and reference design behave as
specified, and a small run produces the table, JSON and plot. (What the figures are is the
benchmark's business, not asserted here.)"""

import json
import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from virtio_mmio_sim.scaling import BareRegister, ShiftHarness, run_scaling


class _Probe(wiring.Component):
    """A design with a reset, a 5-bit input and a 7-bit output = input + 1 (registered)."""

    a: In(5)
    y: Out(7)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y.eq(self.a + 1)
        return m


def test_harness_feeds_inputs_from_the_chain_and_shifts_outputs_out():
    harness = ShiftHarness(_Probe())
    sim = Simulator(harness)
    result = {}

    async def clock(ctx):
        # The harness's clock is its clk pin.
        while True:
            await ctx.delay(0.5e-6)
            ctx.set(harness.clk, 1)
            await ctx.delay(0.5e-6)
            ctx.set(harness.clk, 0)

    async def testbench(ctx):
        # Input chain: bit 0 is the reset, then a[0..4]; the first bit shifted in ends last.
        value = 0b10110
        bits = [(value >> i) & 1 for i in reversed(range(5))] + [0]    # a[4] first, rst last
        for bit in bits:
            ctx.set(harness.sin, bit)
            await ctx.tick("chain")
        # The chain keeps shifting, so the design sees ``a`` for one cycle only: the next edge
        # registers y = a + 1, the one after captures it, the third (with load) moves it into
        # the output chain.
        await ctx.tick("chain").repeat(2)
        ctx.set(harness.load, 1)
        await ctx.tick("chain")
        ctx.set(harness.load, 0)
        out = 0
        for i in range(7):
            out |= ctx.get(harness.sout) << i
            await ctx.tick("chain")
        result["out"] = out

    sim.add_process(clock)
    sim.add_testbench(testbench)
    sim.run()
    assert result["out"] == 0b10110 + 1


def test_bare_register_is_a_full_throughput_axi4_lite_subordinate():
    dut = BareRegister()
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    seen = {}

    async def testbench(ctx):
        axi = dut.axi
        ctx.set(axi.bready, 1)
        ctx.set(axi.rready, 1)
        values = [random.getrandbits(32) for _ in range(8)]
        reads = []
        for value in values:
            # A write and a read in the same cycle, every cycle.
            ctx.set(axi.awvalid, 1)
            ctx.set(axi.wvalid, 1)
            ctx.set(axi.wdata, value)
            ctx.set(axi.wstrb, 0xF)
            ctx.set(axi.arvalid, 1)
            assert ctx.get(axi.awready) and ctx.get(axi.wready) and ctx.get(axi.arready)
            await ctx.tick()
            assert ctx.get(axi.bvalid) and ctx.get(axi.rvalid)
            reads.append(ctx.get(axi.rdata))
        seen["reads"], seen["values"] = reads, values

    sim.add_testbench(testbench)
    sim.run()
    # Each read returns the value written in the cycle before it.
    assert seen["reads"][1:] == seen["values"][:-1]


def test_small_scaling_run_writes_table_json_and_plot(tmp_path):
    results = run_scaling(queues=(1,), devices=("ice40",), seeds=(1,), out_dir=tmp_path,
                          out=open("/dev/null", "w"))
    assert all(r.error is None for r in results), [r.error for r in results]
    # Both configurations by default: without and with the request stage.
    endpoint, = [r for r in results if r.design == "endpoint" and not r.pipeline]
    pipelined, = [r for r in results if r.design == "endpoint" and r.pipeline]
    bare, = [r for r in results if r.design == "bare"]
    assert endpoint.logic > bare.logic > 0 and endpoint.fmax and bare.fmax
    assert pipelined.logic > endpoint.logic and pipelined.fmax     # the stage's registers
    table = (tmp_path / "scaling.md").read_text()
    assert "bare AXI4-Lite register" in table and "| endpoint | 1 |" in table
    assert "| endpoint, pipelined | 1 |" in table
    assert len(json.loads((tmp_path / "scaling.json").read_text())) == 3
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_device_is_named():
    with pytest.raises(ValueError, match="devices must be among ice40, ecp5"):
        run_scaling(devices=("gowin",), out=open("/dev/null", "w"))


def test_unknown_configuration_is_named():
    with pytest.raises(ValueError, match="configs must be among default, pipelined"):
        run_scaling(configs=("fast",), out=open("/dev/null", "w"))
