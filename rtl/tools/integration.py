"""Files for the flows integrators already use, written by ``generate`` beside the Verilog:

* ``<stem>_inst.vh``: an instantiation template — a wire per port and the instance, ports
  grouped (clock/reset, CPU bus, MSI manager, interrupts, device side) and commented with
  direction and width. It compiles as it is inside a module (``\\`include`` it, or paste it).
* ``<stem>.core``: a FuseSoC CAPI2 core file (the Verilog as its fileset; targets ``default``,
  ``lint`` with Verilator and ``sim`` with Icarus), so ``fusesoc --cores-root DIR run --target
  lint <vlnv>`` works on the output directory.
* ``<stem>.svd``: a CMSIS-SVD description of the register map (one peripheral, every register
  and field with its access and reset, the doorbells as a register array), for debuggers and
  SVD-driven code generators;
* ``<stem>.xml``: an IP-XACT (IEEE 1685-2014) component: PeakRDL's memory map completed with the
  ports, the bus interfaces (clock, reset, interrupt, the CPU bus as a subordinate on the memory
  map, the MSI and DMA managers on 64-bit address spaces) and the Verilog model and file set,
  so IP packagers and IP-XACT tools import the endpoint as a component.

All of them come from the same data as the other artefacts: the component's flat ports
(:mod:`virtio_mmio.flatten`) and the register entries of :mod:`~virtio_mmio.tools.artefacts`.
"""

import re
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from amaranth.hdl import Shape
from amaranth.lib.wiring import In

from ..flatten import flat_ports
from ..regmap import CONFIG_BASE


__all__ = ["port_groups", "emit_instance_template", "emit_fusesoc_core", "emit_svd",
           "emit_ipxact_component", "IPXACT_VENDOR", "IPXACT_LIBRARY", "IPXACT_BUS_TYPES"]


#: Port groups of the template, in order: (title, test on the flat name and its path).
_GROUPS = (
    ("CPU bus: {bus} subordinate", lambda name, path: path[0] == "bus"),
    ("MSI manager: {bus} manager, writes only (tie its inputs off if the profile has no MSI)",
     lambda name, path: path[0] == "msi"),
    ("interrupt and MSI status", lambda name, path: name == "irq" or name.startswith("msi_")),
    ("device DMA manager: {bus} manager", lambda name, path: path[0] == "dma"),
    ("device events (one-cycle pulses)",
     lambda name, path: name in ("used_valid", "used_queue", "config_changed", "needs_reset")),
    ("notifications to the device (valid holds until ready)",
     lambda name, path: name.startswith("notify_")),
    ("device state", lambda name, path: name in ("status", "driver_ok", "device_reset",
                                                 "features")),
    ("queue state: q_sel in, that queue's state out one clock later",
     lambda name, path: name.startswith("q_")),
    ("config space: the device answers cfg_re on cfg_rdata one clock later",
     lambda name, path: name.startswith("cfg_")),
    ("example device observation", lambda name, path: name.startswith("rng_")),
)


def _bus_name(params):
    return "AXI4-Lite" if params.bus == "axil" else f"Wishbone B4 {params.wishbone_mode}"


def port_groups(component):
    """``[(title, [(name, direction, width)])]``: the component's flat ports by group, clock
    and reset first (the order of the port table)."""
    bus = _bus_name(component.params)
    groups = {title.format(bus=bus): [] for title, _ in _GROUPS}
    other = []
    for name, (path, field, member) in flat_ports(component).items():
        port = (name, "input" if member.flow == In else "output", Shape.cast(member.shape).width)
        for title, test in _GROUPS:
            if test(name, path):
                groups[title.format(bus=bus)].append(port)
                break
        else:
            other.append(port)
    result = [("clock and reset: rst is synchronous, active high",
               [("clk", "input", 1), ("rst", "input", 1)])]
    result += [(title, ports) for title, ports in groups.items() if ports]
    if other:
        result.append(("other", other))
    return result


