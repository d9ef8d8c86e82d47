"""Register artefacts written beside the generated Verilog (SPEC §10).

From one validated :class:`~virtio_mmio.params.EndpointParams` and the register map data of
:mod:`virtio_mmio.regmap`, :func:`write_artefacts` writes, with the stem of the Verilog file:

* ``<stem>.json``: the register map with the parameters, resets resolved for this parameter set;
* ``<stem>.dtsi``: a device-tree node for the endpoint, with placeholders the integrator fills in;
* ``<stem>.rdl``: a SystemRDL 2.0 description, emitted from the same data;
* and, from the compiled ``.rdl`` through the PeakRDL exporters: a C header ``<stem>.h``,
  Markdown ``<stem>.md``, HTML ``<stem>_html/`` and IP-XACT ``<stem>.xml``.

Nothing here spells an offset: everything comes from the register map and the parameters, so a
new profile or a moved register changes every artefact at once.
"""

import dataclasses
import json
import re
import warnings
from pathlib import Path

from amaranth.hdl import Shape
from amaranth.lib.wiring import In

from .endpoint import port_members
from .params import EndpointParams
from .regmap import CONFIG_BASE, MAGIC_VALUE, PROFILES, Field


__all__ = ["write_artefacts", "ArtefactError", "ArtefactWarning", "ARTEFACT_KINDS",
           "RDL_REGISTER_BLOCK", "artefact_data", "register_entries", "emit_dtsi", "emit_rdl",
           "compile_rdl"]


#: Kind -> file name suffix appended to the Verilog stem, in the order they are written.
ARTEFACT_KINDS = {
    "json": ".json",
    "dtsi": ".dtsi",
    "rdl": ".rdl",
    "h": ".h",
    "md": ".md",
    "html": "_html",
    "xml": ".xml",
}

#: Device-tree placeholders. They are valid DTS so the snippet can be test-compiled as is, and
#: deliberately conspicuous so nobody mistakes them for a real address or interrupt line.
DT_PLACEHOLDER_BASE = 0xDEAD0000
DT_PLACEHOLDER_IRQ = 0

_M32 = 0xFFFF_FFFF


class ArtefactError(RuntimeError):
    """An artefact could not be produced; the message names the artefact and the cause."""


class ArtefactWarning(UserWarning):
    """A non-fatal message from the SystemRDL compiler or an exporter."""


# Reset values ------------------------------------------------------------------------------
#
# The register map gives a reset as an integer, the name of a construction parameter, or None
# for a computed value. The selectors (DeviceFeaturesSel, QueueSel, SHMSel) all reset to 0, so
# the computed registers read a definite value after reset: the one selected by 0.

def _shm_region0(params):
    return next((r for r in params.shm if r.id == 0), None)


def _shm_word(attr, high):
    def value(params):
        region = _shm_region0(params)
        # A missing region reads all ones (SPEC §4), in both halves.
        word = _M32 if region is None else getattr(region, attr) >> (32 if high else 0)
        return word & _M32
    return value


#: Registers whose reset the register map leaves as "computed", by name.
_COMPUTED_RESETS = {
    "DeviceFeatures": lambda p: p.features & _M32,
    "SHMLenLow": _shm_word("length", high=False),
    "SHMLenHigh": _shm_word("length", high=True),
    "SHMBaseLow": _shm_word("base", high=False),
    "SHMBaseHigh": _shm_word("base", high=True),
}

#: Fields whose reset is known even though the whole register's is not: MsiStatus bit 15 is
#: profile-specific (MSI enabled vs. "capable"), its queue count is not.
_COMPUTED_FIELD_RESETS = {
    ("MsiStatus", "queues"): lambda p: p.queues,
}

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
    if reg.name in _COMPUTED_RESETS:
        return _COMPUTED_RESETS[reg.name](params), "computed (selector 0)"
    return None, "computed"


def _field_reset(reg, fld, reg_reset, params):
    key = (reg.name, fld.name)
    if key in _COMPUTED_FIELD_RESETS:
        return _COMPUTED_FIELD_RESETS[key](params)
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
                "reset": _field_reset(reg, f, reset, params), "doc": f.doc,
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
        # With multiplier 0 the single doorbell takes the queue from the data word (SPEC §6).
        "queue_from": "address" if per_queue else "data",
    }


def _ports(params):
    # The endpoint's own port members, so the JSON cannot drift from the Verilog. Amaranth
    # adds the sync domain's clock and reset under these names (SPEC §9).
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
        "profile": dataclasses.asdict(profile),
        "magic": MAGIC_VALUE,
        "window": {"addr_width": params.addr_width, "size": 1 << params.addr_width},
        "registers": register_entries(params),
        "reserved_offsets": [w * 4 for w in params.regmap.reserved_words()],
        "config_space": {"offset": CONFIG_BASE, "size": params.config_size},
        "doorbells": _doorbells(params),
        "ports": _ports(params),
    }


# Device tree ---------------------------------------------------------------------------------

