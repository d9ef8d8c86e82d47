"""``examples/amaranth_design.py``: the endpoint in a user's own Amaranth design. Its device
logic, joined to the endpoint with one ``wiring.connect``, is driven by the driver model; the
whole example elaborates into build plans for two amaranth-boards platforms."""

import importlib.util
from pathlib import Path

import pytest

from amaranth.sim import Simulator

from virtio_mmio_sim.amaranth_bus import backend_for
from virtio_mmio_sim.amaranth_harness import EndpointWithDevice
from virtio_mmio_sim.driver import VirtioMmioDriver


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "amaranth_design.py"


def _example():
    spec = importlib.util.spec_from_file_location("amaranth_design", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notify_leds_behind_the_endpoint():
    """Queue 1 notified → LED 1 toggles and a used-buffer interrupt is raised; a queue that is
    not ready is ignored; a device reset puts the LEDs out."""
    example = _example()
    params = example.ExampleSoC(100).params

    top = EndpointWithDevice(params, example.NotifyLeds(params, 2))

    async def bench(ctx):
        drv = VirtioMmioDriver(backend_for(ctx, top))
        await drv.initialize(queues=[dict(index=1, size=16, desc=0x1000, driver=0x2000,
                                          device=0x3000)])
        await drv.write("QueueNotify", 0)                   # queue 0 is not ready
        await drv.write("QueueNotify", 1)
        for _ in range(6):
            await ctx.tick()
        assert ctx.get(top.device.leds) == 0b10
        assert ctx.get(top.endpoint.irq)
        assert await drv.read("InterruptStatus") == 1
        await drv.write("InterruptACK", 1)
        await drv.write("Status", 0)                        # device reset
        await ctx.tick()
        assert ctx.get(top.device.leds) == 0

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run_until(2e-4)


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s"])
def test_example_elaborates_into_a_build_plan(board):
    example = _example()
    plan = example.platform(board).prepare(example.ExampleTop(), name="example")
    constraints = next(text for name, text in plan.files.items()
                       if name.endswith((".pcf", ".lpf")))
    constraints = constraints if isinstance(constraints, str) else constraints.decode()
    assert "uart_0__tx" in constraints and "led_1" in constraints
