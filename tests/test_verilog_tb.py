"""The generated Verilog as a hand-written SoC test bench sees it: no cocotb, `rst` held high
from time 0 (``sim/tb/reset_from_t0_tb.v``), under Icarus in Verilog-2005 and SystemVerilog
mode and under Verilator; and ``verilator --lint-only`` on the generated file without flags.

The test bench checks that every handshake output is 0 or 1 from the first clock edge on, then
reads MagicValue and DeviceID, walks Status through two driver bits and a device reset, and
prints ``PASS`` or ``FAIL: <why>``.
"""

import os
import subprocess
from pathlib import Path

import pytest

from virtio_mmio.tools.generate import generate_verilog
from virtio_mmio.params import EndpointParams
from virtio_mmio_sim.linux.run import linux_params
from virtio_mmio_sim.linux.setup import SetupError, ensure_host_packages
from virtio_mmio_sim.verilator import ensure_verilator, make_variables


pytestmark = pytest.mark.cocotb

ROOT = Path(__file__).resolve().parent.parent
TESTBENCH = ROOT / "sim" / "tb" / "reset_from_t0_tb.v"
TOOLS = ROOT / "build" / "tools"

#: configuration name -> (parameters, test-bench macros)
CONFIGS = {
    "axil-seed": (EndpointParams(), {}),
    "wishbone-plain-v2": (EndpointParams(bus="wishbone", profile="plain-v2", queues=3,
                                         device_id=0x10, name="wb_endpoint"),
                          {"WISHBONE": None}),
}


def _defines(params, macros):
    defines = {"DUT": params.name, "ADDR_WIDTH": params.addr_width,
               "DEVICE_ID": f"32'h{params.device_id:x}", **macros}
    return [f"+define+{name}" if value is None else f"+define+{name}={value}"
            for name, value in defines.items()]


def _write(tmp_path, name):
    params, macros = CONFIGS[name]
    source = tmp_path / f"{params.name}.v"
    source.write_text(generate_verilog(params))
    return params, macros, source


def _verdict(output):
    lines = [line for line in output.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert lines and lines[-1].startswith("PASS") and not any(
        line.startswith("FAIL") for line in lines), output


@pytest.fixture(scope="module")
def icarus():
    try:
        ensure_host_packages(["iverilog"], "the plain-Verilog test bench on Icarus",
                             progress=lambda message: None)
    except SetupError as error:
        pytest.fail(str(error))


@pytest.mark.parametrize("language", ["2005", "2012"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_icarus_reset_from_time_zero(icarus, tmp_path, name, language):
    params, macros, source = _write(tmp_path, name)
    binary = tmp_path / "tb.vvp"
    # iverilog takes +define+ only from a command file; -D is the command-line form.
    defines = [f"-D{item[len('+define+'):]}" for item in _defines(params, macros)]
    subprocess.run(["iverilog", f"-g{language}", *defines, "-o", str(binary),
                    str(TESTBENCH), str(source)], check=True, capture_output=True, text=True)
    run = subprocess.run(["vvp", "-n", str(binary)], capture_output=True, text=True,
                         timeout=60)
    _verdict(run.stdout)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_verilator_reset_from_time_zero(tmp_path, name):
    params, macros, source = _write(tmp_path, name)
    tools = ensure_verilator(TOOLS)
    env = dict(os.environ, PATH=tools + os.pathsep + os.environ.get("PATH", ""),
               MAKEFLAGS=" ".join(make_variables(timing=True)))
    build = subprocess.run(["verilator", "--binary", "--top-module", "reset_from_t0_tb",
                            "-Mdir", str(tmp_path / "obj"), *_defines(params, macros),
                            str(TESTBENCH), str(source)],
                           env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    run = subprocess.run([str(tmp_path / "obj" / "Vreset_from_t0_tb")], capture_output=True,
                         text=True, timeout=60)
    _verdict(run.stdout)


@pytest.mark.parametrize("params,device", [
    (EndpointParams(), "none"),
    (EndpointParams(profile="linux-k1", queues=3, msi_window=(0x08090000, 0x1000)), "none"),
    (EndpointParams(profile="plain-v2", bus="wishbone", wishbone_mode="pipelined",
                    shm=[(0, 0x1000, 0x100)]), "none"),
    (EndpointParams(bus="wishbone", queues=40), "none"),
    (linux_params("wishbone", device="rtl"), "rng"),
], ids=["seed", "linux-k1-window", "plain-v2-wb-pipelined-shm", "seed-wb-n40", "rng"])
def test_verilator_lint_without_flags(tmp_path, params, device):
    source = tmp_path / f"{params.name}.v"
    source.write_text(generate_verilog(params, device))
    tools = ensure_verilator(TOOLS)
    lint = subprocess.run([os.path.join(tools, "verilator"), "--lint-only", str(source)],
                          capture_output=True, text=True, timeout=300)
    assert lint.returncode == 0, lint.stderr[-3000:]
    assert "%Warning" not in lint.stderr and "%Error" not in lint.stderr, lint.stderr[-3000:]