def emit_dtsi(params):
    size = 1 << params.addr_width
    base = DT_PLACEHOLDER_BASE
    # A 4 GiB window (addr_width 32) does not fit one size cell.
    if size >> 32:
        cells, other = 2, "a parent with 1-cell addresses cannot map a window this large"
        reg = (f"{base >> 32:#x} {base & _M32:#x} {size >> 32:#x} {size & _M32:#x}")
    else:
        cells, other = 1, "write <0x0 base 0x0 size> if the parent uses 2 cells"
        reg = f"{base:#x} {size:#x}"
    msi_note = ""
    if PROFILES[params.profile].msi_registers:
        # MSI writes go to an interrupt controller the node does not name by itself.
        msi_note = ("\n * MSI (profile {0}): a driver that uses MSI needs the MSI controller, "
                    "usually\n * through msi-parent = <&your_msi_controller ...>, as your "
                    "platform's binding says.".format(params.profile))
    return f"""\
/*
 * virtio-mmio endpoint "{params.name}": profile {params.profile} (Version {params.version}),
 * device ID {params.device_id}, vendor ID {params.vendor_id:#x}, {params.queues} queue(s).
 * Generated beside {params.name}'s Verilog; the register window is {size:#x} bytes.
 *
 * FILL IN before use:
 *   - the base address where your interconnect maps the endpoint: the unit address after "@"
 *     and the first cell of "reg" (the placeholder {base:#x} is not a real address);
 *   - "interrupts": the specifier of the interrupt-controller input wired to the endpoint's
 *     `irq` output, in the format of your interrupt-parent (e.g. 3 cells for an Arm GIC,
 *     1 cell for a RISC-V PLIC); add interrupt-parent if it is not inherited.
 * "reg" assumes #address-cells = <{cells}> and #size-cells = <{cells}> in the parent node;
 * {other}.
 * dma-coherent: keep it only if the device logic's accesses to the virtqueues in memory are
 * coherent with the CPU caches; remove it otherwise.{msi_note}
 */
virtio@{base:x} {{
	compatible = "virtio,mmio";
	reg = <{reg}>;
	interrupts = <{DT_PLACEHOLDER_IRQ}>;
	dma-coherent;
}};
"""


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
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not re.match(r"[A-Za-z_]", ident):
        ident = "_" + ident
    return "\\" + ident if ident in _RDL_KEYWORDS else ident


def _rdl_str(text):
    # The SystemRDL lexer knows only the escapes \" and \\ and rejects any other backslash.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rdl_fields(reg, reg_reset, params):
    """Field declarations of ``reg``; a register without fields is one field across its width."""
    sw = _SW_ACCESS[reg.access]
    hw = _HW_ACCESS[sw]
    # The register's desc already says what a single whole-width field means.
    fields = reg.fields or (Field("value", 0, reg.width),)
    lines = []
    for fld in fields:
        reset = _field_reset(reg, fld, reg_reset, params) if reg.fields else reg_reset
        props = [f"sw = {sw};", f"hw = {hw};"]
        if fld.doc:
            props.append(f"desc = {_rdl_str(fld.doc)};")
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
            *("    " + line for line in _rdl_fields(reg, reset, params)),
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


def _export_c_header(top, path):
    from peakrdl_cheader.exporter import CHeaderExporter

    CHeaderExporter().export(top, str(path))
    text = path.read_text()
    footer = text.rfind("#ifdef __cplusplus")
    if footer < 0:
        raise RuntimeError("peakrdl-cheader output has no closing '#ifdef __cplusplus' block "
                           "to insert the offset defines before")
    path.write_text(text[:footer] + _c_offsets(top) + "\n" + text[footer:])


def _package_version():
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("virtio-mmio-endpoint")
    except PackageNotFoundError:
        return "0"


def write_artefacts(params, verilog_path):
    """Write the register artefacts of ``params`` beside ``verilog_path``.

    Returns ``{kind: path}`` for the kinds of :data:`ARTEFACT_KINDS` (``"html"`` is a
    directory). Raises :class:`ArtefactError` if the SystemRDL compiler or an exporter fails;
    their warnings are passed on as :class:`ArtefactWarning`.
    """
    if not isinstance(params, EndpointParams):
        raise TypeError(f"params must be an EndpointParams, not {params!r}")
    verilog_path = Path(verilog_path)
    stem = verilog_path.with_suffix("")
    paths = {kind: stem.parent / (stem.name + suffix) for kind, suffix in ARTEFACT_KINDS.items()}
    stem.parent.mkdir(parents=True, exist_ok=True)

    paths["json"].write_text(json.dumps(artefact_data(params), indent=2) + "\n")
    paths["dtsi"].write_text(emit_dtsi(params))
    paths["rdl"].write_text(emit_rdl(params))

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
    messages.run(f"IP-XACT export to {paths['xml'].name}",
                 lambda: IPXACTExporter(library="virtio_mmio", version=_package_version())
                 .export(top, str(paths["xml"]), component_name=params.name))

    for text in messages.warnings():
        warnings.warn(ArtefactWarning(text), stacklevel=2)
    return paths
