"""The endpoint: register core + bus front-end + MSI manager port, with the flat port names of
the Verilog port contract (SPEC §9)."""

from amaranth.hdl import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .bus import (AXI4LiteSignature, AXI4LiteSubordinate, AXI4LiteWriteManager,
                  WishboneSignature, WishboneSubordinate, WishboneWriteManager)
from .transport.core import ConfigPort, QueueStatePort, RegisterCore, config_addr_width
from .params import EndpointParams


__all__ = ["VirtioMmioEndpoint", "port_members"]


def _flat(prefix, signature):
    """Members of ``signature`` as top-level ports named ``{prefix}_{name}``."""
    return {f"{prefix}_{name}": member for name, member in signature.members.items()}


def port_members(params):
    """The endpoint's ports (SPEC §9) as signature members, from the parameters alone."""
    members = {}
    if params.bus == "axil":
        members.update(_flat("s_axil", AXI4LiteSignature(params.addr_width).flip()))
        members.update(_flat("m_axil", AXI4LiteSignature(64, read=False)))
    else:
        members.update(_flat("s_wb", WishboneSignature(
            params.addr_width - 2, mode=params.wishbone_mode).flip()))
        members.update(_flat("m_wb", WishboneSignature(
            62, mode=params.wishbone_mode, read=False)))
    members.update({
        "irq": Out(1), "msi_error": Out(1), "msi_errors": Out(32), "msi_rejected": Out(32),
        "msi_enabled": Out(1),
        "used_valid": In(1), "used_queue": In(16),
        "config_changed": In(1), "needs_reset": In(1),
        "notify_valid": Out(1), "notify_ready": In(1),
        "notify_queue": Out(16), "notify_data": Out(32), "notify_has_data": Out(1),
        "notify_dropped": Out(32),
        "status": Out(8), "driver_ok": Out(1), "device_reset": Out(1), "features": Out(64),
    })
    members.update(_flat("q", QueueStatePort().flip()))
    members.update(_flat("cfg", ConfigPort(config_addr_width(params))))
    return members


class VirtioMmioEndpoint(wiring.Component):
    """The virtio-mmio endpoint as one component with the ports of SPEC §9.

    Parameters
    ----------
    params : :class:`EndpointParams`, or keyword arguments for one

    Members
    -------
    s_axil_* or s_wb_*
        Subordinate port (``params.bus``), see :class:`AXI4LiteSubordinate` and
        :class:`WishboneSubordinate` for latency and throughput.
    m_axil_* or m_wb_*
        MSI manager port (same flavour as the subordinate), see :class:`AXI4LiteWriteManager`
        and :class:`WishboneWriteManager`. Idle in profiles without MSI.
    irq, msi_error, msi_errors[31:0], msi_rejected[31:0]
        Level interrupt ``InterruptStatus != 0`` (low while MSI is enabled); latched MSI write
        error and the count of error responses; count of UPDATEs refused by the MSI address
        window (and, in ``dragonball``, of MsiCmd writes with an unknown op).
    msi_enabled
        MSI is switched on (events become messages; ``irq`` stays low).
    used_valid, used_queue[15:0], config_changed, needs_reset
        Device events (SPEC §7), accepted every cycle.
    notify_valid, notify_ready, notify_queue[15:0], notify_data[31:0], notify_has_data
        Notification stream (SPEC §6): valid holds until ready; the data word as written;
        ``notify_has_data`` when it is a notification-data word. ``notify_dropped[31:0]``
        counts dropped notify writes.
    status[7:0], driver_ok, device_reset, features[63:0]
        Device state (SPEC §5); ``device_reset`` pulses for one cycle after a device reset.
    q_sel[15:0] in; q_ready, q_num[15:0], q_desc, q_driver, q_device out
        Queue-state read port, one cycle of latency.
    cfg_addr, cfg_re, cfg_rdata, cfg_we, cfg_wdata, cfg_be
        Config-space port: the device answers ``cfg_re`` on ``cfg_rdata`` one cycle later.
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
        super().__init__(port_members(params))

    @property
    def params(self):
        return self._params

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
                self._frontend = AXI4LiteSubordinate(p.addr_width, self.core.classifier)
            else:
                self._frontend = WishboneSubordinate(p.addr_width, self.core.classifier,
                                                     mode=p.wishbone_mode)
        return self._frontend

    def elaborate(self, platform):
        m = Module()
        p = self._params
        m.submodules.core = core = self.core
        m.submodules.frontend = frontend = self.frontend
        m.submodules.msi_manager = manager = self.msi_manager
        if p.bus == "axil":
            self._connect_flat(m, "s_axil", frontend.axi)
            self._connect_flat(m, "m_axil", manager.axi)
        else:
            self._connect_flat(m, "s_wb", frontend.wb)
            self._connect_flat(m, "m_wb", manager.wb)
        wiring.connect(m, frontend.reg, core.bus)
        wiring.connect(m, core.msi_message, manager.message)

        m.d.comb += [
            core.used_valid.eq(self.used_valid), core.used_queue.eq(self.used_queue),
            core.config_changed.eq(self.config_changed), core.needs_reset.eq(self.needs_reset),
            self.msi_error.eq(manager.error), self.msi_errors.eq(manager.errors),
            self.msi_rejected.eq(core.msi_rejected), self.msi_enabled.eq(core.msi_enabled),
            self.irq.eq(core.irq),
            self.notify_valid.eq(core.notify.valid),
            core.notify.ready.eq(self.notify_ready),
            self.notify_queue.eq(core.notify.payload.queue),
            self.notify_data.eq(core.notify.payload.data),
            self.notify_has_data.eq(core.notify.payload.has_data),
            self.notify_dropped.eq(core.notify_dropped),
            self.status.eq(core.status), self.driver_ok.eq(core.driver_ok),
            self.device_reset.eq(core.device_reset), self.features.eq(core.features),
        ]
        self._connect_flat(m, "q", core.queue)
        self._connect_flat(m, "cfg", core.config)
        return m

    def _connect_flat(self, m, prefix, interface):
        """Wire the flat ports ``{prefix}_*`` to the members of a sub-component's interface.

        ``interface`` belongs to a sub-component; a member flowing into it is driven from the
        top's port of the same name, and the other way round."""
        for name, member in interface.signature.members.items():
            inner = getattr(interface, name)
            outer = getattr(self, f"{prefix}_{name}")
            if member.flow == In:
                m.d.comb += inner.eq(outer)
            else:
                m.d.comb += outer.eq(inner)
