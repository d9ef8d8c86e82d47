"""Register artefacts written beside the generated Verilog (docs/spec.md §10).

From one validated :class:`~virtio_mmio.params.EndpointParams` and the register map data of
:mod:`virtio_mmio.regmap`, :func:`write_artefacts` writes, with the stem of the Verilog file:

* ``<stem>.json``: the register map with the parameters, resets resolved for this parameter set;
* ``<stem>-node.dtsi``: the endpoint's device-tree node, with placeholders the integrator fills
  in, to ``/include/`` inside a bus node; ``<stem>.dtsi``: the same node at the top level (it
  includes ``<stem>-node.dtsi``), to include after the root node;
* ``<stem>.rdl``: a SystemRDL 2.0 description, emitted from the same data;
* and, from the compiled ``.rdl`` through the PeakRDL exporters: a C header ``<stem>.h``,
  Markdown ``<stem>.md``, HTML ``<stem>_html/`` and the memory map of the IP-XACT component
  ``<stem>.xml``;
* for integration flows (:mod:`~virtio_mmio.tools.integration`): an instantiation template
  ``<stem>_inst.vh``, a FuseSoC core ``<stem>.core``, a CMSIS-SVD file ``<stem>.svd``, and the
  rest of the IP-XACT component (ports, bus interfaces, file set).

Nothing here spells an offset: everything comes from the register map and the parameters, so a
new profile or a moved register changes every artefact at once.
"""

import json
import re
import textwrap
import warnings
from pathlib import Path

from amaranth.hdl import Shape
from amaranth.lib.wiring import In

from .. import package_version
from ..endpoint import VirtioMmioEndpoint, port_members
from ..flatten import inspected
from ..params import EndpointParams
from ..regmap import CONFIG_BASE, MAGIC_VALUE, PROFILES, Field
from .integration import (emit_fusesoc_core, emit_instance_template, emit_ipxact_component,
                          emit_svd)


__all__ = ["write_artefacts", "ArtefactError", "ArtefactWarning", "ARTEFACT_KINDS",
           "RDL_REGISTER_BLOCK", "DMA_COHERENT_OPTION", "artefact_data", "register_entries",
           "dt_cells", "emit_dtsi", "emit_dtsi_node", "emit_rdl", "compile_rdl"]


#: Kind -> file name suffix appended to the Verilog stem, in the order they are written.
ARTEFACT_KINDS = {
    "json": ".json",
    "dtsi": ".dtsi",
    "dtsi_node": "-node.dtsi",
    "rdl": ".rdl",
    "h": ".h",
    "md": ".md",
    "html": "_html",
    "xml": ".xml",
    "inst": "_inst.vh",
    "core": ".core",
    "svd": ".svd",
}

#: Device-tree placeholders. They are valid DTS so the snippet can be test-compiled as is, and
#: marked FILL IN so nobody mistakes them for a real address or interrupt line.
DT_PLACEHOLDER_BASE = 0xDEAD0000
DT_PLACEHOLDER_IRQ = 0
#: Interrupt specifier cells of an Arm GIC (dt-bindings/interrupt-controller/arm-gic.h and
#: irq.h): GIC_SPI, and IRQ_TYPE_LEVEL_HIGH, the type of the endpoint's ``irq`` output.
DT_GIC_SPI = 0
DT_IRQ_TYPE_LEVEL_HIGH = 4

#: The ``virtio-mmio generate`` option that asks for ``dma-coherent`` in the device-tree node
#: (``dma_coherent=True`` of :func:`write_artefacts`); the node's comment names it.
DMA_COHERENT_OPTION = "--dma-coherent"

_M32 = 0xFFFF_FFFF


class ArtefactError(RuntimeError):
    """An artefact could not be produced; the message names the artefact and the cause."""


class ArtefactWarning(UserWarning):
    """A non-fatal message from the SystemRDL compiler or an exporter."""


