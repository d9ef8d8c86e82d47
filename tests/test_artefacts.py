"""The register artefacts beside the Verilog (docs/spec.md §10) agree with the register map
data."""

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from virtio_mmio.tools import artefacts
from virtio_mmio.tools.artefacts import (ARTEFACT_KINDS, ArtefactError, compile_rdl, dt_cells,
                                   write_artefacts)
from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import CONFIG_BASE, PROFILES, RegisterMap
from virtio_mmio_sim.linux import setup
from virtio_mmio_sim.linux.setup import SetupError


CASES = {
    "seed": dict(profile="seed"),
    "linux-k1": dict(profile="linux-k1"),
    "plain-v2": dict(profile="plain-v2"),
    "seed-config0": dict(profile="seed", config_size=0),
    "plain-v2-config0": dict(profile="plain-v2", config_size=0),
    # The extremes: most queues, a sparse doorbell layout, shared memory, a Wishbone port.
    "seed-max": dict(profile="seed", queues=2047, notify_multiplier=0x1000, bus="wishbone",
                     shm=[(0, 0x8000_0000, 0x1_0000), (3, 0x1_0000_0000, 0x20_0000)]),
    "seed-one-doorbell": dict(profile="seed", queues=3, notify_multiplier=0, config_size=8),
    # A 4 GiB window: its size needs two device-tree cells.
    "plain-v2-4g": dict(profile="plain-v2", addr_width=32, name="ep$4g"),
}

MSI_REGISTERS = [r.name for r in RegisterMap("seed") if r.name not in RegisterMap("plain-v2")]

#: docs/spec.md §4, MsiCmd (0x0C2) bits [15:12].
SPEC_MSI_OPS = {"UPDATE": 1, "ENABLE": 2}
#: docs/spec.md §4, MsiStatus (0x0C0): [10:0] is read-only everywhere; a write sets bit 15 only in
#: linux-k1 (seed: the whole register is read-only).
SPEC_MSI_STATUS_ENABLED_WRITABLE = {"seed": False, "linux-k1": True}
#: IRQ_TYPE_LEVEL_HIGH of Linux's include/dt-bindings/interrupt-controller/irq.h.
IRQ_TYPE_LEVEL_HIGH = 4


@pytest.fixture(scope="module", params=list(CASES))
def generated(request, tmp_path_factory):
    params = EndpointParams(**CASES[request.param])
    verilog = tmp_path_factory.mktemp(request.param) / "build" / "endpoint.v"
    paths = write_artefacts(params, verilog)
    return params, verilog, paths


def _text_of(paths):
    """Every artefact's text, the HTML directory's files included, lower-cased."""
    texts = {}
    for kind, path in paths.items():
        if path.is_dir():
            texts[kind] = b"".join(p.read_bytes() for p in sorted(path.rglob("*"))
                                   if p.is_file()).decode("utf-8", "replace").lower()
        else:
            texts[kind] = path.read_text().lower()
    return texts


def _ipxact_int(text):
    text = text.strip()
    if text.startswith("'h"):
        return int(text[2:], 16)
    return int(text, 0)


def test_all_files_beside_the_verilog(generated):
    params, verilog, paths = generated
    assert set(paths) == set(ARTEFACT_KINDS)
    for kind, path in paths.items():
        assert path.parent == verilog.parent
        assert path.name == verilog.stem + ARTEFACT_KINDS[kind]
        assert path.exists(), kind
    for kind in ("json", "dtsi", "rdl", "h", "md", "xml"):
        assert paths[kind].is_file() and paths[kind].stat().st_size > 0, kind
    assert (paths["html"] / "index.html").is_file()


