"""Board top-levels for the demo SoC (:mod:`virtio_mmio.board.demo`), on amaranth-boards platforms.

:data:`BOARDS` lists the supported boards; :class:`DemoTop` puts :class:`~virtio_mmio.board.demo.DemoSoC`
on one: the board's USB-UART (or, on the OrangeCrab, which has none, a UART on two header pins)
at :data:`BAUD`, and its LEDs, with either device behind the endpoint (``device="demo"`` or
``"rng"``, see :data:`~virtio_mmio.board.demo.DEVICES`). :mod:`.build` builds and programs bitstreams
with YoWASP.
"""

from dataclasses import dataclass

from amaranth.build import Attrs, Pins, Resource, Subsignal
from amaranth.hdl import Module
from amaranth.lib import io, wiring

from virtio_mmio.board.demo import DEVICES, DemoSoC


__all__ = ["BAUD", "Board", "BOARDS", "board", "DemoTop"]

#: The bridge's baud rate on every board.
BAUD = 115_200


@dataclass(frozen=True)
class Board:
    """A supported board: how to make its platform and what the demo uses on it."""
    name: str
    description: str
    platform_class: str             # "module:Class" in amaranth_boards
    family: str                     # "ice40" or "ecp5"
    loader_board: str               # openFPGALoader's --board name (what --program uses)
    connection: str                 # how openFPGALoader reaches it, for messages
    leds: tuple                     # (resource name, number) of each LED used, in order
    uart_pins: tuple = None         # ((connector, number), tx pin, rx pin) if no UART
    serial_hint: str = ""
    #: Devices (of virtio_mmio.board.demo.DEVICES) that fit the FPGA; why the others do not.
    devices: tuple = ("demo", "rng")
    misfit: str = ""

    def check_device(self, device):
        """ValueError naming the boards to use when ``device`` does not fit this board."""
        if device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
        if device not in self.devices:
            others = [board.name for board in BOARDS.values() if device in board.devices]
            raise ValueError(f"the {device} demo does not fit the {self.name}: {self.misfit}; "
                             f"build it for {' or '.join(others)}")

    def platform(self):
        module, _, name = self.platform_class.partition(":")
        platform = getattr(__import__(module, fromlist=[name]), name)()
        if self.uart_pins is not None:
            connector, tx, rx = self.uart_pins
            platform.add_resources([Resource(
                "uart", 0,
                Subsignal("tx", Pins(tx, dir="o", conn=connector)),
                Subsignal("rx", Pins(rx, dir="i", conn=connector)),
                Attrs(IO_TYPE="LVCMOS33"))])
        return platform


BOARDS = {board.name: board for board in (
    Board("icebreaker", "1BitSquared iCEBreaker (iCE40UP5K-SG48, 12 MHz)",
          "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40",
          "ice40_generic", "its FT2232H (writes the SPI flash)", leds=(("led", 0), ("led", 1)),
          serial_hint="the FTDI's second port, usually /dev/ttyUSB1", devices=("demo",),
          misfit="it needs more than the iCE40UP5K's 5280 logic cells "
                 "(5362 measured)"),
    Board("ulx3s-85f", "Radiona ULX3S with LFE5U-85F (25 MHz)",
          "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5",
          "ulx3s", "its FT231X (loads the FPGA SRAM)",
          leds=tuple(("led", i) for i in range(8)),
          serial_hint="the FTDI port, usually /dev/ttyUSB0"),
    Board("orangecrab-r0.2-25f", "Good Stuff OrangeCrab r0.2 with LFE5U-25F (48 MHz)",
          "amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_25FPlatform", "ecp5",
          "orangeCrab", "USB DFU: hold its button while plugging it in (bootloader mode)",
          leds=(("rgb_led", 0),),
          uart_pins=(("io", 0), "0", "1"),
          serial_hint="a 3.3 V USB-serial adapter on the Feather pins 0 (TX) and 1 (RX)"),
)}


def board(name):
    """The :class:`Board` called ``name``; ValueError listing the boards otherwise."""
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {name!r}") from None


class DemoTop(wiring.Component):
    """The demo SoC on ``board``'s pins: UART at :data:`BAUD`, LEDs (irq, activity blink,
    MSI vectors, as many as the board has); ``device`` as for
    :class:`~virtio_mmio.board.demo.DemoSoC`."""

    def __init__(self, board, device="demo"):
        if not isinstance(board, Board):
            raise TypeError(f"board must be a Board (see BOARDS), not {board!r}")
        board.check_device(device)
        self.board = board
        self.device = device
        super().__init__({})

    def n_leds(self):
        count = 0
        for name, _ in self.board.leds:
            count += 3 if name == "rgb_led" else 1
        return count

    def elaborate(self, platform):
        m = Module()
        divisor = round(platform.default_clk_frequency / BAUD)
        m.submodules.soc = soc = DemoSoC(divisor, n_leds=max(2, self.n_leds()),
                                         device=self.device)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [soc.rx.eq(rx.i), tx.o.eq(soc.tx)]
        lit = iter(soc.leds)
        for name, number in self.board.leds:
            led = platform.request(name, number, dir="-")
            ports = [led.r, led.g, led.b] if name == "rgb_led" else [led]
            for index, port in enumerate(ports):
                bit = next(lit, None)
                if bit is not None:
                    buffer = io.Buffer("o", port)
                    m.submodules[f"{name}_{number}_{index}"] = buffer
                    m.d.comb += buffer.o.eq(bit)
        return m
