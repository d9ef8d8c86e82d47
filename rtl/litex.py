"""The endpoint in a LiteX SoC (docs/litex.md).

:class:`VirtioMmioLiteX` generates the endpoint's Verilog with the project's own generator
(:func:`~virtio_mmio.tools.generate.generate_verilog`, as ``virtio-mmio generate`` does), adds
it to the LiteX platform's sources and instantiates it with a migen ``Instance`` whose port
list comes from the generator's flat-port description (:func:`~virtio_mmio.flatten.flat_ports`
through :func:`~virtio_mmio.tools.integration.port_groups`, the instantiation template's
source), so no port name is spelled here. It brings out:

* ``bus``: a LiteX Wishbone subordinate (32-bit data, word addresses) for the CPU;
* ``msi_bus``: the MSI manager (writes only) as a LiteX Wishbone master, in profiles with MSI;
* ``dma_bus``: with ``device="rng"``, the device's DMA manager as a second master;
* ``ev.irq``: the level interrupt, where LiteX's IRQ handler looks for it;
* ``signals``: every other port (device side, MSI status, example-device observation) as a
  migen ``Signal`` named like the Verilog port.

:meth:`VirtioMmioLiteX.add_to_soc` adds all of it to a SoC in one call and
:meth:`VirtioMmioLiteX.dt_node` gives the device-tree node with the SoC's address and
interrupt, from the same generator as ``virtio-mmio generate``'s ``<stem>-node.dtsi``.
"""

import os
import re
from pathlib import Path

try:
    from migen import ClockSignal, Instance, ResetSignal, Signal
    from litex.gen import LiteXModule
    from litex.soc.integration.soc import SoCRegion
    from litex.soc.interconnect import wishbone
except ImportError as error:        # pragma: no cover - depends on the installation
    raise ImportError(f"virtio_mmio.litex needs LiteX ({error}): pip install '.[litex]'") \
        from None

from .devices import example_device
from .flatten import flat_ports, inspected
from .params import EndpointParams
from .regmap import PROFILES
from .tools.artefacts import DT_PLACEHOLDER_BASE, emit_dtsi_node
from .tools.generate import DEVICES, generate_verilog
from .tools.integration import port_groups


__all__ = ["VirtioMmioLiteX", "BUS_ROLES"]


#: Flat-port path heads that are Wishbone interfaces, and the wrapper attribute each becomes.
BUS_ROLES = {"bus": "bus", "msi": "msi_bus", "dma": "dma_bus"}


class _IrqLine:
    """What LiteX's IRQ interconnect reads from a module: ``ev.irq``. The endpoint's ``irq``
    goes to the CPU as it is: a level, high while InterruptStatus != 0, acknowledged through
    the endpoint's own InterruptACK register (no LiteX EventManager CSRs in between)."""

    def __init__(self):
        self.irq = Signal()


def _check_params(params, device):
    """Raise ``TypeError``/``ValueError`` naming the argument that a LiteX endpoint cannot
    take."""
    if not isinstance(params, EndpointParams):
        raise TypeError(f"params must be an EndpointParams, not {params!r}")
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if params.bus != "wishbone":
        raise ValueError(f"params.bus must be 'wishbone' (LiteX's bus), not {params.bus!r}")
    if params.wishbone_mode != "classic":
        raise ValueError(f"params.wishbone_mode must be 'classic' (LiteX's Wishbone has no "
                         f"stall), not {params.wishbone_mode!r}")
    example_device(device).check_params(params)


def _ports(params, device):
    """``[(name, direction, width, role, field)]`` of the generated module, in port order:
    ``role`` is a key of :data:`BUS_ROLES` (``field`` then the Wishbone signal), ``"clock"``
    for clk/rst, else ``None``."""
    component = inspected(example_device(device).top(params))
    paths = {name: path for name, (path, _, _) in flat_ports(component).items()}
    ports = []
    for _, group in port_groups(component):
        for name, direction, width in group:
            path = paths.get(name)
            if path is None:
                ports.append((name, direction, width, "clock", None))
            elif path[0] in BUS_ROLES and len(path) == 2:
                ports.append((name, direction, width, path[0], path[1]))
            else:
                ports.append((name, direction, width, None, None))
    return ports


def _default_verilog_dir(platform):
    """Where LiteX's ``Builder`` puts the gateware by default (``build/<platform>/gateware``),
    or, once a builder has run, its output directory's ``gateware``."""
    output_dir = getattr(platform, "output_dir", None) or os.path.join("build", platform.name)
    return os.path.join(output_dir, "gateware")


