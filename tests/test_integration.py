"""The integration files ``generate`` writes beside the Verilog (:mod:`virtio_mmio.tools.
integration`): the instantiation template compiles beside the generated module, FuseSoC (from
PyPI, with edalize) lints and elaborates the core file, and a CMSIS-SVD parser reads back every
register and field of the map."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from virtio_mmio.params import EndpointParams
from virtio_mmio.tools.artefacts import register_entries
from virtio_mmio.tools.cli import main as cli_main
from virtio_mmio_sim.linux.setup import SetupError, ensure_host_packages
from virtio_mmio_sim.verilator import ensure_verilator


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


def test_svd_and_core_need_no_options(tmp_path):
    """Both are written by default, and ``--no-artefacts`` leaves them out too."""
    out = tmp_path / "x.v"
    assert cli_main(["generate", "--no-artefacts", "-o", str(out)]) == 0
    assert not out.with_suffix(".svd").exists() and not out.with_suffix(".core").exists()
    assert not (tmp_path / "x_inst.vh").exists()