def emit_instance_template(component, module_name):
    """The instantiation template (``<stem>_inst.vh``) of ``component`` generated as
    ``module_name``."""
    groups = port_groups(component)
    ports = [port for _, group in groups for port in group]
    name_width = max(len(name) for name, _, _ in ports)
    decl_width = max(len(_range(width)) for _, _, width in ports)
    lines = [
        f"// Instantiation template for {module_name} (virtio-mmio generate). Paste it into",
        "// your module or `include it there; rename the wires to your signals. Every port is",
        "// synchronous to clk.",
        "",
    ]
    for title, group in groups:
        lines.append(f"// {title}")
        for name, direction, width in group:
            if name in ("clk", "rst"):
                continue
            lines.append(f"wire {_range(width).ljust(decl_width)} {name};")
    lines += ["", f"{module_name} u_{module_name} ("]
    last = ports[-1][0]
    for title, group in groups:
        lines.append(f"    // {title}")
        for name, direction, width in group:
            comma = "" if name == last else ","
            comment = f"{direction}{(' ' + _range(width)) if width > 1 else ''}"
            lines.append(f"    .{name.ljust(name_width)} ({name}){comma}".ljust(
                name_width * 2 + 12) + f" // {comment}")
    lines.append(");")
    return "\n".join(lines) + "\n"


def _range(width):
    return f"[{width - 1}:0]" if width > 1 else ""


def emit_fusesoc_core(params, verilog_name, version):
    """A FuseSoC CAPI2 core file for the generated Verilog ``verilog_name`` (a file name in
    the same directory)."""
    top = params.name
    return "\n".join([
        "CAPI=2:",
        f"# {top}: virtio-mmio endpoint ({params.profile}, {params.bus}, {params.queues} "
        f"queue(s)), generated by virtio-mmio {version}.",
        f"name: virtio-mmio:endpoint:{top}:{version}",
        f"description: virtio-mmio endpoint {top} (profile {params.profile}, "
        f"{'AXI4-Lite' if params.bus == 'axil' else 'Wishbone'}, {params.queues} queue(s))",
        "",
        "filesets:",
        "  rtl:",
        "    files:",
        f"      - {verilog_name}",
        "    file_type: verilogSource",
        "",
        "targets:",
        "  default: &default",
        "    filesets: [rtl]",
        f"    toplevel: {top}",
        "  lint:",
        "    <<: *default",
        "    description: Verilator lint of the generated Verilog",
        "    default_tool: verilator",
        "    tools:",
        "      verilator:",
        "        mode: lint-only",
        "  sim:",
        "    <<: *default",
        "    description: Icarus Verilog elaboration of the generated Verilog",
        "    default_tool: icarus",
        "",
    ])


_SVD_ACCESS = {"R": "read-only", "W": "write-only", "RW": "read-write"}


