"""The endpoint as an Amaranth component with interfaces (``bus``, ``msi``, ``device``), a device
joined to it with ``wiring.connect``, and the flattening to the docs/spec.md §9 names that only
Verilog generation applies (:mod:`virtio_mmio.flatten`)."""

import pytest

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from virtio_mmio.bus import AXI4LiteSignature, WishboneSignature
from virtio_mmio.endpoint import DeviceSignature, VirtioMmioEndpoint, port_members
from virtio_mmio.flatten import FlatPorts, flat_ports
from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import Status
from virtio_mmio_sim.amaranth_bus import backend_for
from virtio_mmio_sim.amaranth_harness import EndpointWithDevice
from virtio_mmio_sim.driver import VirtioMmioDriver


def test_interfaces():
    endpoint = VirtioMmioEndpoint(EndpointParams(queues=3))
    members = endpoint.signature.members
    assert set(members) == {"bus", "msi", "device", "irq", "msi_error", "msi_errors",
                            "msi_rejected", "msi_enabled"}
    assert _same(members["bus"], In(AXI4LiteSignature(endpoint.params.addr_width)))
    assert _same(members["msi"], Out(AXI4LiteSignature(64, read=False)))
    assert _same(members["device"], Out(DeviceSignature(endpoint.params)))
    wb = VirtioMmioEndpoint(EndpointParams(bus="wishbone", wishbone_mode="pipelined"))
    assert _same(wb.signature.members["msi"],
                 Out(WishboneSignature(62, mode="pipelined", read=False)))


def _same(member, expected):
    """Two interface members with the same ports (path, direction, shape)."""
    def ports(member):
        return [member.flow, *((path, leaf.flow, leaf.shape)
                               for path, leaf in member.signature.members.flatten()
                               if leaf.is_port)]
    return ports(member) == ports(expected)


@pytest.mark.parametrize("bus", ["axil", "wishbone"])
def test_flat_names_are_the_port_contract(bus):
    """The flat ports are docs/spec.md §9's, in the order of its port table (stream handshakes
    before the payload), with each one's path in the component."""
    params = EndpointParams(bus=bus)
    ports = flat_ports(VirtioMmioEndpoint(params))
    s, mgr = ("s_axil", "m_axil") if bus == "axil" else ("s_wb", "m_wb")
    names = list(ports)
    assert names[0].startswith(f"{s}_")
    assert (f"{mgr}_awaddr" if bus == "axil" else f"{mgr}_adr") in names
    device_side = names[names.index("used_valid"):]
    assert device_side[:12] == [
        "used_valid", "used_queue", "config_changed", "needs_reset",
        "notify_valid", "notify_ready", "notify_queue", "notify_data", "notify_has_data",
        "notify_dropped", "status", "driver_ok"]
    assert ports["notify_queue"][:2] == (("device", "notify", "payload"), "queue")
    assert ports["q_sel"][:2] == (("device", "queue", "sel"), None)
    assert ports["cfg_rdata"][2].flow == In and ports["cfg_re"][2].flow == Out
    assert ports[f"{s}_{'rdata' if bus == 'axil' else 'dat_r'}"][2].flow == Out
    assert list(port_members(params)) == names


def test_flattening_refuses_a_name_clash():
    class Clash(wiring.Component):
        port_prefixes = {("a",): ""}

        def __init__(self):
            super().__init__({"a": Out(wiring.Signature({"x": Out(1)})), "x": Out(1)})

    with pytest.raises(NameError, match="Two ports of Clash flatten to 'x'"):
        flat_ports(Clash())


class QueueWatcher(wiring.Component):
    """A toy device on :class:`DeviceSignature`: takes notifications (recording the last queue
    and counting them) and looks at the notified queue's state."""

    def __init__(self, params):
        super().__init__({
            "port": In(DeviceSignature(params)),
            "last_queue": Out(16), "count": Out(8), "last_num": Out(16), "last_ready": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        port = self.port
        m.d.comb += port.notify.ready.eq(1)
        looking = Signal(2)       # q_sel is registered, then the port answers a cycle later
        m.d.sync += looking.eq(Cat(port.notify.valid, looking[0]))
        with m.If(port.notify.valid):
            m.d.sync += [self.last_queue.eq(port.notify.payload.queue),
                         port.queue.sel.eq(port.notify.payload.queue),
                         self.count.eq(self.count + 1)]
        with m.If(looking[1]):
            m.d.sync += [self.last_num.eq(port.queue.num), self.last_ready.eq(port.queue.ready)]
        return m


@pytest.mark.parametrize("bus", ["axil", "wishbone"])
def test_a_device_joins_with_wiring_connect(bus):
    """A device component connects to ``endpoint.device`` in one ``wiring.connect``; the
    driver model's initialisation through ``bus`` reaches it (notification, queue state)."""
    params = EndpointParams(bus=bus, queues=3, queue_size=16, config_size=0)

    top = EndpointWithDevice(params, QueueWatcher(params))

    async def bench(ctx):
        drv = VirtioMmioDriver(backend_for(ctx, top))
        await drv.initialize(queues=[dict(index=q, size=size, desc=0x1000 * q,
                                          driver=0x2000 * q, device=0x3000 * q)
                                     for q, size in enumerate((8, 16, 4))])
        assert await drv.read("Status") & Status.DRIVER_OK
        await drv.write("QueueNotify", 1)
        for _ in range(4):
            await ctx.tick()
        assert ctx.get(top.device.count) == 1
        assert ctx.get(top.device.last_queue) == 1
        assert (ctx.get(top.device.last_num), ctx.get(top.device.last_ready)) == (16, 1)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run_until(2e-4)


def test_flat_ports_wraps_for_verilog():
    """:class:`FlatPorts` is the endpoint with the docs/spec.md §9 ports; its flat members drive
    and read the inner interfaces (checked through the notification stream)."""
    params = EndpointParams(queues=2, config_size=0)
    flat = FlatPorts(VirtioMmioEndpoint(params))
    assert flat.params is params and list(flat.signature.members) == list(port_members(params))

    async def bench(ctx):
        drv = VirtioMmioDriver(backend_for(ctx, _BusView(flat)))
        await drv.initialize()
        ctx.set(flat.notify_ready, 0)
        await drv.write("QueueNotify", 1)
        await ctx.tick()
        assert ctx.get(flat.notify_valid) and ctx.get(flat.notify_queue) == 1
        assert ctx.get(flat.inner.device.notify.valid)

    sim = Simulator(flat)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run_until(2e-4)


class _BusView:
    """The flat ``s_axil_*`` ports of a :class:`FlatPorts` as the ``bus`` interface the
    register-access backends drive."""

    def __init__(self, flat):
        self.params = flat.params
        self.bus = type("Bus", (), {name[len("s_axil_"):]: getattr(flat, name)
                                    for name in flat.signature.members
                                    if name.startswith("s_axil_")})
