"""Running the endpoint in Amaranth's simulator with the driver model attached.

Waveforms on demand: with ``VIRTIO_MMIO_WAVES=1`` in the environment every simulation writes a
VCD under ``build/waves/`` named after the running test.
"""

import contextlib
import os
import re
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from virtio_mmio.endpoint import VirtioMmioEndpoint

from .amaranth_bus import backend_for
from .driver import VirtioMmioDriver


__all__ = ["simulate", "waves_enabled", "vector_event", "settle", "random_events",
           "EndpointWithDevice"]


class EndpointWithDevice(wiring.Component):
    """The endpoint for ``params`` with ``device`` (a component with a member
    ``port: In(DeviceSignature(params))``) joined to its device side in one
    ``wiring.connect``, and the endpoint's ``bus`` brought out for the register-access
    backends (:func:`~virtio_mmio_sim.amaranth_bus.backend_for`)."""

    def __init__(self, params, device):
        self.params = params
        self.endpoint = VirtioMmioEndpoint(params)
        self.device = device
        super().__init__({"bus": self.endpoint.signature.members["bus"]})

    def elaborate(self, platform):
        m = Module()
        m.submodules.endpoint, m.submodules.device = self.endpoint, self.device
        wiring.connect(m, self.endpoint.device, self.device.port)
        wiring.connect(m, wiring.flipped(self.bus), self.endpoint.bus)
        return m


def waves_enabled():
    return os.environ.get("VIRTIO_MMIO_WAVES", "") not in ("", "0")


def _wave_path(name):
    test = name or os.environ.get("PYTEST_CURRENT_TEST", "sim").split(" ")[0]
    return Path("build/waves") / (re.sub(r"[^A-Za-z0-9_.-]+", "_", test) + ".vcd")


def simulate(params, body, *, pause=None, processes=(), name=None, timeout_cycles=200_000):
    """Simulate an endpoint built from ``params``; ``body(ctx, dut, bus, driver)`` is the
    testbench. ``processes`` are ``fn(dut) -> async process`` models added beside it. Returns the
    endpoint. Fails if the testbench has not finished within ``timeout_cycles``."""
    dut = VirtioMmioEndpoint(params)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    finished = []

    async def testbench(ctx):
        bus = backend_for(ctx, dut, pause=pause)
        await body(ctx, dut, bus, VirtioMmioDriver(bus, params.profile))
        finished.append(True)

    sim.add_testbench(testbench)
    for process in processes:
        sim.add_process(process(dut))
    if waves_enabled():
        path = _wave_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = sim.write_vcd(str(path))
        print(f"waveform: {path}")
    else:
        writer = contextlib.nullcontext()
    expired = []

    async def watchdog(ctx):
        for _ in range(timeout_cycles):
            await ctx.tick()
        expired.append(True)

    sim.add_testbench(watchdog, background=True)
    with writer:
        while sim.advance():
            if expired:
                raise TimeoutError(f"testbench did not finish within {timeout_cycles} cycles")
    return dut


async def vector_event(ctx, dut, vector):
    """One device event on MSI ``vector`` for one cycle: a configuration change for vector 0,
    a used buffer on queue ``vector - 1`` otherwise."""
    if vector == 0:
        ctx.set(dut.device.config_changed, 1)
    else:
        ctx.set(dut.device.used_queue, vector - 1)
        ctx.set(dut.device.used_valid, 1)
    await ctx.tick()
    ctx.set(dut.device.config_changed, 0)
    ctx.set(dut.device.used_valid, 0)


async def settle(ctx, cycles=20):
    """Let ``cycles`` clocks pass."""
    await ctx.tick().repeat(cycles)


def random_events(ctx, dut, rng, queues, on=True, *, used=0.4, config=0.05):
    """Drive the device-event inputs for the next cycle at random: a used buffer with
    probability ``used`` on a queue in 0..N+1 (so some are ignored, queue >= N), a configuration
    change with probability ``config``; none while not ``on``."""
    ctx.set(dut.device.used_valid, on and rng.random() < used)
    ctx.set(dut.device.used_queue, rng.randrange(queues + 2))
    ctx.set(dut.device.config_changed, on and rng.random() < config)