def emit_svd(params, entries, version):
    """A CMSIS-SVD 1.3 description of the register map (``entries`` from
    :func:`~virtio_mmio.tools.artefacts.register_entries`), with the doorbells (Version 3) as
    a register array and the configuration space as an array of words."""
    top = params.name
    regs = [_svd_register(entry) for entry in entries]
    if params.has_doorbells:
        per_queue = params.notify_multiplier != 0
        count = params.queues if per_queue else 1
        regs.append(_svd_register(
            {"name": "QueueDoorbell", "offset": params.notify_base, "width": 32,
             "access": "W", "reset": 0, "fields": [],
             "doc": "Doorbell of queue %s: a write notifies it" if per_queue else
                    "The single doorbell: the queue is taken from the data word"},
            dim=(count, params.notify_multiplier) if count > 1 else None))
    if params.config_size:
        regs.append(_svd_register(
            {"name": "Config", "offset": CONFIG_BASE, "width": 32, "access": "RW",
             "reset": 0, "fields": [],
             "doc": "Device-specific configuration space, word %s (answered by the device)"},
            dim=(params.config_size // 4, 4) if params.config_size > 4 else None))
    block_size = 1 << params.addr_width
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<device schemaVersion="1.3" xmlns:xs="http://www.w3.org/2001/XMLSchema-instance" '
        'xs:noNamespaceSchemaLocation="CMSIS-SVD.xsd">',
        "  <vendor>virtio-mmio</vendor>",
        f"  <name>{_svd_name(top)}</name>",
        f"  <version>{escape(version)}</version>",
        f"  <description>virtio-mmio endpoint {escape(top)} (profile {params.profile}, "
        f"Version {params.version}, device ID {params.device_id})</description>",
        "  <addressUnitBits>8</addressUnitBits>",
        "  <width>32</width>",
        "  <size>32</size>",
        "  <access>read-write</access>",
        "  <resetValue>0x00000000</resetValue>",
        "  <resetMask>0xFFFFFFFF</resetMask>",
        "  <peripherals>",
        "    <peripheral>",
        f"      <name>{_svd_name(top).upper()}</name>",
        "      <description>virtio-mmio transport registers (base address: where your "
        "interconnect maps the endpoint; 0 here)</description>",
        "      <baseAddress>0x00000000</baseAddress>",
        "      <addressBlock>",
        "        <offset>0x0</offset>",
        f"        <size>{block_size:#x}</size>",
        "        <usage>registers</usage>",
        "      </addressBlock>",
        "      <registers>",
        *regs,
        "      </registers>",
        "    </peripheral>",
        "  </peripherals>",
        "</device>",
    ]
    return "\n".join(lines) + "\n"


def _svd_name(name):
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _svd_register(entry, dim=None):
    """One ``<register>``; ``dim`` = (count, stride) makes it an array (its ``doc`` then
    has a ``%s`` for the index; without ``dim`` the index reads 0)."""
    width = entry["width"]
    name = entry["name"] + ("[%s]" if dim else "")
    doc = entry["doc"] if dim else entry["doc"].replace("%s", "0")
    out = ["        <register>"]
    if dim:
        out += [f"          <dim>{dim[0]}</dim>",
                f"          <dimIncrement>{dim[1]:#x}</dimIncrement>"]
    out += [
        f"          <name>{name}</name>",
        f"          <description>{escape(_one_line(doc))}</description>",
        f"          <addressOffset>{entry['offset']:#x}</addressOffset>",
        f"          <size>{width}</size>",
        f"          <access>{_SVD_ACCESS[entry['access']]}</access>",
        f"          <resetValue>{entry['reset'] or 0:#x}</resetValue>",
        f"          <resetMask>{(1 << width) - 1:#x}</resetMask>",
    ]
    if entry["fields"]:
        out.append("          <fields>")
        for field in entry["fields"]:
            out += [
                "            <field>",
                f"              <name>{field['name']}</name>",
                f"              <description>{escape(_one_line(field['doc']))}</description>",
                f"              <bitRange>[{field['msb']}:{field['lsb']}]</bitRange>",
                f"              <access>{_SVD_ACCESS[field['access']]}</access>",
            ]
            if field["values"]:
                out.append("              <enumeratedValues>")
                for value in field["values"]:
                    out += [
                        "                <enumeratedValue>",
                        f"                  <name>{value['name']}</name>",
                        f"                  <description>{escape(_one_line(value['doc']))}"
                        "</description>",
                        f"                  <value>{value['value']:#x}</value>",
                        "                </enumeratedValue>",
                    ]
                out.append("              </enumeratedValues>")
            out.append("            </field>")
        out.append("          </fields>")
    out.append("        </register>")
    return "\n".join(out)


def _one_line(text):
    return " ".join((text or "").split()) or "-"


# IP-XACT (IEEE 1685-2014) component ------------------------------------------------------

IPXACT_NS = "http://www.accellera.org/XMLSchema/IPXACT/1685-2014"
_XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

#: The component's vendor and library (its VLNV is vendor:library:module name:version, the
#: same as the FuseSoC core's name).
IPXACT_VENDOR, IPXACT_LIBRARY = "virtio-mmio", "endpoint"

#: Bus definitions: (busType VLNV, abstractionType VLNV) by ``params.bus``. AXI4-Lite is Arm's
#: AMBA 4 definition; its logical ports are the AXI signal names (AWADDR, ...). No
#: standards body publishes a Wishbone definition; this one is named after its home,
#: opencores.org, and its logical ports are the endpoint's own field names in capitals (ADR,
#: DAT_W, DAT_R, SEL, CYC, STB, WE, ACK, ERR, STALL).
IPXACT_BUS_TYPES = {
    "axil": (("amba.com", "AMBA4", "AXI4-Lite", "r0p0_0"),
             ("amba.com", "AMBA4", "AXI4-Lite_rtl", "r0p0_0")),
    "wishbone": (("opencores.org", "interface", "wishbone", "b4"),
                 ("opencores.org", "interface", "wishbone_rtl", "b4")),
}

#: Single-signal interfaces: (name = physical port, kind, logical port, interface mode,
#: description, parameters). The bus definitions are the widely used Xilinx signal ones,
#: ``xilinx.com:signal:<kind>:1.0``; their parameters tell a packager the polarity, the
#: sensitivity and which interfaces the clock drives.
_IPXACT_SIGNALS = (
    ("clk", "clock", "CLK", "slave", "the clock: every port is synchronous to it",
     (("ASSOCIATED_RESET", "rst"),)),
    ("rst", "reset", "RST", "slave", "the reset: synchronous, active high",
     (("POLARITY", "ACTIVE_HIGH"),)),
    ("irq", "interrupt", "INTERRUPT", "master", "the interrupt: level, active high",
     (("SENSITIVITY", "LEVEL_HIGH"),)),
)

#: Manager interfaces of the flat ports: path[0] -> description. Each gets an address space
#: ``<path[0]>_space``.
_IPXACT_MANAGERS = {
    "msi": "MSI manager: one write per MSI message, writes only (tie its inputs off where the "
           "profile has no MSI)",
    "dma": "the example device's DMA manager: descriptor and buffer reads and writes",
}


def _ipxact(parent, tag, text=None):
    """A new ``ipxact:<tag>`` element at the end of ``parent``, with ``text``."""
    element = parent.makeelement(f"{{{IPXACT_NS}}}{tag}", {})
    parent.append(element)
    if text is not None:
        element.text = str(text)
    return element


def _ipxact_vlnv(parent, tag, vlnv):
    element = _ipxact(parent, tag)
    for key, value in zip(("vendor", "library", "name", "version"), vlnv):
        element.set(key, value)
    return element


def _ipxact_interface(parent, name, description, bus_type, abstraction, port_map):
    """A ``busInterface`` up to its port maps (the caller adds the interface mode)."""
    interface = _ipxact(parent, "busInterface")
    _ipxact(interface, "name", name)
    _ipxact(interface, "description", description)
    _ipxact_vlnv(interface, "busType", bus_type)
    abstraction_type = _ipxact(_ipxact(interface, "abstractionTypes"), "abstractionType")
    _ipxact_vlnv(abstraction_type, "abstractionRef", abstraction)
    maps = _ipxact(abstraction_type, "portMaps")
    for logical, physical in port_map:
        port_map_element = _ipxact(maps, "portMap")
        _ipxact(_ipxact(port_map_element, "logicalPort"), "name", logical)
        _ipxact(_ipxact(port_map_element, "physicalPort"), "name", physical)
    return interface


def _ipxact_parameters(parent, parameters):
    element = _ipxact(parent, "parameters")
    for name, value in parameters:
        parameter = _ipxact(element, "parameter")
        parameter.set("parameterId", name)
        _ipxact(parameter, "name", name)
        _ipxact(parameter, "value", f'"{value}"')


def emit_ipxact_component(memory_map_xml, component, verilog_name, version):
    """The IP-XACT component of ``component`` generated into ``verilog_name``: PeakRDL's
    component (``memory_map_xml``, the register map as a memory map) completed with the bus
    interfaces (clock, reset, the CPU bus as a subordinate on that memory map, the MSI manager
    and, with ``--device rng``, the DMA manager, each on its own 64-bit address space, the
    interrupt), the ports, the Verilog model and its file set. IEEE 1685-2014."""
    ET.register_namespace("ipxact", IPXACT_NS)
    ET.register_namespace("xsi", _XSI_NS)
    root = ET.fromstring(memory_map_xml)
    params = component.params
    top = params.name
    root.find(f"{{{IPXACT_NS}}}vendor").text = IPXACT_VENDOR
    root.find(f"{{{IPXACT_NS}}}library").text = IPXACT_LIBRARY
    memory_maps = root.find(f"{{{IPXACT_NS}}}memoryMaps")
    memory_map = memory_maps.find(f"{{{IPXACT_NS}}}memoryMap/{{{IPXACT_NS}}}name").text
    ports = flat_ports(component)
    bus_type, abstraction = IPXACT_BUS_TYPES[params.bus]
    bus_name = _bus_name(params)

    # busInterfaces, addressSpaces: built detached, then placed in the schema's order.
    interfaces = ET.Element(f"{{{IPXACT_NS}}}busInterfaces")
    spaces = ET.Element(f"{{{IPXACT_NS}}}addressSpaces")
    managers = [path for path in _IPXACT_MANAGERS
                if any(p[0] == path for p, _, _ in ports.values())]
    for name, kind, logical, mode, description, parameters in _IPXACT_SIGNALS:
        interface = _ipxact_interface(
            interfaces, name, description, ("xilinx.com", "signal", kind, "1.0"),
            ("xilinx.com", "signal", f"{kind}_rtl", "1.0"), [(logical, name)])
        _ipxact(interface, mode)
        if kind == "clock":
            parameters += (("ASSOCIATED_BUSIF", ":".join(["bus", *managers])),)
        _ipxact_parameters(interface, parameters)

    def port_map(which):
        return [(path[1].upper(), name) for name, (path, _, _) in ports.items()
                if path[0] == which]

    interface = _ipxact_interface(
        interfaces, "bus", f"CPU bus: {bus_name} subordinate, the transport registers",
        bus_type, abstraction, port_map("bus"))
    _ipxact(_ipxact(interface, "slave"), "memoryMapRef").set("memoryMapRef", memory_map)
    for which in managers:
        interface = _ipxact_interface(interfaces, which,
                                      f"{_IPXACT_MANAGERS[which]}; {bus_name} manager",
                                      bus_type, abstraction, port_map(which))
        _ipxact(_ipxact(interface, "master"), "addressSpaceRef").set(
            "addressSpaceRef", f"{which}_space")
        space = _ipxact(spaces, "addressSpace")
        _ipxact(space, "name", f"{which}_space")
        _ipxact(space, "description", f"what the {which} manager addresses: 64-bit bus "
                                      "addresses (Wishbone: word addresses of 32-bit words)")
        _ipxact(space, "range", "'h10000000000000000")
        _ipxact(space, "width", 32)

    index = list(root).index(memory_maps)
    root.insert(index, spaces)
    root.insert(index, interfaces)

    model = _ipxact(root, "model")
    view = _ipxact(_ipxact(model, "views"), "view")
    _ipxact(view, "name", "rtl")
    _ipxact(view, "envIdentifier", "verilogSource:*:*")
    _ipxact(view, "componentInstantiationRef", "verilog_rtl")
    instantiation = _ipxact(_ipxact(model, "instantiations"), "componentInstantiation")
    _ipxact(instantiation, "name", "verilog_rtl")
    _ipxact(instantiation, "language", "verilog")
    _ipxact(instantiation, "moduleName", top)
    _ipxact(_ipxact(instantiation, "fileSetRef"), "localName", "rtl")
    port_list = _ipxact(model, "ports")
    for title, group in port_groups(component):
        for name, direction, width in group:
            port = _ipxact(port_list, "port")
            _ipxact(port, "name", name)
            _ipxact(port, "description", title)
            wire = _ipxact(port, "wire")
            _ipxact(wire, "direction", "in" if direction == "input" else "out")
            if width > 1:
                vector = _ipxact(_ipxact(wire, "vectors"), "vector")
                _ipxact(vector, "left", width - 1)
                _ipxact(vector, "right", 0)

    file_set = _ipxact(_ipxact(root, "fileSets"), "fileSet")
    _ipxact(file_set, "name", "rtl")
    file = _ipxact(file_set, "file")
    _ipxact(file, "name", verilog_name)
    _ipxact(file, "fileType", "verilogSource")
    _ipxact(root, "description",
            f"virtio-mmio endpoint {top} (profile {params.profile}, {bus_name}, "
            f"{params.queues} queue(s)), generated by virtio-mmio {version}")

    ET.indent(root, space="  ")
    comment = (f"<!-- {top}: IP-XACT component written by virtio-mmio generate {version}: "
               "ports, bus interfaces, memory map (from the SystemRDL description through "
               "PeakRDL IP-XACT) and the Verilog file set. -->\n")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + comment
            + ET.tostring(root, encoding="unicode") + "\n")