class VirtioMmioLiteX(LiteXModule):
    """The endpoint for ``params`` (``bus="wishbone"``, classic) with ``device`` (``"none"``:
    the device logic is yours, through :attr:`signals`; or an example device such as
    ``"rng"``), its Verilog written to ``verilog_dir`` (default: the LiteX build's gateware
    directory) as ``<params.name>.v`` and added to ``platform``'s sources.

    ``clock_domain``: the migen clock domain of ``clk``/``rst`` (``rst`` is synchronous,
    active high, as LiteX's are)."""

    def __init__(self, platform, params, device="none", *, verilog_dir=None,
                 clock_domain="sys"):
        _check_params(params, device)
        if not isinstance(clock_domain, str) or not clock_domain:
            raise TypeError(f"clock_domain must be a clock domain name, not {clock_domain!r}")
        self.params = params
        self.device = device
        self.clock_domain = clock_domain
        self.has_msi = PROFILES[params.profile].msi_registers
        self.verilog_path = self._write_verilog(platform, verilog_dir)
        platform.add_source(str(self.verilog_path))

        self.bus = wishbone.Interface(data_width=32, address_width=32, addressing="word")
        # Assigned directly (not through a conditional expression), so that migen names the
        # signals after the attribute (msi_bus_adr, ...).
        self.msi_bus = None
        if self.has_msi:
            self.msi_bus = wishbone.Interface(data_width=32, address_width=32,
                                              addressing="word")
        self.dma_bus = None
        self.ev = _IrqLine()
        self.signals = {}
        self.ports = _ports(params, device)
        self.instance_ports = {}
        fields = {role: {} for role in BUS_ROLES}
        for name, direction, width, role, field in self.ports:
            if role == "clock":
                signal = (ClockSignal if name == "clk" else ResetSignal)(clock_domain)
            else:
                signal = Signal(width, name=name)
                if role in fields:
                    fields[role][field] = signal
                else:
                    self.signals[name] = signal
            self.instance_ports[("i_" if direction == "input" else "o_") + name] = signal
        self.specials.endpoint = Instance(params.name, **self.instance_ports)

        self.comb += self.ev.irq.eq(self.signals["irq"])
        self._connect_subordinate(fields["bus"])
        if self.has_msi:
            self._connect_manager(fields["msi"], self.msi_bus)
        else:
            self._tie_off(fields["msi"])
        if fields["dma"]:
            self.dma_bus = wishbone.Interface(data_width=32, address_width=32,
                                              addressing="word")
            self._connect_manager(fields["dma"], self.dma_bus)
        self.soc_name = None
        self.origin = None

    # Construction ----------------------------------------------------------------------------

    def _write_verilog(self, platform, verilog_dir):
        directory = Path(verilog_dir if verilog_dir is not None
                         else _default_verilog_dir(platform))
        directory.mkdir(parents=True, exist_ok=True)
        path = (directory / f"{self.params.name}.v").resolve()
        path.write_text(generate_verilog(self.params, self.device))
        return path

    @property
    def window_size(self):
        """Bytes of the register window (``1 << params.addr_width``)."""
        return 1 << self.params.addr_width

    def _connect_subordinate(self, port):
        """The CPU side: LiteX's decoder gives the whole word address; the window is aligned
        to its size, so its low bits are the offset."""
        bus = self.bus
        self.comb += [
            port["adr"].eq(bus.adr[:len(port["adr"])]),
            port["dat_w"].eq(bus.dat_w),
            port["sel"].eq(bus.sel),
            port["cyc"].eq(bus.cyc),
            port["stb"].eq(bus.stb),
            port["we"].eq(bus.we),
            bus.ack.eq(port["ack"]),
            bus.err.eq(port["err"]),
            bus.dat_r.eq(port["dat_r"]),
        ]

    def _connect_manager(self, port, bus):
        """A manager port (62-bit word addresses) onto a LiteX master (the SoC bus's width):
        an access above the SoC's address space never reaches the bus and ends with ``err``
        one clock later, instead of aliasing to a low address."""
        width = len(bus.adr)
        outside = Signal()
        refused = Signal()
        self.comb += outside.eq(port["adr"][width:] != 0)
        sync = getattr(self.sync, self.clock_domain)
        sync += refused.eq(port["cyc"] & port["stb"] & outside & ~refused)
        self.comb += [
            bus.adr.eq(port["adr"][:width]),
            bus.dat_w.eq(port["dat_w"]),
            bus.sel.eq(port["sel"]),
            bus.we.eq(port["we"]),
            bus.cyc.eq(port["cyc"] & ~outside),
            bus.stb.eq(port["stb"] & ~outside),
            port["ack"].eq(bus.ack),
            port["err"].eq(bus.err | refused),
        ]
        if "dat_r" in port:
            self.comb += port["dat_r"].eq(bus.dat_r)

    def _tie_off(self, port):
        """A manager the profile never drives: its inputs held at 0."""
        self.comb += [signal.eq(0) for field, signal in port.items()
                      if field in ("ack", "err", "dat_r")]

    # In a SoC ----------------------------------------------------------------------------------

    @property
    def masters(self):
        """``{suffix: wishbone.Interface}`` of the manager ports this endpoint has."""
        return {suffix: bus for suffix, bus in (("msi", self.msi_bus), ("dma", self.dma_bus))
                if bus is not None}

    def add_to_soc(self, soc, name="virtio", origin=None):
        """Add the endpoint to LiteX ``soc`` as ``name``: the register window as a bus slave
        at ``origin`` (aligned to :attr:`window_size`; default: the SoC's first free region
        of that size), the managers as bus masters ``<name>_msi``/``<name>_dma``, and ``irq``
        on the interrupt controller (``soc.irq.add(name, use_loc_if_exists=True)``).
        Returns the origin."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"name must be a Python identifier (the SoC attribute), "
                             f"not {name!r}")
        if not soc.irq.enabled:
            raise ValueError("soc must have an interrupt controller (a CPU with interrupts, "
                             f"e.g. cpu_type='vexriscv'), not cpu_type "
                             f"{getattr(soc, 'cpu_type', None)!r}")
        size = self.window_size
        if origin is None:
            origin = soc.bus.alloc_region(name, size, cached=False).origin
        else:
            self._check_origin(origin, soc)
        present = getattr(soc, name, None)
        if present is None:
            soc.add_module(name=name, module=self)
        elif present is not self:
            raise ValueError(f"name must be free in the SoC: soc.{name} is already "
                             f"{type(present).__name__}")
        soc.bus.add_slave(name=name, slave=self.bus,
                          region=SoCRegion(origin=origin, size=size, cached=False))
        for suffix, bus in self.masters.items():
            soc.bus.add_master(name=f"{name}_{suffix}", master=bus)
        soc.irq.add(name, use_loc_if_exists=True)
        self.soc_name = name
        self.origin = origin
        return origin

    def _check_origin(self, origin, soc):
        size = self.window_size
        limit = 1 << soc.bus.address_width
        if isinstance(origin, bool) or not isinstance(origin, int):
            raise TypeError(f"origin must be an integer address, not {origin!r}")
        if origin % size or not 0 <= origin <= limit - size:
            raise ValueError(f"origin must be a multiple of the window size {size:#x} in "
                             f"0..{limit - size:#x} (the SoC's {soc.bus.address_width}-bit "
                             f"address space), not {origin:#x}")

    def irq_number(self, soc):
        """The interrupt number ``soc`` gave the endpoint (after :meth:`add_to_soc`)."""
        if self.soc_name is None:
            raise ValueError("the endpoint is not in a SoC yet: call add_to_soc first")
        return soc.irq.locs[self.soc_name]

    def dt_node(self, soc, *, interrupt_parent=None):
        """The device-tree node of the endpoint in ``soc`` (after :meth:`add_to_soc`):
        ``virtio-mmio generate``'s node (:func:`~virtio_mmio.tools.artefacts.emit_dtsi_node`)
        with the SoC's origin in ``reg`` and its interrupt number in ``interrupts`` (one cell,
        as LiteX's interrupt controllers take it). ``interrupt_parent``: a label (``"intc0"``)
        for an ``interrupt-parent`` property, or ``None`` to inherit it."""
        if interrupt_parent is not None and (not isinstance(interrupt_parent, str)
                                             or not re.fullmatch(r"[A-Za-z_][\w]*",
                                                                 interrupt_parent)):
            raise ValueError(f"interrupt_parent must be a device-tree label or None, "
                             f"not {interrupt_parent!r}")
        irq = self.irq_number(soc)
        return _place_dt_node(emit_dtsi_node(self.params, self.params.name), self.origin, irq,
                              self.params.name, interrupt_parent)


def _fill_in(text, old, new):
    """``text`` with every ``old`` replaced by ``new``; there must be one at least (else the
    generated node no longer has the placeholder this module fills in)."""
    if old not in text:
        raise AssertionError(f"{old!r} not found in the generated device-tree node")
    return text.replace(old, new)


def _place_dt_node(text, origin, irq, module, interrupt_parent):
    """The generated node ``text`` with its placeholders filled in: the comment that asks to
    fill them in replaced by one that says where they came from."""
    node = text[text.index("*/\n") + 3:]
    placeholder = DT_PLACEHOLDER_BASE
    node = _fill_in(node, f"@{placeholder:x} {{", f"@{origin:x} {{")
    node = _fill_in(node, f"{placeholder:#x}", f"{origin:#x}")      # in reg
    interrupts = f"interrupts = <{irq}>;"
    if interrupt_parent is not None:
        interrupts = f"interrupt-parent = <&{interrupt_parent}>;\n\t" + interrupts
    node, count = re.subn(r"^\tinterrupts = [^\n]*$", "\t" + interrupts, node, flags=re.M)
    if count != 1:
        raise AssertionError("no interrupts property in the generated device-tree node")
    comment = (f"/* virtio-mmio endpoint {module} in a LiteX SoC: register window at "
               f"{origin:#x}, irq {irq} (a level, active high). */\n")
    return comment + node
