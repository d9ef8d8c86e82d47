"""The virtio-mmio register core (docs/spec.md §4, §5, §6 QueueNotify, §7 INTx, §9 device
ports).

One core serves every bus subordinate of the bus layer (:mod:`virtio_mmio.bus`) through
:class:`~virtio_mmio.bus.RegisterBus`, a minimal word-addressed request interface with fixed
read latency, tagged by the core's :attr:`RegisterCore.classifier`.

The core holds no register of its own: it builds the logic of each block of the profile
(:mod:`virtio_mmio.transport`) and joins them — the write tags of all blocks, the read
multiplexer over their rows, ``w_ready`` from their hold conditions, and the device reset.
"""

from amaranth.hdl import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..bus import RegisterBus
from .msi import MsiMessage
from ..params import EndpointParams
from ..regmap import RegisterMap
from .block import Transport
from .classifier import TransportClassifier
from .config import ConfigPort, config_addr_width
from .notify import NotifyLayout
from .queues import QueueStatePort


__all__ = ["NotifyLayout", "QueueStatePort", "ConfigPort",
           "RegisterCore", "config_addr_width"]


class RegisterCore(wiring.Component):
    """The transport's register file and state.

    Parameters
    ----------
    params : :class:`EndpointParams`

    Members
    -------
    bus : ``In(RegisterBus)``
        Requests from a bus front-end.
    used_valid, used_queue, config_changed, needs_reset : ``In``
        Device events, accepted every cycle (docs/spec.md §7). Used events for queues >= N are
        ignored.
    notify : ``Out(stream.Signature(NotifyLayout))``
        Notifications (QueueNotify and doorbells, see :class:`DoorbellDecoder`) in write order,
        through a :class:`NotifyQueue` of ``params.notify_fifo_depth`` entries; while it is
        full, a further notification waits on the bus. A device reset discards what the device
        has not taken.
    notify_dropped : ``Out(32)``
        Count of notify writes dropped (partial writes, queues >= N); cleared by ``rst`` only.
    status, driver_ok, device_reset, features, irq : ``Out``
        Device state (docs/spec.md §5, §9); ``features`` is the accepted set once FEATURES_OK is
        set, otherwise 0.
    queue : ``In(QueueStatePort)``
    config : ``Out(ConfigPort)``
    msi_message : ``Out(stream.Signature(MsiMessage))``
        MSI messages for the manager port (see :class:`InterruptController`).
    msi_rejected : ``Out(32)``
        UPDATEs refused by the MSI address window, and (dragonball) MsiCmd writes with an op
        the profile does not have.
    msi_enabled : ``Out(1)``
        MSI is enabled (InterruptStatus is 0 and ``irq`` low meanwhile).

    Latency
    -------
    Reads: data one cycle after the request. Writes: take effect at the next clock edge, so a
    read in the following cycle sees them; a device reset (Status = 0) is complete at that
    edge too. The queue table (QueueNum, QueueDesc/Driver/Device, read only by the device on
    ``queue``) is written one edge later, from a register. Throughput: one read and one write
    per cycle, concurrently.

    Reset
    -----
    ``rst`` clears everything including ConfigGeneration; a device reset keeps ConfigGeneration.
    """

    def __init__(self, params):
        if not isinstance(params, EndpointParams):
            raise TypeError(f"params must be an EndpointParams, not {params!r}")
        self._params = params
        self._regmap = RegisterMap(params.profile)
        blocks = self._regmap.profile.blocks
        self._classifier = TransportClassifier(params, self._regmap, blocks)
        self._logics = {block.name: block.logic(params, self._regmap) for block in blocks}
        super().__init__({
            "bus": In(RegisterBus(params.addr_width, self.classifier.address_layout,
                                  self.classifier.data_layout)),
            "used_valid": In(1), "used_queue": In(16),
            "config_changed": In(1), "needs_reset": In(1),
            "notify": Out(stream.Signature(NotifyLayout)), "notify_dropped": Out(32),
            "status": Out(8), "driver_ok": Out(1), "device_reset": Out(1),
            "features": Out(64), "irq": Out(1),
            "queue": In(QueueStatePort()),
            "config": Out(ConfigPort(config_addr_width(params))),
            "msi_message": Out(stream.Signature(MsiMessage)), "msi_rejected": Out(32),
            "msi_enabled": Out(1),
        })
        self._transport = Transport(self, params, self._regmap, self._classifier, self._logics)

    @property
    def params(self):
        return self._params

    @property
    def regmap(self):
        return self._regmap

    @property
    def interrupts(self):
        """The interrupt controller (proofs reach its observation members before
        elaboration)."""
        return self._logics["interrupts"].controller

    @property
    def classifier(self):
        """The :class:`~virtio_mmio.transport.classifier.TransportClassifier` whose tags the
        front-end sends with each write."""
        return self._classifier

    @property
    def notify_queue(self):
        """The :class:`NotifyQueue` (proofs observe its ``held``)."""
        return self._logics["notify"].queue

    def elaborate(self, platform):
        m = Module()
        t = self._transport
        bus = self.bus
        for logic in self._logics.values():
            logic.elaborate(m, t)

        # ---- writes: registers never wait; a notification or a config write may.
        m.d.comb += [
            bus.w_ready.eq(~Cat(*t.write_holds).any() if t.write_holds else 1),
            t.we.eq(bus.w_valid & bus.w_ready),
        ]

        # ---- reads: every readable row from its block, placed in its lanes; a block that
        # answers a window (config space) answers from the device one cycle later.
        values = {}
        for logic in self._logics.values():
            values.update(logic.read(t))
        missing = [reg.name for reg in self._regmap if reg.readable and reg.name not in values]
        if missing:
            raise RuntimeError(f"No block reads {', '.join(missing)}")
        read_value = Signal(32)
        with m.If(bus.r_valid):
            with m.Switch(bus.r_addr):
                for word in sorted({reg.word for reg in self._regmap}):
                    lanes = [(reg, values[reg.name]) for reg in self._regmap.at_word(word)
                             if reg.readable]
                    if not lanes:
                        continue
                    with m.Case(word):
                        value = 0
                        for reg, part in lanes:
                            value = value | (Value.cast(part) << (8 * (reg.offset % 4)))
                        m.d.comb += read_value.eq(value)
        read_data = Signal(32)
        m.d.sync += read_data.eq(read_value)
        r_data = read_data
        for logic in self._logics.values():
            window = logic.window_read(t)
            if window is not None:
                hit, answer = window
                read_from_window = Signal()
                m.d.sync += read_from_window.eq(hit)
                r_data = Mux(read_from_window, answer, r_data)
        m.d.comb += bus.r_data.eq(r_data)

        # ---- device reset: last, so it wins over everything above in the reset cycle.
        with m.If(t.device_reset):
            for logic in self._logics.values():
                m.d.sync += logic.device_reset()
        return m
