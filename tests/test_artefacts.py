"""The register artefacts beside the Verilog (SPEC §10) agree with the register map data."""

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from virtio_mmio import artefacts
from virtio_mmio.artefacts import ARTEFACT_KINDS, ArtefactError, compile_rdl, write_artefacts
from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import CONFIG_BASE, PROFILES, RegisterMap


CASES = {
    "seed": dict(profile="seed"),
    "plain-v2": dict(profile="plain-v2"),
    "seed-config0": dict(profile="seed", config_size=0),
    "plain-v2-config0": dict(profile="plain-v2", config_size=0),
    # The extremes: most queues, a sparse doorbell layout, shared memory, a Wishbone port.
    "seed-max": dict(profile="seed", queues=2047, notify_multiplier=0x1000, bus="wishbone",
                     shm=[(0, 0x8000_0000, 0x1_0000), (3, 0x1_0000_0000, 0x20_0000)]),
    "seed-one-doorbell": dict(profile="seed", queues=3, notify_multiplier=0, config_size=8),
}

MSI_REGISTERS = [r.name for r in RegisterMap("seed") if r.name not in RegisterMap("plain-v2")]


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


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_header_struct_agrees(tmp_path):
    """The struct peakrdl-cheader lays out puts every register at the offset of its define."""
    params = EndpointParams(profile="seed")
    paths = write_artefacts(params, tmp_path / "ep.v")
    top = params.name
    checks = "\n".join(
        f"_Static_assert(offsetof({top}_t, {artefacts.RDL_REGISTER_BLOCK}.{reg.name}) == "
        f"{top.upper()}__{artefacts.RDL_REGISTER_BLOCK.upper()}__{reg.name.upper()}_OFFSET, "
        f"\"{reg.name}\");\n"
        f"_Static_assert(sizeof((({top}_t *)0)->{artefacts.RDL_REGISTER_BLOCK}.{reg.name}) "
        f"== {reg.width // 8}, \"{reg.name} width\");"
        for reg in params.regmap)
    source = tmp_path / "check.c"
    source.write_text(f'#include <stddef.h>\n#include "{paths["h"].name}"\n{checks}\n')
    subprocess.run(["cc", "-std=c11", "-fsyntax-only", "-I", str(tmp_path), str(source)],
                   check=True, capture_output=True)


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
        if kind == "dtsi":
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
    assert top.inst_name == params.name
    regs = {n.inst_name: n for n in top.descendants() if isinstance(n, RegNode)}
    assert set(regs) == {r.name for r in params.regmap}
    for reg in params.regmap:
        node = regs[reg.name]
        assert node.absolute_address == reg.offset
        assert node.get_property("regwidth") == reg.width
        assert node.has_sw_readable == reg.readable
        assert node.has_sw_writable == reg.writable
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
        queues = [f for f in regs["MsiStatus"].fields() if f.inst_name == "queues"][0]
        assert queues.get_property("reset") == params.queues


def test_dtsi(generated):
    params, _, paths = generated
    text = paths["dtsi"].read_text()
    assert 'compatible = "virtio,mmio";' in text
    assert re.search(rf"reg = <0x[0-9a-f]+ {1 << params.addr_width:#x}>;", text)
    assert re.search(r"interrupts = <[^>]+>;", text)
    assert "dma-coherent;" in text
    assert "base address" in text and "interrupt" in text.lower()


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