def _c_identifier(name):
    """``name`` as a C identifier, also usable as a device-tree label (a Verilog name may hold
    "$")."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return ident if re.match(r"[A-Za-z_]", ident) else "_" + ident


# Reset values ------------------------------------------------------------------------------
#
# The register map gives a reset as an integer, the name of a construction parameter, or the
# function that computes it from the parameters (regmap.Register). The selectors
# (DeviceFeaturesSel, QueueSel, SHMSel) all reset to 0, so the computed registers read a
# definite value after reset: the one selected by 0.

#: Parameter names in the register map whose value is not an attribute of the same name.
_PARAM_RESETS = {
    # QueueNumMax/QueueNum of the queue QueueSel selects, and QueueSel resets to 0.
    "queue_size": lambda p: p.queue_sizes[0],
}


def _resolve_reset(reg, params):
    """(value or None, where it came from) for ``reg`` under ``params``."""
    if isinstance(reg.reset, int):
        return reg.reset, "constant"
    if isinstance(reg.reset, str):
        if reg.reset in _PARAM_RESETS:
            return _PARAM_RESETS[reg.reset](params), f"parameter {reg.reset}"
        value = getattr(params, reg.reset, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value, f"parameter {reg.reset}"
        return None, f"parameter {reg.reset}"
    if callable(reg.reset):
        return reg.reset(params), "computed (selector 0)"
    return None, "computed"


def _field_reset(reg, fld, reg_reset):
    if reg_reset is None:
        return None
    return (reg_reset >> fld.lsb) & ((1 << fld.width) - 1)


# JSON ----------------------------------------------------------------------------------------

def register_entries(params):
    """The registers of ``params.profile`` as JSON-ready dicts, resets resolved."""
    entries = []
    for reg in params.regmap:
        reset, source = _resolve_reset(reg, params)
        entries.append({
            "name": reg.name,
            "offset": reg.offset,
            "width": reg.width,
            "access": reg.access,
            "reset": reset,
            "reset_source": source,
            "lanes": reg.lanes,
            "full_write": reg.full_write,
            "doc": reg.doc,
            "fields": [{
                "name": f.name, "lsb": f.lsb, "msb": f.msb, "width": f.width,
                "access": reg.field_access(f),
                "reset": _field_reset(reg, f, reset), "doc": f.doc,
                "values": [{"name": name, "value": value, "doc": doc}
                           for name, value, doc in f.values],
            } for f in reg.fields],
        })
    return entries


def _doorbells(params):
    if not params.has_doorbells:
        return None
    per_queue = params.notify_multiplier != 0
    return {
        "base": params.notify_base,
        "multiplier": params.notify_multiplier,
        "count": params.queues if per_queue else 1,
        "end": params.doorbell_end,
        # With multiplier 0 the single doorbell takes the queue from the data word
        # (docs/spec.md §6).
        "queue_from": "address" if per_queue else "data",
    }


def _ports(params):
    # The endpoint's own port members, so the JSON cannot drift from the Verilog. Amaranth
    # adds the sync domain's clock and reset under these names (docs/spec.md §9).
    ports = {"clk": {"direction": "in", "width": 1}, "rst": {"direction": "in", "width": 1}}
    for name, member in port_members(params).items():
        ports[name] = {"direction": "in" if member.flow == In else "out",
                       "width": Shape.cast(member.shape).width}
    return ports


def artefact_data(params):
    """The content of ``<stem>.json`` as a dict."""
    profile = PROFILES[params.profile]
    return {
        "parameters": params.as_dict(),
        "profile": profile.summary(),
        "magic": MAGIC_VALUE,
        "window": {"addr_width": params.addr_width, "size": 1 << params.addr_width},
        "registers": register_entries(params),
        "reserved_offsets": [w * 4 for w in params.regmap.reserved_words()],
        "config_space": {"offset": CONFIG_BASE, "size": params.config_size},
        "doorbells": _doorbells(params),
        "ports": _ports(params),
    }


# Device tree ---------------------------------------------------------------------------------

def dt_cells(params):
    """``#address-cells`` and ``#size-cells`` the parent of the endpoint's node needs: 1, or 2
    for a 4 GiB window (``addr_width`` 32), whose size does not fit one cell."""
    return 2 if (1 << params.addr_width) >> 32 else 1


def _dt_files(stem):
    """The names of the top-level and the node-only device-tree files."""
    return stem + ARTEFACT_KINDS["dtsi"], stem + ARTEFACT_KINDS["dtsi_node"]


def _comment(paragraphs):
    """A C/DTS block comment; each paragraph is wrapped, keeping its indentation (and hanging
    under a leading "- ")."""
    lines = ["/*"]
    for text in paragraphs:
        body = text.lstrip(" ")
        indent = " " * (len(text) - len(body))
        hang = indent + ("  " if body.startswith("- ") else "")
        wrapped = textwrap.wrap(body, width=92, initial_indent=indent, subsequent_indent=hang,
                                break_on_hyphens=False) or [""]
        lines += [f" * {line}".rstrip() for line in wrapped]
    return "\n".join(lines + [" */"])


def emit_dtsi_node(params, stem, *, dma_coherent=False):
    """The endpoint's device-tree node (``<stem>-node.dtsi``), labelled with the module name,
    with placeholders for the base address and the interrupt and, in its comment, what to fill
    in. ``dma_coherent`` adds the ``dma-coherent`` property."""
    size = 1 << params.addr_width
    base = DT_PLACEHOLDER_BASE
    cells = dt_cells(params)
    reg = " ".join(f"{cell:#x}" for value in (base, size)
                   for cell in ((value >> 32, value & _M32) if cells == 2 else (value,)))
    label = _c_identifier(params.name)
    top_file, _ = _dt_files(stem)
    gic = "<GIC_SPI n IRQ_TYPE_LEVEL_HIGH>"
    level = DT_IRQ_TYPE_LEVEL_HIGH
    comment = [
        f'virtio-mmio endpoint "{params.name}": profile {params.profile} (Version '
        f"{params.version}), device ID {params.device_id}, vendor ID {params.vendor_id:#x}, "
        f"{params.queues} queue(s); register window {size:#x} bytes. Generated with its "
        "Verilog.",
        "",
        f"This node alone, labelled {label}: /include/ it inside the node of the bus the "
        f"endpoint sits on, after that node's properties. {top_file} includes it at the top "
        "level.",
        "",
        "FILL IN before use:",
        "  - the base address where your interconnect maps the endpoint: the unit address "
        f'after "@" and the base in "reg" (the placeholder {base:#x} is not a real address);',
        '  - "interrupts": the interrupt-controller input wired to the endpoint\'s `irq` '
        "output, in the format of your interrupt-parent; add interrupt-parent if it is not "
        "inherited.",
        "    `irq` is a LEVEL, active high: high while InterruptStatus != 0, until the "
        "driver's InterruptACK clears the last bit. Declare it level-high. Declared "
        "edge-triggered, an event that arrives between the driver's InterruptStatus read and "
        "its ACK keeps `irq` high without a new edge: that interrupt is lost, and every later "
        "one with it.",
        f"      Arm GIC: {gic}, i.e. <{DT_GIC_SPI} n {level}> (as generated: SPI "
        f"{DT_PLACEHOLDER_IRQ}, a placeholder).",
        "      RISC-V PLIC: interrupt-parent = <&plic>; interrupts = <n>; (one cell: the "
        "trigger type is the PLIC gateway's, which must be level for this source), or "
        f"<n {level}> where the PLIC's binding has two cells.",
        f'"reg" assumes #address-cells = <{cells}> and #size-cells = <{cells}> in the parent '
        "node" + ("; a parent with 1-cell addresses cannot map a window this large." if cells == 2
                  else ". Under a parent with 2 cells:"),
        *([] if cells == 2 else ["    reg = <0x0 base 0x0 size>;"]),
    ]
    if dma_coherent:
        comment.append(
            "dma-coherent: present, as asked for at generation: the device logic's accesses to "
            "the virtqueues in memory are coherent with the CPU caches. Remove it if they are "
            "not.")
    else:
        comment.append(
            "dma-coherent: absent, so the OS cleans and invalidates the caches around every "
            "buffer (always safe). If the device logic's accesses to the virtqueues in memory "
            "are coherent with the CPU caches (e.g. through a coherent ACE/ACP/CHI port), "
            f"regenerate with {DMA_COHERENT_OPTION}.")
    if PROFILES[params.profile].msi_registers:
        # MSI writes go to an interrupt controller the node does not name by itself.
        comment.append(
            f"MSI (profile {params.profile}): a driver that uses MSI finds the MSI controller "
            "through msi-parent: for a GICv3 ITS, msi-parent = <&its DEVID>, DEVID being the "
            "device ID your interconnect presents with the endpoint's MSI writes; for another "
            "controller, as its binding says. The interrupt above stays in use while MSI is "
            "off.")
    properties = [
        'compatible = "virtio,mmio";',
        f"reg = <{reg}>;",
        f"interrupts = <{DT_GIC_SPI} {DT_PLACEHOLDER_IRQ} {level}>;\t/* FILL IN: {gic} */",
        *(["dma-coherent;"] if dma_coherent else []),
    ]
    body = "".join(f"\t{prop}\n" for prop in properties)
    return f"{_comment(comment)}\n{label}: virtio@{base:x} {{\n{body}}};\n"


def emit_dtsi(params, stem):
    """The top-level device-tree fragment (``<stem>.dtsi``): the node of ``<stem>-node.dtsi``
    (:func:`emit_dtsi_node`), included from beside this file, under the root node.

    dtc's grammar has no construct that is valid both at the top level and inside a node, so
    the node is written once, in its own file, and this file wraps it."""
    top_file, node_file = _dt_files(stem)
    comment = [
        f'virtio-mmio endpoint "{params.name}" at the top level of a device tree: /include/ '
        "this file after the root node, e.g.",
        "    /dts-v1/;",
        "    / { ... };",
        f'    /include/ "{top_file}"',
        f"The node, and what to fill in, is in {node_file}; to put the endpoint under a bus "
        "node, /include/ that file inside the bus node instead. dtc looks for an included file "
        "in the directory of the file that includes it (then in its -i directories), so keep "
        "the two files together.",
    ]
    return f'{_comment(comment)}\n/ {{\n\t/include/ "{node_file}"\n}};\n'


# SystemRDL -----------------------------------------------------------------------------------

#: SystemRDL 2.0 keywords (clause 4.6); an identifier that is one must be escaped with "\".
_RDL_KEYWORDS = frozenset("""
    abstract accesstype addressingtype addrmap alias all bit boolean bothedge compact component
    componentwidth constraint default encode enum external false field fullalign hw inside
    internal level longint mem na negedge nonsticky number onreadtype onwritetype posedge
    property r rclr ref reg regalign regfile rset ruser rw rw1 signal sparse string struct sw
    this true type unsigned w w1 wclr woclr woset wot wr wset wuser wzc wzs wzt
