"""The endpoint: register core + bus front-end + MSI manager port, as a component with
interfaces (``bus``, ``msi``, ``device``). Verilog generation flattens them to the port names of
the Verilog port contract (docs/spec.md §9, :mod:`virtio_mmio.flatten`)."""

from amaranth.hdl import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .bus import (AXI4LiteSignature, AXI4LiteSubordinate, AXI4LiteWriteManager,
                  WishboneSignature, WishboneSubordinate, WishboneWriteManager)
from .flatten import FlatPorts, inspected
from .transport.core import (ConfigPort, NotifyLayout, QueueStatePort, RegisterCore,
                             config_addr_width)
from .params import EndpointParams


__all__ = ["DeviceSignature", "VirtioMmioEndpoint", "port_members"]


class DeviceSignature(wiring.Signature):
    """The endpoint's device side (docs/spec.md §9), seen from the endpoint: a device logic takes
    ``DeviceSignature(params).flip()``, so ``wiring.connect(m, endpoint.device, device.port)``
    joins them.

    Members (flat Verilog names in brackets)
    -------
    used_valid, used_queue[15:0], config_changed, needs_reset : In
        Device events (docs/spec.md §7), accepted every cycle.
    notify : Out(stream.Signature(NotifyLayout)) [notify_valid, notify_ready, notify_queue,
    notify_data, notify_has_data]
        Notifications (docs/spec.md §6): valid holds until ready; the data word as written;
        ``has_data`` when it is a notification-data word.
    notify_dropped[31:0] : Out
        Count of dropped notify writes.
    status[7:0], driver_ok, device_reset, features[63:0] : Out
        Device state (docs/spec.md §5); ``device_reset`` pulses for one cycle after a device reset.
    queue : In(QueueStatePort) [q_sel in; q_ready, q_num, q_desc, q_driver, q_device out]
        Queue-state read port, one cycle of latency.
    config : Out(ConfigPort) [cfg_addr, cfg_re, cfg_rdata, cfg_we, cfg_wdata, cfg_be]
        Config-space port: the device answers ``re`` on ``rdata`` one cycle later.
    """

    def __init__(self, params):
        super().__init__({
            "used_valid": In(1), "used_queue": In(16),
            "config_changed": In(1), "needs_reset": In(1),
            "notify": Out(stream.Signature(NotifyLayout)), "notify_dropped": Out(32),
            "status": Out(8), "driver_ok": Out(1), "device_reset": Out(1), "features": Out(64),
            "queue": In(QueueStatePort()),
            "config": Out(ConfigPort(config_addr_width(params))),
        })


#: The device side's members that pass straight through between the core and ``device``.
_DEVICE_PORTS = ("used_valid", "used_queue", "config_changed", "needs_reset", "notify_dropped",
                 "status", "driver_ok", "device_reset", "features")


def port_members(params):
    """The endpoint's flat ports (docs/spec.md §9) as signature members, from the parameters
    alone."""
    return inspected(FlatPorts(inspected(VirtioMmioEndpoint(params)))).signature.members


