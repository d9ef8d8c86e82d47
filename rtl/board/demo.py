"""The board demo SoC: the endpoint driven from a host PC over a UART (boards issue,
docs/spec.md §10).

Two variants share one address map (bridge byte addresses, regions of 64 KiB):

::

    device="demo" (default)
    host PC ==UART==> UartBridge --Wishbone classic--> 0x0000_0000  VirtioMmioEndpoint (bus)
                                                       0x0001_0000  MsiSink mailbox (read, clear)
                                                       0x0002_0000  DemoDevice control
    VirtioMmioEndpoint msi ------------------------->  MsiSink (accepts the MSI window)
    VirtioMmioEndpoint device side <----------------->  DemoDevice (answers notifications)

    device="rng"
    host PC ==UART==> UartBridge --Wishbone classic--> 0x0000_0000  VirtioRngEndpoint (bus)
                                                       0x0001_0000  MsiSink mailbox (read, clear)
                                                       0x0002_0000  RngControl
                                                       0x0003_0000  GuestRam, host port (4 KiB)
    VirtioRngEndpoint msi -------------------------->  MsiSink (accepts the MSI window)
    VirtioRngEndpoint dma (rng DMA) ---------------->  GuestRam, guest-physical
                                                       0x8000_0000 + 4 KiB; elsewhere err

In both, bridge addresses outside the regions answer ``err`` (the bridge NAKs with
BUS_ERROR), and so do host offsets past the guest RAM's 4 KiB. The guest RAM's host offset
``x`` is guest-physical address ``0x8000_0000 + x`` (:data:`GUEST_RAM`, :data:`RAM_BASE`).

* :class:`MsiSink` takes the endpoint's MSI writes (inside :data:`MSI_WINDOW`), keeps the last
  :data:`MAILBOX_ENTRIES` messages (address, data) in a block-RAM mailbox the host reads over the
  bridge, counts them and lights one LED per vector (message data = vector number).
* :class:`DemoDevice` stands in for device logic: every notification it takes is answered with a
  used-buffer event for the notified queue (when auto-answer is on), it holds a small config
  space, and it counts what it saw. Its control block lets the host raise a config-change event.
* :class:`GuestRam` (``device="rng"``) is the guest memory the virtio-rng device
  (:mod:`virtio_mmio.devices.rng`) reaches over DMA: one block RAM, the device's port and the host's
  port served one access at a time. The host lays out the split ring and reads back the used
  ring and the random bytes through the bridge (:data:`GUEST_RAM`, :data:`RAM_BASE`).
* :class:`RngControl` (``device="rng"``) identifies the variant, shows the device's counters
  and lets the host restart the device (the generator back at its seed) and zero the guest RAM,
  so every session on a board starts from the same state.
* :class:`DemoSoC` wires them; its pins are ``rx``/``tx`` and ``leds``. The board tops
  (``virtio_mmio_platforms``) put it on a board; the simulated host session drives the same
  component at bit level.
"""

from amaranth.hdl import Cat, Const, Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..bus import WishboneSignature
from ..devices import BOARD_DEVICES
from ..endpoint import VirtioMmioEndpoint
from ..params import EndpointParams
from ..regmap import Feature
from ..devices.rng import DEFAULT_SEED, VirtioRngEndpoint, check_rng_params, rng_params
from .uart import UartBridge


__all__ = ["MSI_WINDOW", "MAILBOX_BASE", "CONTROL_BASE", "RAM_BASE", "MAILBOX_ENTRIES",
           "DEMO_ID", "RNG_DEMO_ID", "RNG_FLAGS", "GUEST_RAM", "RNG_SEED", "DEVICES", "demo_params",
           "rng_demo_params", "MsiSink", "DemoDevice", "GuestRam", "RngControl", "DemoSoC",
           "DemoRegister", "RngRegister"]