""".split())

_SW_ACCESS = {"R": "r", "W": "w", "RW": "rw"}
# The hardware side of a field: what software only reads, hardware drives; what software
# writes, hardware reads. This keeps every field legal without inventing storage semantics.
_HW_ACCESS = {"r": "w", "w": "r", "rw": "r"}


def _rdl_id(name):
    ident = _c_identifier(name)
    return "\\" + ident if ident in _RDL_KEYWORDS else ident


def _rdl_str(text):
    # The SystemRDL lexer knows only the escapes \" and \\ and rejects any other backslash.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rdl_fields(reg, reg_reset):
    """Field declarations of ``reg`` (with the enums of their encodings); a register without
    fields is one field across its width."""
    # The register's desc already says what a single whole-width field means.
    fields = reg.fields or (Field("value", 0, reg.width),)
    lines = []
    for fld in fields:
        reset = _field_reset(reg, fld, reg_reset) if reg.fields else reg_reset
        sw = _SW_ACCESS[reg.field_access(fld)]
        props = [f"sw = {sw};", f"hw = {_HW_ACCESS[sw]};"]
        if fld.doc:
            props.append(f"desc = {_rdl_str(fld.doc)};")
        if fld.values:
            enum = _rdl_id(f"{fld.name}_e")
            lines.append(f"        enum {enum} {{")
            lines += [f"            {_rdl_id(name)} = {value:#x} {{ desc = {_rdl_str(doc)}; }};"
                      for name, value, doc in fld.values]
            lines.append("        };")
            props.append(f"encode = {enum};")
        decl = f"field {{ {' '.join(props)} }} {_rdl_id(fld.name)}[{fld.msb}:{fld.lsb}]"
        if reset is not None:
            decl += f" = {reset:#x}"
        lines.append(f"        {decl};")
    return lines


#: Instance name of the transport-register block inside the top addrmap.
RDL_REGISTER_BLOCK = "regs"


def emit_rdl(params):
    """SystemRDL 2.0 text of the register map of ``params``.

    The top addrmap holds only address blocks: the transport registers (an addrmap), config
    space and the doorbell window (``mem``). peakrdl-ipxact drops a ``mem`` that sits beside
    registers, but turns an addrmap made only of blocks into one IP-XACT address block each.
    """
    regmap = params.regmap
    profile = PROFILES[params.profile]
    partial = [r.name for r in regmap if not r.full_write and r.writable]
    top_desc = (
        f"virtio-mmio endpoint, profile {profile.name} (Version {profile.version}): "
        f"{profile.doc} Window of {1 << params.addr_width:#x} bytes.")
    regs_desc = (
        "virtio-mmio transport registers. Little-endian; reads of reserved offsets return 0 "
        "and writes to them are ignored. A write to a control register takes effect only when "
        "every byte lane of the register is enabled"
        + (f" (except {', '.join(partial)})" if partial else "") + ".")
    out = [
        f"// SystemRDL 2.0 register map of {params.name}, generated from the register map data",
        f"// of virtio_mmio (profile {profile.name}). Do not edit; regenerate.",
        f"addrmap {_rdl_id(params.name)} {{",
        f"    name = {_rdl_str(params.name)};",
        f"    desc = {_rdl_str(top_desc)};",
        "",
        "    addrmap {",
        '        name = "Transport registers";',
        f"        desc = {_rdl_str(regs_desc)};",
    ]
    for reg in regmap:
        reset, _ = _resolve_reset(reg, params)
        out += [
            "        reg {",
            f"            name = {_rdl_str(reg.name)};",
            f"            desc = {_rdl_str(reg.doc)};",
            f"            regwidth = {reg.width};",
            *("    " + line for line in _rdl_fields(reg, reset)),
            f"        }} {_rdl_id(reg.name)} @ {reg.offset:#x};",
        ]
    out.append(f"    }} {RDL_REGISTER_BLOCK} @ 0x0;")
    if params.config_size:
        # A mem cannot be empty, so config_size 0 leaves the block out.
        out += _rdl_mem(
            "Config", CONFIG_BASE, params.config_size, "rw",
            f"Device-specific configuration space, {params.config_size} bytes, passed to the "
            f"device logic with byte enables (1-, 2- and 4-byte aligned accesses)")
    bells = _doorbells(params)
    if bells is not None:
        if bells["queue_from"] == "address":
            what = (f"a full write at {bells['base']:#x} + q * {bells['multiplier']:#x} "
                    f"(q < {params.queues}) is a notification for queue q; the data word is "
                    f"passed on as written")
        else:
            what = (f"a full write at {bells['base']:#x} is a notification; the queue (or "
                    f"notification-data word) comes from the data")
        out += _rdl_mem("Notify", bells["base"], bells["end"] - bells["base"], "w",
                        f"Doorbells: {what}. Reads return 0")
    out.append("};")
    return "\n".join(out) + "\n"


def _rdl_mem(name, offset, size, sw, desc):
    # A mem is the one construct every exporter here understands for an opaque window whose
    # words are not registers: a register array would be unrolled word by word in Markdown
    # and, when sparse (doorbell multiplier > 4), is refused by peakrdl-cheader.
    return [
        "",
        "    external mem {",
        f"        name = {_rdl_str(name)};",
        f"        desc = {_rdl_str(desc)};",
        f"        mementries = {size // 4:#x};",
        "        memwidth = 32;",
        f"        sw = {sw};",
        f"    }} {_rdl_id(name)} @ {offset:#x};",
    ]


# Compile and export ------------------------------------------------------------------------

class _Messages:
    """Compiler and exporter messages, kept instead of printed so a failure becomes one
    exception that says what went wrong."""

    def __init__(self):
        from systemrdl.messages import MessagePrinter, Severity
        self.severity = Severity
        self.messages = []
        outer = self

        class Printer(MessagePrinter):
            def print_message(self, severity, text, src_ref):
                where = ""
                path = getattr(src_ref, "path", None)
                if path:
                    line = getattr(src_ref, "line", None)
                    where = f"{Path(path).name}:{line}: " if line else f"{Path(path).name}: "
                outer.messages.append((severity, where + text))

        self.printer = Printer()

    def errors(self):
        return [m for s, m in self.messages if s >= self.severity.ERROR]

    def warnings(self):
        return [m for s, m in self.messages if self.severity.WARNING <= s < self.severity.ERROR]

    def run(self, what, action):
        """Run ``action``; raise :class:`ArtefactError` naming ``what`` if it fails or reports
        an error."""
        seen = len(self.errors())
        try:
            result = action()
        except Exception as exc:
            # The exception text is often only "previous errors"; the messages say which.
            detail = "; ".join(self.errors()[seen:]) or f"{type(exc).__name__}: {exc}"
            raise ArtefactError(f"{what} failed: {detail}") from exc
        if len(self.errors()) > seen:
            raise ArtefactError(f"{what} failed: {'; '.join(self.errors()[seen:])}")
        return result


def compile_rdl(rdl_path, messages=None):
    """Compile and elaborate ``rdl_path``; the elaborated top addrmap node."""
    from systemrdl import RDLCompiler

    messages = messages or _Messages()
    rdlc = RDLCompiler(message_printer=messages.printer)

    def build():
        rdlc.compile_file(str(rdl_path))
        return rdlc.elaborate().top

    return messages.run(f"SystemRDL compilation of {Path(rdl_path).name}", build)


def _c_offsets(top):
    """``#define`` lines with the byte offset of every block and register below ``top``.

    peakrdl-cheader describes the layout only as a packed struct; drivers (Linux's
    virtio_mmio among them) address registers as base + offset, so the header also gets the
    offsets, named like peakrdl-cheader's own field macros (hierarchical path, "__").
    """
    from systemrdl.node import AddressableNode, AddrmapNode, MemNode, RegfileNode

    lines = ["// Byte offsets from the endpoint's base (and sizes of the windows), from the same",
             "// SystemRDL description; offsetof() on the struct above gives the same values."]

    def walk(node):
        for child in node.children():
            if not isinstance(child, AddressableNode):
                continue
            name = child.get_rel_path(top.parent, hier_separator="__").upper()
            offset = child.absolute_address - top.absolute_address
            lines.append(f"#define {name}_OFFSET {offset:#x}")
            if isinstance(child, MemNode):
                lines.append(f"#define {name}_SIZE {child.size:#x}")
            elif isinstance(child, (AddrmapNode, RegfileNode)) and not child.is_array:
                walk(child)

    walk(top)
    return "\n".join(lines) + "\n"


def _c_encodings(top, naming):
    """``#define`` lines with the value of every named encoding (SystemRDL ``encode``) of a
    field below ``top``, named like the field's macros: ``<field prefix>__<NAME>``.
    (peakrdl-cheader 1.1 writes no enums.)"""
    from peakrdl_cheader import utils
    from systemrdl.node import FieldNode

    lines = []
    for field in top.descendants():
        if not isinstance(field, FieldNode) or field.get_property("encode") is None:
            continue
        prefix = (utils.get_node_prefix(naming, top, field.parent) + "__"
                  + field.inst_name).upper()
        lines += [f"#define {prefix}__{member.name.upper()} {member.value:#x}"
                  for member in field.get_property("encode")]
    if not lines:
        return ""
    return "\n".join(["// Named values of fields (SystemRDL enums)", *lines]) + "\n"


def _c_size_check(top, naming):
    """The exporter's packing check (its C11 ``static_assert``) in a form C99 accepts: an
    array of negative size does not compile."""
    from peakrdl_cheader import utils

    struct = utils.get_struct_name(naming, top, top)
    check = f"{struct.removesuffix('_t')}_size_check"
    return ("// The packed struct is as large as the address map (if not, the negative array "
            "size\n// stops the compilation: a static assertion in C99).\n"
            f"typedef char {check}[(sizeof({struct}) == {top.size:#x}) ? 1 : -1];\n")


def _export_c_header(top, path):
    from peakrdl_cheader.c_standards import CStandard
    from peakrdl_cheader.design_state import DesignState
    from peakrdl_cheader.exporter import CHeaderExporter

    # The header must compile as C99, C11 and C++11. For C11 and later the exporter adds a
    # static_assert, which C99 lacks; its C99 output has none (the size check comes below).
    options = {"std": CStandard.gnu99}
    CHeaderExporter().export(top, str(path), **options)
    # The exporter's naming, to name the additions like its own definitions.
    naming = DesignState(top, dict(options))
    text = path.read_text()
    footer = text.rfind("#ifdef __cplusplus")
    if footer < 0:
        raise RuntimeError("peakrdl-cheader output has no closing '#ifdef __cplusplus' block "
                           "to insert the offset defines before")
    additions = [_c_offsets(top), _c_encodings(top, naming), _c_size_check(top, naming)]
    path.write_text(text[:footer] + "\n".join(a for a in additions if a) + "\n"
                    + text[footer:])


def write_artefacts(params, verilog_path, *, dma_coherent=False, component=None):
    """Write the register artefacts of ``params`` beside ``verilog_path``.

    ``dma_coherent`` puts the ``dma-coherent`` property in the device-tree node (off by
    default: only the integrator knows whether the device logic's memory accesses are
    coherent with the CPU caches). ``component``: the generated top (its ports go into the
    instantiation template and the IP-XACT component), by default the bare endpoint of
    ``params``. Returns ``{kind: path}`` for the kinds of :data:`ARTEFACT_KINDS` (``"html"``
    is a directory). Raises :class:`ArtefactError` if the SystemRDL compiler or an exporter
    fails; their warnings are passed on as :class:`ArtefactWarning`.
    """
    if not isinstance(params, EndpointParams):
        raise TypeError(f"params must be an EndpointParams, not {params!r}")
    verilog_path = Path(verilog_path)
    stem = verilog_path.with_suffix("")
    paths = {kind: stem.parent / (stem.name + suffix) for kind, suffix in ARTEFACT_KINDS.items()}
    stem.parent.mkdir(parents=True, exist_ok=True)

    paths["json"].write_text(json.dumps(artefact_data(params), indent=2) + "\n")
    paths["dtsi"].write_text(emit_dtsi(params, stem.name))
    paths["dtsi_node"].write_text(emit_dtsi_node(params, stem.name, dma_coherent=dma_coherent))
    paths["rdl"].write_text(emit_rdl(params))
    version = package_version() or "0"
    if component is None:
        component = inspected(VirtioMmioEndpoint(params))
    paths["inst"].write_text(emit_instance_template(component, params.name))
    paths["core"].write_text(emit_fusesoc_core(params, verilog_path.name, version))
    paths["svd"].write_text(emit_svd(params, register_entries(params), version))

    messages = _Messages()
    top = compile_rdl(paths["rdl"], messages)

    from peakrdl_html import HTMLExporter
    from peakrdl_ipxact import IPXACTExporter
    from peakrdl_markdown import MarkdownExporter

    messages.run(f"C header export to {paths['h'].name}",
                 lambda: _export_c_header(top, paths["h"]))
    messages.run(f"Markdown export to {paths['md'].name}",
                 lambda: MarkdownExporter().export(top, str(paths["md"])))
    # Source links would embed this machine's paths (and ask git about them).
    messages.run(f"HTML export to {paths['html'].name}/",
                 lambda: HTMLExporter(generate_source_links=False).export(
                     top, str(paths["html"]), title=f"{params.name} registers"))
    # PeakRDL writes the memory map; the bus interfaces, ports and file set are added to it.
    messages.run(f"IP-XACT export to {paths['xml'].name}",
                 lambda: IPXACTExporter(version=version)
                 .export(top, str(paths["xml"]), component_name=params.name))
    paths["xml"].write_text(emit_ipxact_component(
        paths["xml"].read_text(), component, verilog_path.name, version))

    for text in messages.warnings():
        warnings.warn(ArtefactWarning(text), stacklevel=2)
    return paths