def test_json_is_the_register_map(generated):
    params, _, paths = generated
    data = json.loads(paths["json"].read_text())
    regmap = params.regmap
    assert data["parameters"] == params.as_dict()
    assert data["profile"]["name"] == params.profile
    assert [r["name"] for r in data["registers"]] == [r.name for r in regmap]
    for entry in data["registers"]:
        reg = regmap[entry["name"]]
        assert (entry["offset"], entry["width"], entry["access"], entry["lanes"],
                entry["full_write"], entry["doc"]) == \
            (reg.offset, reg.width, reg.access, reg.lanes, reg.full_write, reg.doc)
        assert [f["name"] for f in entry["fields"]] == [f.name for f in reg.fields]
    resets = {r["name"]: r["reset"] for r in data["registers"]}
    assert resets["Version"] == PROFILES[params.profile].version
    assert resets["DeviceID"] == params.device_id
    assert resets["VendorID"] == params.vendor_id
    assert resets["QueueNumMax"] == params.queue_sizes[0]
    assert resets["QueueNotify"] == params.notify_layout
    assert resets["DeviceFeatures"] == params.features & 0xFFFF_FFFF
    region0 = [r for r in params.shm if r.id == 0]
    assert resets["SHMLenLow"] == (region0[0].length & 0xFFFF_FFFF if region0 else 0xFFFF_FFFF)
    assert data["config_space"] == {"offset": CONFIG_BASE, "size": params.config_size}
    if params.has_doorbells:
        bells = data["doorbells"]
        assert (bells["base"], bells["multiplier"]) == \
            (params.notify_base, params.notify_multiplier)
        assert bells["end"] == params.doorbell_end
    else:
        assert data["doorbells"] is None
    assert data["window"]["size"] == 1 << params.addr_width
    prefix = "s_axil" if params.bus == "axil" else "s_wb"
    for port in ("clk", "rst", "irq", "notify_valid", "cfg_be", f"{prefix}_dat_w"
                 if prefix == "s_wb" else f"{prefix}_wstrb"):
        assert port in data["ports"], port
    assert data["ports"]["features"] == {"direction": "out", "width": 64}


def test_c_header_offsets(generated):
    params, _, paths = generated
    header = paths["h"].read_text()
    defines = dict(re.findall(r"^#define\s+(\w+)\s+(0x[0-9a-fA-F]+|\d+)\b", header, re.M))
    for reg in params.regmap:
        names = [n for n in defines if n.endswith(f"__{reg.name.upper()}_OFFSET")]
        assert len(names) == 1, (reg.name, names)
        assert int(defines[names[0]], 0) == reg.offset, reg.name
    config = [n for n in defines if n.endswith("__CONFIG_OFFSET")]
    assert [int(defines[n], 0) for n in config] == ([CONFIG_BASE] if params.config_size else [])


#: The compilers and flags a user of the header may have; it must compile warning-free in each.
COMPILERS = {
    "c99": ["gcc", "-std=c99", "-x", "c"],
    "c11": ["gcc", "-std=c11", "-x", "c"],
    "c++11": ["g++", "-std=c++11", "-x", "c++"],
}
STRICT = ["-pedantic", "-Wall", "-Wextra", "-Werror"]