#: Where the endpoint may send MSI messages (the x86 MSI page, for familiarity): (base, size).
MSI_WINDOW = (0xFEE0_0000, 0x1000)
#: Bridge byte addresses of the SoC's regions (the endpoint sits at 0).
MAILBOX_BASE = 0x0001_0000
CONTROL_BASE = 0x0002_0000
#: The guest RAM's host port (``device="rng"``).
RAM_BASE = 0x0003_0000
REGION_SHIFT = 16
MAILBOX_ENTRIES = 16
#: Read from the control block's ID register: "VMDM".
DEMO_ID = 0x4D44_4D56
#: Read from the rng variant's ID register: "VMRN".
RNG_DEMO_ID = 0x4E52_4D56
#: The guest RAM as the rng device sees it: (guest-physical base, size in bytes).
GUEST_RAM = (0x8000_0000, 0x1000)
#: The rng device's xorshift32 seed in the demo (what a restart brings it back to).
RNG_SEED = DEFAULT_SEED
#: The rng variant's FLAGS register, bit by bit.
RNG_FLAGS = ("irq", "driver_ok", "msi_enabled", "msi_error", "busy", "broken", "clearing")
#: The devices the SoC can carry behind the endpoint (from the registry of example devices).
DEVICES = BOARD_DEVICES


class DemoRegister:
    """Byte offsets inside the mailbox and control regions (host view)."""
    # Mailbox (MAILBOX_BASE + ...)
    MAILBOX_COUNT = 0x00        # R: messages received since the last clear; W: clear all
    MAILBOX_ENTRY = 0x80        # R: entry i at 0x80 + 8 i: address (low 32 bits), data
    # Control (CONTROL_BASE + ...)
    ID = 0x00                   # R: DEMO_ID
    NOTIFICATIONS = 0x04        # R: notifications taken
    USED_EVENTS = 0x08          # R: used-buffer events raised
    FLAGS = 0x0C                # R: bit 0 irq, 1 driver_ok, 2 msi_enabled, 3 msi_error,
                                #    4 auto-answer on
    AUTO_ANSWER = 0x10          # RW: bit 0, answer notifications with used events (reset: 1)
    CONFIG_EVENT = 0x14         # W: any write raises a config-change event
    LAST_NOTIFY = 0x18          # R: queue (15:0) of the last notification


class RngRegister:
    """Byte offsets inside the rng variant's control region (CONTROL_BASE + ..., host view)."""
    ID = 0x00                   # R: RNG_DEMO_ID
    BUFFERS = 0x04              # R: buffers the device used since the last restart
    FLAGS = 0x0C                # R: bit i is RNG_FLAGS[i]
    RESTART = 0x1C              # W: any write resets the rng endpoint (generator back at
                                #    RNG_SEED) and zeroes the guest RAM


def demo_params(**changes):
    """The endpoint the demo carries: profile seed (MSI), Wishbone classic (what the bridge
    speaks), two queues, a 16-byte config space, the MSI window of the sink."""
    params = dict(profile="seed", bus="wishbone", wishbone_mode="classic", queues=2,
                  queue_size=16, features=1 << Feature.VERSION_1, config_size=16,
                  msi_window=MSI_WINDOW, name="virtio_mmio_demo")
    params.update(changes)
    return EndpointParams(**params)


def rng_demo_params(**changes):
    """The rng endpoint the ``device="rng"`` demo carries: :func:`~virtio_mmio.devices.rng.rng_params`
    (one queue of the device's default size) with the profile seed (MSI), Wishbone classic and
    the MSI window of the sink."""
    params = dict(profile="seed", bus="wishbone", wishbone_mode="classic",
                  msi_window=MSI_WINDOW, name="virtio_mmio_rng_demo")
    params.update(changes)
    return rng_params(**params)