class VirtioMmioEndpoint(wiring.Component):
    """The virtio-mmio endpoint as one component.

    Parameters
    ----------
    params : :class:`EndpointParams`, or keyword arguments for one

    Members (flat Verilog names in brackets, docs/spec.md §9)
    -------
    bus : In(AXI4LiteSignature) or In(WishboneSignature) [s_axil_* or s_wb_*]
        Subordinate port (``params.bus``), see :class:`AXI4LiteSubordinate` and
        :class:`WishboneSubordinate` for latency and throughput.
    msi : Out(...) of the same flavour, write channels only [m_axil_* or m_wb_*]
        MSI manager port, see :class:`AXI4LiteWriteManager` and :class:`WishboneWriteManager`.
        Idle in profiles without MSI.
    irq, msi_error, msi_errors[31:0], msi_rejected[31:0] : Out
        Level interrupt ``InterruptStatus != 0`` (low while MSI is enabled); latched MSI write
        error and the count of error responses; count of UPDATEs refused by the MSI address
        window (and, in ``dragonball``, of MsiCmd writes with an unknown op).
    msi_enabled : Out
        MSI is switched on (events become messages; ``irq`` stays low).
    device : Out(:class:`DeviceSignature`)
        The device side: events, the notification stream, device state, the queue-state and
        config-space ports.

    ``port_prefixes`` names the flat ports (:class:`~virtio_mmio.flatten.FlatPorts`).
    """

    def __init__(self, params=None, **kwargs):
        if params is None:
            params = EndpointParams(**kwargs)
        elif kwargs:
            raise TypeError("Pass either params or keyword arguments, not both")
        if not isinstance(params, EndpointParams):
            raise TypeError(f"params must be an EndpointParams, not {params!r}")
        self._params = params
        self._core = None
        self._frontend = None
        self._msi_manager = None
        if params.bus == "axil":
            bus = AXI4LiteSignature(params.addr_width)
            msi = AXI4LiteSignature(64, read=False)
        else:
            bus = WishboneSignature(params.addr_width - 2, mode=params.wishbone_mode)
            msi = WishboneSignature(62, mode=params.wishbone_mode, read=False)
        super().__init__({
            "bus": In(bus), "msi": Out(msi),
            "irq": Out(1), "msi_error": Out(1), "msi_errors": Out(32), "msi_rejected": Out(32),
            "msi_enabled": Out(1),
            "device": Out(DeviceSignature(params)),
        })

    @property
    def params(self):
        return self._params

    @property
    def port_prefixes(self):
        """How the interfaces flatten to the docs/spec.md §9 names (see
        :mod:`virtio_mmio.flatten`)."""
        axil = self._params.bus == "axil"
        return {("bus",): "s_axil" if axil else "s_wb", ("msi",): "m_axil" if axil else "m_wb",
                ("device",): "", ("device", "notify", "payload"): "notify",
                ("device", "queue"): "q", ("device", "config"): "cfg"}

    # The sub-components are made on first use, so proofs and tests can reach their
    # observation members before elaboration, and an endpoint that is only inspected (for its
    # ports) builds nothing.
    @property
    def core(self):
        if self._core is None:
            self._core = RegisterCore(self._params)
        return self._core

    @property
    def msi_manager(self):
        if self._msi_manager is None:
            p = self._params
            if p.bus == "axil":
                self._msi_manager = AXI4LiteWriteManager()
            else:
                self._msi_manager = WishboneWriteManager(p.wishbone_mode)
        return self._msi_manager

    @property
    def frontend(self):
        if self._frontend is None:
            p = self._params
            if p.bus == "axil":
                self._frontend = AXI4LiteSubordinate(p.addr_width, self.core.classifier,
                                                     pipeline=p.pipeline)
            else:
                self._frontend = WishboneSubordinate(p.addr_width, self.core.classifier,
                                                     mode=p.wishbone_mode, pipeline=p.pipeline)
        return self._frontend

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.frontend = frontend = self.frontend
        m.submodules.msi_manager = manager = self.msi_manager
        bus = frontend.axi if self._params.bus == "axil" else frontend.wb
        wiring.connect(m, wiring.flipped(self.bus), bus)
        wiring.connect(m, wiring.flipped(self.msi),
                       manager.axi if self._params.bus == "axil" else manager.wb)
        wiring.connect(m, frontend.reg, core.bus)
        wiring.connect(m, core.msi_message, manager.message)

        device = self.device
        for name in _DEVICE_PORTS:
            inner, outer = getattr(core, name), getattr(device, name)
            if device.signature.members[name].flow == In:
                m.d.comb += inner.eq(outer)
            else:
                m.d.comb += outer.eq(inner)
        wiring.connect(m, wiring.flipped(device.notify), core.notify)
        wiring.connect(m, wiring.flipped(device.queue), core.queue)
        wiring.connect(m, wiring.flipped(device.config), core.config)
        m.d.comb += [
            self.msi_error.eq(manager.error), self.msi_errors.eq(manager.errors),
            self.msi_rejected.eq(core.msi_rejected), self.msi_enabled.eq(core.msi_enabled),
            self.irq.eq(core.irq),
        ]
        return m