def _c_check_source(params, header):
    """A C (and C++) file that includes ``header``, checks its constants at compile time in a
    form C99 accepts (a negative array size fails) and uses the struct and the macros."""
    name = artefacts._c_identifier(params.name)
    top = name.upper()
    block = artefacts.RDL_REGISTER_BLOCK
    struct = f"{name}_t"
    checks = []
    for reg in params.regmap:
        macro = f"{top}__{block.upper()}__{reg.name.upper()}"
        checks += [f"offsetof({struct}, {block}.{reg.name}) == {macro}_OFFSET",
                   f"{macro}_OFFSET == {reg.offset:#x}",
                   f"sizeof((({struct} *)0)->{block}.{reg.name}) == {reg.width // 8}"]
        for fld in reg.fields:
            checks += [f"{macro}__{fld.name.upper()}_bm == {((1 << fld.width) - 1) << fld.lsb:#x}",
                       f"{macro}__{fld.name.upper()}_bp == {fld.lsb}"]
    uses = [f"    return ep->{block}.Status;"]
    if "MsiCmd" in params.regmap:
        cmd = f"{top}__{block.upper()}__MSICMD"
        checks += [f"{cmd}__OP__{op} == {value}" for op, value in SPEC_MSI_OPS.items()]
        uses = [f"    ep->{block}.MsiCmd = (uint16_t)({cmd}__OP__UPDATE << {cmd}__OP_bp | 1);",
                f"    return ep->{block}.MsiStatus & {top}__{block.upper()}__MSISTATUS__QUEUES_bm;"]
    lines = ["#include <stddef.h>", f'#include "{header}"']
    lines += [f"typedef char check_{i}[({check}) ? 1 : -1];" for i, check in enumerate(checks)]
    lines += [f"unsigned use_the_header(volatile {struct} *ep);",
              f"unsigned use_the_header(volatile {struct} *ep)", "{", *uses, "}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("language", list(COMPILERS))
def test_c_header_compiles_strictly(generated, language, tmp_path):
    """The header compiles warning-free as C99, C11 and C++11, and its offsets, field masks,
    register widths and MsiCmd operations are the register map's (docs/spec.md §4)."""
    params, _, paths = generated
    command = COMPILERS[language]
    if shutil.which(command[0]) is None:
        pytest.skip(f"no {command[0]}")
    source = tmp_path / "use_header.c"
    source.write_text(_c_check_source(params, paths["h"].name))
    result = subprocess.run([*command, *STRICT, "-I", str(paths["h"].parent), "-c", str(source),
                             "-o", str(tmp_path / "use_header.o")],
                            capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr, result.stderr


def test_c_header_has_no_c11_assertion(generated):
    """The exporter's C11 static_assert is replaced by a C99 size check, not dropped."""
    params, _, paths = generated
    header = paths["h"].read_text()
    assert "static_assert" not in header and "<assert.h>" not in header
    struct = artefacts._c_identifier(params.name) + "_t"
    assert re.search(rf"typedef char \w+\[\(sizeof\({struct}\) == 0x[0-9a-f]+\)"
                     r" \? 1 : -1\];", header)


def test_c_header_size_check_bites(generated, tmp_path):
    """The C99 size check does fail the compilation when the struct's size is wrong."""
    _, _, paths = generated
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    header = paths["h"].read_text()
    broken = re.sub(r"(sizeof\(\w+\) == )0x([0-9a-f]+)", r"\g<1>0x1\2", header)
    assert broken != header
    (tmp_path / paths["h"].name).write_text(broken)
    source = tmp_path / "use_header.c"
    source.write_text(f'#include "{paths["h"].name}"\n')
    result = subprocess.run(["gcc", "-std=c99", "-fsyntax-only", "-I", str(tmp_path),
                             str(source)], capture_output=True, text=True)
    assert result.returncode != 0 and "negative" in result.stderr


def test_ipxact_register_offsets(generated):
    params, _, paths = generated
    root = ET.parse(paths["xml"]).getroot()
    ns = {"ipxact": root.tag[1:root.tag.index("}")]}
    found = {}
    blocks = {}
    for block in root.iterfind(".//ipxact:addressBlock", ns):
        base = _ipxact_int(block.findtext("ipxact:baseAddress", namespaces=ns))
        blocks[block.findtext("ipxact:name", namespaces=ns)] = base
        for reg in block.iterfind("ipxact:register", ns):
            name = reg.findtext("ipxact:name", namespaces=ns)
            found[name] = (base + _ipxact_int(reg.findtext("ipxact:addressOffset",
                                                           namespaces=ns)),
                           int(reg.findtext("ipxact:size", namespaces=ns)))
    assert found == {r.name: (r.offset, r.width) for r in params.regmap}
    assert blocks.get("Config") == (CONFIG_BASE if params.config_size else None)
    assert blocks.get("Notify") == (params.notify_base if params.has_doorbells else None)


def test_markdown_mentions_every_register(generated):
    params, _, paths = generated
    text = paths["md"].read_text()
    for reg in params.regmap:
        assert re.search(rf"\b{reg.name}\b", text), reg.name


def test_msi_registers_only_where_the_profile_has_them(generated):
    params, _, paths = generated
    texts = _text_of(paths)
    expected = PROFILES[params.profile].msi_registers
    for kind, text in texts.items():
        if kind.startswith("dtsi") or kind in ("inst", "core"):    # no register names there
            continue
        for name in MSI_REGISTERS:
            assert (name.lower() in text) == expected, (kind, name)


def test_rdl_compiles_to_the_register_map(generated):
    params, _, paths = generated
    from systemrdl.node import MemNode, RegNode

    # A fresh compile, as a user of the .rdl would do it; warnings count as failures here.
    messages = artefacts._Messages()
    top = compile_rdl(paths["rdl"], messages)
    assert messages.messages == []
    assert top.inst_name == artefacts._c_identifier(params.name)
    regs = {n.inst_name: n for n in top.descendants() if isinstance(n, RegNode)}
    assert set(regs) == {r.name for r in params.regmap}
    for reg in params.regmap:
        node = regs[reg.name]
        assert node.absolute_address == reg.offset
        assert node.get_property("regwidth") == reg.width
        assert node.has_sw_readable == reg.readable
        # A register's fields may allow less than the register (MsiStatus in seed).
        writable = [reg.field_access(f) for f in reg.fields] if reg.fields else [reg.access]
        assert node.has_sw_writable == any("W" in access for access in writable)
    mems = {n.inst_name: n for n in top.descendants() if isinstance(n, MemNode)}
    if params.config_size:
        assert (mems["Config"].absolute_address, mems["Config"].size) == \
            (CONFIG_BASE, params.config_size)
    else:
        assert "Config" not in mems
    assert ("Notify" in mems) == params.has_doorbells


def test_rdl_resolves_resets(generated):
    params, _, paths = generated
    from systemrdl.node import RegNode

    top = compile_rdl(paths["rdl"])
    regs = {n.inst_name: n for n in top.descendants() if isinstance(n, RegNode)}
    value = lambda name: regs[name].fields()[0].get_property("reset")
    assert value("DeviceID") == params.device_id
    assert value("Version") == params.version
    assert value("QueueNumMax") == params.queue_sizes[0]
    if PROFILES[params.profile].msi_registers:
        fields = {f.inst_name: f for f in regs["MsiStatus"].fields()}
        assert fields["queues"].get_property("reset") == params.queues
        # Bit 15 after reset: MSI is off (seed), or "capable" reads 1 (linux-k1).
        assert fields["enabled"].get_property("reset") == \
            PROFILES[params.profile].msi_status_capable


def test_msi_status_field_access(generated):
    """MsiStatus [10:0] is read-only; bit 15 takes writes only in linux-k1 (docs/spec.md §4). The
    register map says so, and the SystemRDL, IP-XACT and JSON artefacts carry it."""
    params, _, paths = generated
    if not PROFILES[params.profile].msi_registers:
        return
    from systemrdl.node import RegNode

    expected = {"queues": False,
                "enabled": SPEC_MSI_STATUS_ENABLED_WRITABLE[params.profile]}
    reg = params.regmap["MsiStatus"]
    assert {f.name: "W" in reg.field_access(f) for f in reg.fields} == expected
    assert all("R" in reg.field_access(f) for f in reg.fields)

    top = compile_rdl(paths["rdl"])
    node = next(n for n in top.descendants() if isinstance(n, RegNode)
                and n.inst_name == "MsiStatus")
    assert {f.inst_name: f.is_sw_writable for f in node.fields()} == expected
    assert all(f.is_sw_readable for f in node.fields())

    root = ET.parse(paths["xml"]).getroot()
    ns = {"ipxact": root.tag[1:root.tag.index("}")]}
    xml_reg = next(r for r in root.iterfind(".//ipxact:register", ns)
                   if r.findtext("ipxact:name", namespaces=ns) == "MsiStatus")
    access = {f.findtext("ipxact:name", namespaces=ns): f.findtext("ipxact:access", namespaces=ns)
              for f in xml_reg.iterfind("ipxact:field", ns)}
    assert access == {name: "read-write" if writable else "read-only"
                      for name, writable in expected.items()}

    entry = next(e for e in json.loads(paths["json"].read_text())["registers"]
                 if e["name"] == "MsiStatus")
    assert {f["name"]: "W" in f["access"] for f in entry["fields"]} == expected


def test_msi_cmd_operations_are_named(generated):
    """MsiCmd's op field carries the operations as an encoding (SystemRDL enum, IP-XACT
    enumerated values, JSON), with the values of docs/spec.md §4."""
    params, _, paths = generated
    if not PROFILES[params.profile].msi_registers:
        return
    from systemrdl.node import FieldNode

    top = compile_rdl(paths["rdl"])
    op = next(n for n in top.descendants() if isinstance(n, FieldNode)
              and n.parent.inst_name == "MsiCmd" and n.inst_name == "op")
    assert {m.name: m.value for m in op.get_property("encode")} == SPEC_MSI_OPS

    root = ET.parse(paths["xml"]).getroot()
    ns = {"ipxact": root.tag[1:root.tag.index("}")]}
    values = {v.findtext("ipxact:name", namespaces=ns):
              _ipxact_int(v.findtext("ipxact:value", namespaces=ns))
              for v in root.iterfind(".//ipxact:enumeratedValue", ns)}
    assert values == SPEC_MSI_OPS

    entry = next(e for e in json.loads(paths["json"].read_text())["registers"]
                 if e["name"] == "MsiCmd")
    field = next(f for f in entry["fields"] if f["name"] == "op")
    assert {v["name"]: v["value"] for v in field["values"]} == SPEC_MSI_OPS


# Device tree: the real dtc on the real files ------------------------------------------------

@pytest.fixture(scope="module")
def dtc():
    """dtc, installed from Debian's device-tree-compiler if it is missing."""
    try:
        setup.ensure_host_packages(["device-tree-compiler"], "compiling the generated .dtsi",
                                   progress=lambda message: None)
    except SetupError as exc:
        pytest.fail(f"dtc is needed and could not be installed: {exc}", pytrace=False)
    return shutil.which("dtc")


def _dts_wrapper(params, paths, where):
    """A .dts that uses the generated files as an integrator would: ``<stem>.dtsi`` after
    the root node ("top"), or ``<stem>-node.dtsi`` inside a simple-bus node ("bus"). By
    absolute path, from another directory: the nested /include/ must still be found."""
    cells = dt_cells(params)
    sizes = [f"#address-cells = <{cells}>;", f"#size-cells = <{cells}>;"]
    # An interrupt controller with the GIC's 3-cell specifiers, inherited by the endpoint.
    gic = ["gic: interrupt-controller {", '\tcompatible = "arm,gic-400";',
           "\t#interrupt-cells = <3>;", "\t#address-cells = <0>;", "\tinterrupt-controller;",
           "};"]
    root = [*sizes, "interrupt-parent = <&gic>;", *gic]
    if where == "bus":
        root += ["soc {", '\tcompatible = "simple-bus";', *("\t" + s for s in sizes),
                 "\tranges;", f'\t/include/ "{paths["dtsi_node"]}"', "};"]
    lines = ["/dts-v1/;", "/ {", *("\t" + line for line in root), "};"]
    if where == "top":
        lines.append(f'/include/ "{paths["dtsi"]}"')
    return "\n".join(lines) + "\n"


def _decompiled_nodes(text):
    """``{path: {property: value text, or True for an empty one}}`` of dtc's DTS output."""
    nodes, stack = {}, []
    for line in (raw.strip() for raw in text.splitlines()):
        if line.endswith("{"):
            stack.append(line[:-1].strip())
            nodes["/" + "/".join(stack[1:])] = {}
        elif line == "};":
            stack.pop()
        elif line.endswith(";") and stack:
            name, _, value = line[:-1].partition(" = ")
            nodes["/" + "/".join(stack[1:])][name] = value or True
    return nodes


def _cells(value):
    return [int(cell, 0) for cell in value.strip("<>").split()]


def _compile_dts(dtc, params, paths, where, tmp_path):
    """Compile the wrapper (dtc -@ keeps labels in __symbols__), decompile the blob; the
    decompiled nodes and the path of the endpoint's node."""
    work = tmp_path / where
    work.mkdir()
    source, blob = work / "board.dts", work / "board.dtb"
    source.write_text(_dts_wrapper(params, paths, where))
    compiled = subprocess.run([dtc, "-@", "-I", "dts", "-O", "dtb", "-o", str(blob),
                               str(source)], cwd=work, capture_output=True, text=True)
    # Warnings too: they flag a unit address that disagrees with reg, a bad specifier...
    assert compiled.returncode == 0 and not compiled.stderr, compiled.stderr
    decompiled = subprocess.run([dtc, "-I", "dtb", "-O", "dts", str(blob)],
                                capture_output=True, text=True, check=True)
    nodes = _decompiled_nodes(decompiled.stdout)
    found = [path for path in nodes if path.rpartition("/")[2].startswith("virtio@")]
    parent = "/soc" if where == "bus" else ""
    assert found == [f"{parent}/virtio@{artefacts.DT_PLACEHOLDER_BASE:x}"]
    return nodes, found[0]


@pytest.mark.parametrize("where", ["top", "bus"])
def test_dtsi_compiles_with_dtc(generated, dtc, where, tmp_path):
    """dtc takes <stem>.dtsi at the top level and <stem>-node.dtsi inside a bus node; the node
    is a virtio,mmio with the window as reg, labelled with the module name, with a level-high
    interrupt and, by default, without dma-coherent."""
    params, _, paths = generated
    nodes, path = _compile_dts(dtc, params, paths, where, tmp_path)
    node = nodes[path]
    assert node["compatible"] == '"virtio,mmio"'
    cells = dt_cells(params)
    reg = _cells(node["reg"])
    assert len(reg) == 2 * cells
    join = lambda words: sum(word << 32 * (len(words) - 1 - i) for i, word in enumerate(words))
    assert (join(reg[:cells]), join(reg[cells:])) == \
        (artefacts.DT_PLACEHOLDER_BASE, 1 << params.addr_width)
    interrupts = _cells(node["interrupts"])
    assert len(interrupts) == 3 and interrupts[2] == IRQ_TYPE_LEVEL_HIGH
    assert "dma-coherent" not in node
    label = artefacts._c_identifier(params.name)
    assert nodes["/__symbols__"][label] == f'"{path}"'


def test_dtsi_dma_coherent_on_request(dtc, tmp_path):
    params = EndpointParams(profile="seed")
    paths = write_artefacts(params, tmp_path / "out" / "ep.v", dma_coherent=True)
    for where in ("top", "bus"):
        nodes, path = _compile_dts(dtc, params, paths, where, tmp_path)
        assert nodes[path]["dma-coherent"] is True, where


def test_dtsi_node_is_written_once(generated):
    """<stem>.dtsi holds no node of its own: it includes <stem>-node.dtsi by its bare name,
    so dtc looks for it beside <stem>.dtsi."""
    _, _, paths = generated
    top = paths["dtsi"].read_text()
    assert f'/include/ "{paths["dtsi_node"].name}"' in top
    assert "virtio,mmio" not in top


def test_dtsi_comment_says_what_to_fill_in(generated):
    params, _, paths = generated
    text = paths["dtsi_node"].read_text()
    comment = text[:text.index("*/")]
    assert "FILL IN" in comment and "base address" in comment
    # Why level, and how to declare it on the usual controllers.
    assert "LEVEL" in comment and "edge-triggered" in comment and "lost" in comment
    assert "<GIC_SPI n IRQ_TYPE_LEVEL_HIGH>" in comment and "<0 n 4>" in comment
    assert "PLIC" in comment
    assert artefacts.DMA_COHERENT_OPTION in comment
    assert ("msi-parent = <&its DEVID>" in comment) == PROFILES[params.profile].msi_registers


def test_compile_failure_is_one_clear_exception(tmp_path, monkeypatch):
    monkeypatch.setattr(artefacts, "emit_rdl", lambda params: "addrmap broken { reg };\n")
    with pytest.raises(ArtefactError, match=r"SystemRDL compilation of ep\.rdl failed: .+"):
        write_artefacts(EndpointParams(), tmp_path / "ep.v")


def test_exporter_failure_is_one_clear_exception(tmp_path, monkeypatch):
    import peakrdl_markdown

    def broken(self, *args, **kwargs):
        raise ValueError("disk on fire")

    monkeypatch.setattr(peakrdl_markdown.MarkdownExporter, "export", broken)
    with pytest.raises(ArtefactError, match=r"Markdown export to ep\.md failed: .*disk on fire"):
        write_artefacts(EndpointParams(), tmp_path / "ep.v")


def test_rejects_non_params(tmp_path):
    with pytest.raises(TypeError, match="EndpointParams"):
        write_artefacts({"profile": "seed"}, tmp_path / "ep.v")