class MsiSink(wiring.Component):
    """Receives the endpoint's MSI writes; the host reads what arrived.

    Members
    -------
    msi : ``In(WishboneSignature(62, read=False))``
        Subordinate for the endpoint's MSI manager (Wishbone classic). Writes inside
        :data:`MSI_WINDOW` are acknowledged in the next cycle and recorded; anything else is
        answered with ``err``.
    host : ``In(WishboneSignature(REGION_SHIFT - 2))``
        The host's view: message count, clear, the mailbox entries (see :class:`DemoRegister`).
        Read latency: ``ack`` two cycles after ``stb`` (block-RAM read).
    leds : ``Out(n_leds)``
        LED ``i`` lights when a message with data ``i`` arrives; cleared by a clear.
    """

    def __init__(self, n_leds):
        if not isinstance(n_leds, int) or not 0 <= n_leds <= 32:
            raise ValueError(f"n_leds must be an integer in 0..32, not {n_leds!r}")
        self._n_leds = n_leds
        super().__init__({
            "msi": In(WishboneSignature(62, read=False)),
            "host": In(WishboneSignature(REGION_SHIFT - 2)),
            "leds": Out(max(n_leds, 1)),
            "count": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mailbox = mailbox = Memory(shape=64, depth=MAILBOX_ENTRIES, init=[])
        store = mailbox.write_port()
        fetch = mailbox.read_port()
        index_bits = (MAILBOX_ENTRIES - 1).bit_length()

        base, size = MSI_WINDOW
        byte_address = Cat(Const(0, 2), self.msi.adr)
        inside = (byte_address >= base) & (byte_address < base + size)
        request = self.msi.cyc & self.msi.stb & ~self.msi.ack & ~self.msi.err
        clear = Signal()
        m.d.sync += [self.msi.ack.eq(0), self.msi.err.eq(0)]
        with m.If(request):
            with m.If(inside & self.msi.we):
                m.d.sync += self.msi.ack.eq(1)
            with m.Else():
                m.d.sync += self.msi.err.eq(1)
        accept = request & inside & self.msi.we
        m.d.comb += [
            store.addr.eq(self.count[:index_bits]),
            store.data.eq(Cat(byte_address[:32], self.msi.dat_w)),
            store.en.eq(accept),
        ]
        with m.If(clear):
            m.d.sync += [self.count.eq(0), self.leds.eq(0)]
        with m.Elif(accept):
            m.d.sync += self.count.eq(self.count + 1)
            for vector in range(self._n_leds):
                with m.If(self.msi.dat_w == vector):
                    m.d.sync += self.leds[vector].eq(1)

        # Host side: word 0 = count (write clears), words 0x80/4.. = entries.
        host = self.host
        offset = Cat(Const(0, 2), host.adr)
        entry_area = offset >= DemoRegister.MAILBOX_ENTRY
        started = Signal()
        high_word = Signal()
        m.d.comb += fetch.addr.eq(host.adr[1:1 + index_bits])
        m.d.sync += host.ack.eq(0)
        with m.If(host.cyc & host.stb & ~host.ack):
            with m.If(host.we):
                m.d.sync += host.ack.eq(1)
                m.d.comb += clear.eq(offset == DemoRegister.MAILBOX_COUNT)
            with m.Elif(~entry_area):
                m.d.sync += host.ack.eq(1)
                with m.If(offset == DemoRegister.MAILBOX_COUNT):
                    m.d.sync += host.dat_r.eq(self.count)
                with m.Else():
                    m.d.sync += host.dat_r.eq(0)
            with m.Elif(~started):
                # The block RAM answers one cycle after the address.
                m.d.sync += [started.eq(1), high_word.eq(host.adr[0])]
            with m.Else():
                m.d.sync += [started.eq(0), host.ack.eq(1),
                             host.dat_r.eq(fetch.data.word_select(high_word, 32))]
        with m.Else():
            m.d.sync += started.eq(0)
        m.d.comb += host.err.eq(0)
        return m


class DemoDevice(wiring.Component):
    """Device logic standing in for a real device on the endpoint's device-side ports.

    Members
    -------
    notify_valid, notify_ready, notify_queue : the endpoint's notification stream (always
        ready).
    used_valid, used_queue : used-buffer event for the notified queue one cycle after the
        notification is taken, when auto-answer is on.
    config_changed : one-cycle pulse when the host writes ``CONFIG_EVENT``.
    cfg_* : a 16-byte config space (read latency 1), initialised to "virtio-mmio demo".
    control : ``In(WishboneSignature(REGION_SHIFT - 2))``, the host's control block
        (:class:`DemoRegister`); ``ack`` one cycle after ``stb``.
    flags_in : irq, driver_ok, msi_enabled, msi_error from the endpoint (for FLAGS).
    """

    CONFIG_INIT = b"virtio-mmio demo"

    def __init__(self, cfg_addr_width):
        super().__init__({
            "notify_valid": In(1), "notify_ready": Out(1), "notify_queue": In(16),
            "used_valid": Out(1), "used_queue": Out(16), "config_changed": Out(1),
            "cfg_addr": In(cfg_addr_width), "cfg_re": In(1), "cfg_rdata": Out(32),
            "cfg_we": In(1), "cfg_wdata": In(32), "cfg_be": In(4),
            "control": In(WishboneSignature(REGION_SHIFT - 2)),
            "flags_in": In(4),
            "notifications": Out(32), "used_events": Out(32), "notify_seen": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        words = len(self.CONFIG_INIT) // 4
        config = [Signal(32, init=int.from_bytes(self.CONFIG_INIT[4 * i:4 * i + 4], "little"),
                         name=f"config{i}") for i in range(words)]
        auto_answer = Signal(init=1)
        last_queue = Signal(16)

        # Notifications: always ready; answer with a used event for that queue.
        m.d.comb += self.notify_ready.eq(1)
        m.d.sync += [self.used_valid.eq(0), self.notify_seen.eq(0)]
        with m.If(self.notify_valid):
            m.d.sync += [self.notifications.eq(self.notifications + 1),
                         last_queue.eq(self.notify_queue), self.notify_seen.eq(1)]
            with m.If(auto_answer):
                m.d.sync += [self.used_valid.eq(1), self.used_queue.eq(self.notify_queue),
                             self.used_events.eq(self.used_events + 1)]

        # Config space.
        word = self.cfg_addr[2:]
        with m.Switch(word):
            for i in range(words):
                with m.Case(i):
                    with m.If(self.cfg_re):
                        m.d.sync += self.cfg_rdata.eq(config[i])
                    with m.If(self.cfg_we):
                        for lane in range(4):
                            with m.If(self.cfg_be[lane]):
                                m.d.sync += config[i].word_select(lane, 8).eq(
                                    self.cfg_wdata.word_select(lane, 8))
            with m.Default():
                with m.If(self.cfg_re):
                    m.d.sync += self.cfg_rdata.eq(0)

        # Control block.
        bus = self.control
        offset = Cat(Const(0, 2), bus.adr)
        m.d.sync += [bus.ack.eq(0), self.config_changed.eq(0)]
        m.d.comb += bus.err.eq(0)
        with m.If(bus.cyc & bus.stb & ~bus.ack):
            m.d.sync += bus.ack.eq(1)
            with m.If(bus.we):
                with m.If(offset == DemoRegister.AUTO_ANSWER):
                    with m.If(bus.sel[0]):
                        m.d.sync += auto_answer.eq(bus.dat_w[0])
                with m.If(offset == DemoRegister.CONFIG_EVENT):
                    m.d.sync += self.config_changed.eq(1)
            with m.Else():
                with m.Switch(offset):
                    for register, value in (
                            (DemoRegister.ID, Const(DEMO_ID, 32)),
                            (DemoRegister.NOTIFICATIONS, self.notifications),
                            (DemoRegister.USED_EVENTS, self.used_events),
                            (DemoRegister.FLAGS, Cat(self.flags_in, auto_answer)),
                            (DemoRegister.AUTO_ANSWER, auto_answer),
                            (DemoRegister.LAST_NOTIFY, last_queue)):
                        with m.Case(register):
                            m.d.sync += bus.dat_r.eq(value)
                    with m.Default():
                        m.d.sync += bus.dat_r.eq(0)
        return m


class GuestRam(wiring.Component):
    """Guest memory for the rng device: one block RAM with a DMA port and a host port.

    Parameters
    ----------
    window : (base, size)
        The guest-physical window the ``dma`` port answers (``size`` a power of two, at least
        4 bytes, ``base`` a multiple of it); :data:`GUEST_RAM` by default.

    Members
    -------
    dma : ``In(WishboneSignature(62))``
        Subordinate for the rng device's DMA manager (Wishbone classic, byte lanes ``sel``).
        Accesses inside ``window`` reach the RAM; anything else is answered with ``err``.
    host : ``In(WishboneSignature(REGION_SHIFT - 2))``
        The host's view (through the bridge): byte offset 0 is the window's base; offsets past
        the RAM are answered with ``err``.
    clear : ``In(1)``
        A pulse starts zeroing the RAM, one word per clock; ``clearing`` is high meanwhile and
        no access is served (they wait).
    clearing : ``Out(1)``

    The RAM has one read and one write port on a shared address (what an iCE40 or ECP5 block
    RAM offers), so the two bus ports take turns: each cycle one waiting access is served,
    the other port first when both wait (round robin). Bytes outside ``sel`` are kept.

    Latency and throughput
    ----------------------
    ``ack`` (or ``err``) one clock after the request when the other port is not served in the
    same cycle, else two; one access per clock over both ports. Zeroing takes ``size / 4``
    clocks.

    Reset: the RAM's contents are kept (zero at configuration); ``clearing`` is low.
    """

    def __init__(self, window=GUEST_RAM):
        if not isinstance(window, tuple) or len(window) != 2:
            raise TypeError(f"window must be a (base, size) tuple, not {window!r}")
        base, size = window
        if not isinstance(size, int) or size < 4 or size & (size - 1) or \
                size > 1 << REGION_SHIFT:
            raise ValueError(f"window size must be a power of two in 4..{1 << REGION_SHIFT}, "
                             f"not {size!r}")
        if not isinstance(base, int) or not 0 <= base < 1 << 64 or base % size:
            raise ValueError(f"window base must be a 64-bit multiple of its size {size:#x}, "
                             f"not {base!r}")
        self._window = window
        super().__init__({
            "dma": In(WishboneSignature(62)),
            "host": In(WishboneSignature(REGION_SHIFT - 2)),
            "clear": In(1),
            "clearing": Out(1),
        })

    @property
    def window(self):
        return self._window

    def elaborate(self, platform):
        m = Module()
        base, size = self._window
        depth = size // 4
        index_bits = (depth - 1).bit_length()
        m.submodules.ram = ram = Memory(shape=32, depth=depth, init=[])
        store = ram.write_port(granularity=8)
        fetch = ram.read_port()
        dma, host = self.dma, self.host

        dma_inside = dma.adr[index_bits:] == base >> (2 + index_bits)
        host_inside = host.adr[index_bits:] == 0
        # A request is waiting until its answer is out (ack and err are registered).
        dma_waiting = dma.cyc & dma.stb & ~dma.ack & ~dma.err & ~self.clearing
        host_waiting = host.cyc & host.stb & ~host.ack & ~host.err & ~self.clearing
        host_first = Signal()
        serve_dma = Signal()
        serve_host = Signal()
        m.d.comb += [
            serve_dma.eq(dma_waiting & ~(host_waiting & host_first)),
            serve_host.eq(host_waiting & ~serve_dma),
        ]
        with m.If(serve_dma):
            m.d.sync += host_first.eq(1)
        with m.Elif(serve_host):
            m.d.sync += host_first.eq(0)

        wipe = Signal(range(depth))
        address = Signal(index_bits)
        with m.If(self.clearing):
            m.d.comb += [address.eq(wipe), store.en.eq(0xF), store.data.eq(0)]
            m.d.sync += wipe.eq(wipe + 1)
            with m.If(wipe == depth - 1):
                m.d.sync += self.clearing.eq(0)
        with m.Elif(serve_dma):
            m.d.comb += [address.eq(dma.adr[:index_bits]), store.data.eq(dma.dat_w)]
            with m.If(dma.we & dma_inside):
                m.d.comb += store.en.eq(dma.sel)
        with m.Else():
            m.d.comb += [address.eq(host.adr[:index_bits]), store.data.eq(host.dat_w)]
            with m.If(serve_host & host.we & host_inside):
                m.d.comb += store.en.eq(host.sel)
        with m.If(self.clear):
            m.d.sync += [self.clearing.eq(1), wipe.eq(0)]
        m.d.comb += [store.addr.eq(address), fetch.addr.eq(address)]

        m.d.sync += [
            dma.ack.eq(serve_dma & dma_inside), dma.err.eq(serve_dma & ~dma_inside),
            host.ack.eq(serve_host & host_inside), host.err.eq(serve_host & ~host_inside),
        ]
        # The read port answers one clock after the address: in the cycle of the ack.
        m.d.comb += [dma.dat_r.eq(fetch.data), host.dat_r.eq(fetch.data)]
        return m


class RngControl(wiring.Component):
    """The rng variant's control block (:class:`RngRegister`), in place of DemoDevice's.

    Members
    -------
    control : ``In(WishboneSignature(REGION_SHIFT - 2))``
        The host's view; ``ack`` one clock after ``stb``.
    flags_in : ``In(len(RNG_FLAGS))``
        :data:`RNG_FLAGS`, bit by bit (for FLAGS).
    buffers : ``In(32)``
        The device's used-buffer count (for BUFFERS).
    restart : ``Out(1)``
        One-cycle pulse when the host writes RESTART.
    """

    def __init__(self):
        super().__init__({
            "control": In(WishboneSignature(REGION_SHIFT - 2)),
            "flags_in": In(len(RNG_FLAGS)),
            "buffers": In(32),
            "restart": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.control
        offset = Cat(Const(0, 2), bus.adr)
        m.d.sync += [bus.ack.eq(0), self.restart.eq(0)]
        m.d.comb += bus.err.eq(0)
        with m.If(bus.cyc & bus.stb & ~bus.ack):
            m.d.sync += bus.ack.eq(1)
            with m.If(bus.we):
                with m.If(offset == RngRegister.RESTART):
                    m.d.sync += self.restart.eq(1)
            with m.Else():
                with m.Switch(offset):
                    for register, value in ((RngRegister.ID, Const(RNG_DEMO_ID, 32)),
                                            (RngRegister.BUFFERS, self.buffers),
                                            (RngRegister.FLAGS, self.flags_in)):
                        with m.Case(register):
                            m.d.sync += bus.dat_r.eq(value)
                    with m.Default():
                        m.d.sync += bus.dat_r.eq(0)
        return m


class DemoSoC(wiring.Component):
    """The demo SoC: UART bridge, endpoint, MSI sink, and the device behind the endpoint.

    Parameters
    ----------
    divisor : int
        Clock cycles per UART bit (clock frequency / baud rate).
    n_leds : int
        LEDs on the board. LED 0 is ``irq``, LED 1 blinks on each notification (``"demo"``) or
        while the rng device works (``"rng"``), stretched to ~0.1 s with ``pulse_cycles``; the
        rest show MSI vectors 0, 1, …
    params : :class:`EndpointParams`, default :func:`demo_params` or :func:`rng_demo_params`
        Must be a Wishbone classic endpoint with ``msi_window`` inside :data:`MSI_WINDOW`; for
        ``device="rng"`` also what :func:`~virtio_mmio.devices.rng.check_rng_params` accepts.
    device : ``"demo"`` or ``"rng"``
        ``"demo"``: :class:`~virtio_mmio.endpoint.VirtioMmioEndpoint` with :class:`DemoDevice`.
        ``"rng"``: :class:`~virtio_mmio.devices.rng.VirtioRngEndpoint` (seed :data:`RNG_SEED`), its DMA
        port on a :class:`GuestRam`, and :class:`RngControl` (the map in the module docstring).

    Members
    -------
    rx : ``In(1)``, tx : ``Out(1)`` — the UART pins (idle high).
    leds : ``Out(n_leds)``.

    The bridge's STATUS word: bits 0–3 ``irq``, ``driver_ok``, ``msi_enabled``, ``msi_error``;
    bits 4–5 the rng device's ``busy`` and ``broken`` (0 for ``"demo"``); bits 15:8 the
    notifications the demo device took (``"demo"``) or the buffers the rng device used
    (``"rng"``), mod 256; bits 23:16 the MSI messages in the sink, mod 256; bits 31:24 the
    device status.
    """

    def __init__(self, divisor, *, n_leds=8, params=None, pulse_cycles=1 << 20, device="demo"):
        if device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
        if params is None:
            params = demo_params() if device == "demo" else rng_demo_params()
        if not isinstance(params, EndpointParams):
            raise TypeError(f"params must be an EndpointParams, not {params!r}")
        if params.bus != "wishbone" or params.wishbone_mode != "classic":
            raise ValueError(f"params.bus must be 'wishbone' with wishbone_mode 'classic' (the "
                             f"bridge is a Wishbone classic manager), not {params.bus!r}/"
                             f"{params.wishbone_mode!r}")
        if (1 << params.addr_width) > 1 << REGION_SHIFT:
            raise ValueError(f"params.addr_width must be at most {REGION_SHIFT} for the demo's "
                             f"address map, not {params.addr_width}")
        if device == "rng":
            check_rng_params(params)
        if not isinstance(n_leds, int) or not 2 <= n_leds <= 16:
            raise ValueError(f"n_leds must be an integer in 2..16, not {n_leds!r}")
        if not isinstance(pulse_cycles, int) or pulse_cycles < 1:
            raise ValueError(f"pulse_cycles must be a positive integer, not {pulse_cycles!r}")
        self._params = params
        self._device = device
        self._divisor = divisor
        self._n_leds = n_leds
        self._pulse_cycles = pulse_cycles
        self.bridge = UartBridge(divisor)
        if device == "demo":
            self.endpoint = VirtioMmioEndpoint(params)
        else:
            self.endpoint = VirtioRngEndpoint(params, seed=RNG_SEED)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "leds": Out(n_leds)})

    @property
    def params(self):
        return self._params

    @property
    def device(self):
        return self._device

    @staticmethod
    def _flat(port):
        return {name: getattr(port, name) for name in
                ("adr", "dat_w", "sel", "cyc", "stb", "we", "ack", "err", "dat_r")}

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        endpoint = self.endpoint
        m.submodules.sink = sink = MsiSink(self._n_leds - 2)
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx)]

        targets = [(0, self._flat(endpoint.bus)),
                   (MAILBOX_BASE >> REGION_SHIFT, self._flat(sink.host))]
        if self._device == "demo":
            m.submodules.endpoint = endpoint
            m.submodules.device = device = DemoDevice(len(endpoint.device.config.addr))
            state = endpoint.device
            targets.append((CONTROL_BASE >> REGION_SHIFT, self._flat(device.control)))
            self._wire_demo_device(m, endpoint, device)
            activity = device.notify_seen
            counter = device.notifications
            device_flags = Const(0, 2)
        else:
            m.submodules.control = control = RngControl()
            m.submodules.ram = ram = GuestRam(GUEST_RAM)
            # RESTART resets the whole rng endpoint, generator included; the bridge, the sink
            # and the RAM's arbiter run on.
            m.submodules.endpoint = ResetInserter(control.restart)(endpoint)
            targets += [(CONTROL_BASE >> REGION_SHIFT, self._flat(control.control)),
                        (RAM_BASE >> REGION_SHIFT, self._flat(ram.host))]
            m.d.comb += [
                ram.dma.adr.eq(endpoint.dma.adr), ram.dma.dat_w.eq(endpoint.dma.dat_w),
                ram.dma.sel.eq(endpoint.dma.sel), ram.dma.cyc.eq(endpoint.dma.cyc),
                ram.dma.stb.eq(endpoint.dma.stb), ram.dma.we.eq(endpoint.dma.we),
                endpoint.dma.ack.eq(ram.dma.ack), endpoint.dma.err.eq(ram.dma.err),
                endpoint.dma.dat_r.eq(ram.dma.dat_r),
                ram.clear.eq(control.restart),
                control.buffers.eq(endpoint.rng_buffers),
                control.flags_in.eq(Cat(endpoint.irq, endpoint.driver_ok, endpoint.msi_enabled,
                                        endpoint.msi_error, endpoint.rng_busy,
                                        endpoint.rng_broken, ram.clearing)),
            ]
            activity = endpoint.rng_busy
            counter = endpoint.rng_buffers
            device_flags = Cat(endpoint.rng_busy, endpoint.rng_broken)
            state = endpoint        # the rng endpoint brings status and driver_ok out

        self._decode(m, bridge.bus, targets)

        # MSI manager -> sink.
        wiring.connect(m, endpoint.msi, sink.msi)
        m.d.comb += bridge.status.eq(Cat(endpoint.irq, state.driver_ok, endpoint.msi_enabled,
                                         endpoint.msi_error, device_flags, Const(0, 2),
                                         counter[:8], sink.count[:8], state.status))

        # LEDs: irq, a stretched activity blink, then the MSI vectors.
        blink = Signal(range(self._pulse_cycles + 1))
        with m.If(activity):
            m.d.sync += blink.eq(self._pulse_cycles)
        with m.Elif(blink != 0):
            m.d.sync += blink.eq(blink - 1)
        m.d.comb += self.leds.eq(Cat(endpoint.irq, blink != 0, sink.leds))
        return m

    @staticmethod
    def _decode(m, manager, targets):
        """Connect the bridge's Wishbone classic port to ``targets`` ((region, flat port))."""
        region = manager.adr[REGION_SHIFT - 2:]
        local = manager.adr[:REGION_SHIFT - 2]
        unmapped_err = Signal()
        hit_any = Signal()
        ack_or = []
        err_or = [unmapped_err]
        for number, flat in targets:
            hit = Signal(name=f"hit_region{number}")
            m.d.comb += [
                hit.eq(region == number),
                flat["adr"].eq(local),
                flat["dat_w"].eq(manager.dat_w),
                flat["sel"].eq(manager.sel),
                flat["we"].eq(manager.we),
                flat["cyc"].eq(manager.cyc & hit),
                flat["stb"].eq(manager.stb & hit),
            ]
            with m.If(hit):
                m.d.comb += manager.dat_r.eq(flat["dat_r"])
            ack_or.append(flat["ack"] & hit)
            err_or.append(flat["err"] & hit)
        m.d.comb += hit_any.eq(Cat(*(region == number for number, _ in targets)).any())
        # Nothing lives elsewhere: answer err in the next cycle, so the bridge never waits.
        m.d.sync += unmapped_err.eq(manager.cyc & manager.stb & ~hit_any & ~unmapped_err)
        m.d.comb += [manager.ack.eq(Cat(*ack_or).any()), manager.err.eq(Cat(*err_or).any())]

    @staticmethod
    def _wire_demo_device(m, endpoint, device):
        ports = endpoint.device
        m.d.comb += [
            device.notify_valid.eq(ports.notify.valid),
            device.notify_queue.eq(ports.notify.payload.queue),
            ports.notify.ready.eq(device.notify_ready),
            ports.used_valid.eq(device.used_valid),
            ports.used_queue.eq(device.used_queue),
            ports.config_changed.eq(device.config_changed),
            ports.needs_reset.eq(0),
            ports.queue.sel.eq(0),
            device.cfg_addr.eq(ports.config.addr), device.cfg_re.eq(ports.config.re),
            device.cfg_we.eq(ports.config.we), device.cfg_wdata.eq(ports.config.wdata),
            device.cfg_be.eq(ports.config.be), ports.config.rdata.eq(device.cfg_rdata),
            device.flags_in.eq(Cat(endpoint.irq, ports.driver_ok, endpoint.msi_enabled,
                                   endpoint.msi_error)),
        ]
