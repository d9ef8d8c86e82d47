"""One Linux-in-the-loop session: stock Linux in QEMU drives the generated Verilog.

:func:`run_linux` prepares (and caches) QEMU and the guest (:mod:`.setup`), builds the endpoint's
Verilog for the chosen bus into a cocotb model (:mod:`virtio_mmio_sim.cocotb_build`), starts the
simulation (:mod:`.cosim`, which listens on a UNIX socket), starts QEMU on that socket, streams
the guest console, and judges the session from the console and the simulation's record:

* a virtio device bound to ``virtio_rng`` with DeviceID 4;
* VERSION_1 (feature bit 32) negotiated;
* the bytes the guest read from ``/dev/hwrng`` are exactly bytes the device (Python back-end or
  RTL) wrote into the guest's buffers, in the order it wrote them;
* the guest powered off cleanly (QEMU exit status 0 after the kernel's "Power down").
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import Feature

from ..cocotb_build import build, failures, prepare_simulator
from ..cocotb_tests.test_endpoint import PARAMS_ENV
from . import setup
from .cosim import DEVICE_ENV, DEVICES, RESULT_ENV, SEED_ENV, SOCKET_ENV


__all__ = ["BUSES", "DEVICES", "LINUX_PARAMS", "LinuxRun", "linux_params", "run_linux",
           "MARKER"]

#: The console lines the guest's /init prints start with this.
MARKER = "VMMIO-LOOP: "
BUSES = ("axil", "wishbone")
#: Bytes the guest reads from /dev/hwrng (the init script's dd).
HWRNG_BYTES = 1024
VIRTIO_ID_RNG = 4

#: The endpoint Linux drives: profile plain-v2 (what stock Linux speaks), one queue, a
#: virtio-rng identity, VERSION_1 the only feature (virtio-rng has none of its own).
LINUX_PARAMS = {
    "axil": EndpointParams(profile="plain-v2", bus="axil", queues=1, queue_size=64,
                           device_id=VIRTIO_ID_RNG, features=1 << Feature.VERSION_1,
                           config_size=0),
    "wishbone": EndpointParams(profile="plain-v2", bus="wishbone", wishbone_mode="pipelined",
                               queues=1, queue_size=64, device_id=VIRTIO_ID_RNG,
                               features=1 << Feature.VERSION_1, config_size=0),
}


def linux_params(bus, device="model"):
    """The endpoint for ``bus``; with ``device="rtl"`` the parameters of the RTL virtio-rng
    endpoint (:func:`virtio_mmio.rng.rng_params`, same profile and bus)."""
    params = LINUX_PARAMS[bus]
    if device == "rtl":
        from virtio_mmio.rng import rng_params
        params = rng_params(profile=params.profile, bus=params.bus,
                            wishbone_mode=params.wishbone_mode, name="virtio_mmio_rng")
    return params


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class LinuxRun:
    bus: str
    simulator: str
    device: str = "model"
    checks: list = field(default_factory=list)
    seconds: float = 0.0
    qemu_exit: object = None
    console: Path = None
    result: dict = field(default_factory=dict)

    @property
    def passed(self):
        return bool(self.checks) and all(check.ok for check in self.checks)

    def check(self, name):
        return next(check for check in self.checks if check.name == name)

    def verdict(self):
        counts = self.result.get("link", {})
        where = (f"{self.bus} on {self.simulator}, "
                 f"{'RTL virtio-rng device' if self.device == 'rtl' else 'Python back-end'}, "
                 f"{self.seconds:.1f} s, "
                 f"{counts.get('mmio_read', 0)} reads + {counts.get('mmio_write', 0)} writes, "
                 f"{self.result.get('buffers', 0)} buffers")
        if self.passed:
            return (f"PASS: Linux bound virtio_rng to the RTL, negotiated VERSION_1, read "
                    f"{HWRNG_BYTES} bytes from /dev/hwrng that match the device's, powered off "
                    f"cleanly ({where})")
        failed = "; ".join(f"{check.name}: {check.detail}" for check in self.checks
                           if not check.ok) or "no checks ran"
        return f"FAIL: {failed} ({where})"


def _markers(console_text):
    lines = []
    for line in console_text.splitlines():
        line = line.strip("\r\n\x00 ")
        at = line.find(MARKER)
        if at >= 0:
            lines.append(line[at + len(MARKER):])
    return lines


def judge(console_text, result, qemu_exit, timed_out):
    """The checks of one session from the guest console, the simulation's record and QEMU's
    exit status."""
    checks = []
    markers = _markers(console_text)
    devices = [re.match(r"device (\S+) id=(\S+) vendor=(\S+) driver=(\S+) features=(\S*)", m)
               for m in markers if m.startswith("device ")]
    devices = [d for d in devices if d]
    rng = [d for d in devices if d.group(4) == "virtio_rng"]
    if rng and int(rng[0].group(2), 0) == VIRTIO_ID_RNG:
        checks.append(Check("bound", True, f"{rng[0].group(1)} bound to virtio_rng"))
    else:
        seen = ", ".join(f"{d.group(1)} id={d.group(2)} driver={d.group(4)}" for d in devices)
        checks.append(Check("bound", False, "no device bound to virtio_rng with DeviceID 4 "
                            f"(devices: {seen or 'none'})"))
    features = rng[0].group(5) if rng else ""
    version_1 = len(features) > Feature.VERSION_1 and features[Feature.VERSION_1] == "1"
    checks.append(Check("version_1", version_1,
                        "VERSION_1 negotiated" if version_1 else
                        f"feature bit 32 not negotiated (features={features or 'none'})"))

    hwrng = [m.split(" ", 1)[1] if " " in m else "" for m in markers if m.startswith("hwrng ")]
    failed_read = [m for m in markers if m.startswith("hwrng-failed")]
    stream = bytes.fromhex(result.get("stream", ""))
    if hwrng:
        try:
            data = bytes.fromhex(hwrng[0].strip())
        except ValueError:
            data = b""
        if len(data) != HWRNG_BYTES:
            checks.append(Check("hwrng", False, f"read {len(data)} bytes, not {HWRNG_BYTES}"))
        elif data in stream:
            offset = stream.index(data)
            checks.append(Check("hwrng", True, f"{len(data)} bytes = device bytes "
                                f"{offset}..{offset + len(data) - 1} of {len(stream)}"))
        else:
            checks.append(Check("hwrng", False, f"the {len(data)} bytes read are not a run of "
                                f"the {len(stream)} bytes the device wrote"))
    else:
        why = failed_read[0] if failed_read else "no hwrng line on the console"
        checks.append(Check("hwrng", False, why))

    powered_off = "done" in markers and "reboot: Power down" in console_text
    if timed_out:
        checks.append(Check("poweroff", False, "timed out; QEMU was stopped"))
    elif qemu_exit != 0 or not powered_off:
        checks.append(Check("poweroff", False, f"QEMU exit status {qemu_exit}, "
                            f"{'power-down seen' if powered_off else 'no clean power-down'}"))
    else:
        checks.append(Check("poweroff", True, "guest powered off, QEMU exit status 0"))

    outcome = result.get("outcome", "no record from the simulation")
    errors = result.get("backend_errors", [])
    sim_ok = outcome == "closed" and not errors
    checks.append(Check("simulation", sim_ok, "simulation ended with QEMU" if sim_ok else
                        f"{outcome}{'; device: ' + '; '.join(errors) if errors else ''}"))
    return checks


def _wait_for_socket(path, thread, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        if not thread.is_alive():
            return False
        time.sleep(0.05)
    return False


def run_linux(*, bus="axil", simulator="verilator", device="model", timeout=300.0,
              work_dir="build/linux", out=sys.stdout, seed=1, progress=None):
    """Run one session; returns a :class:`LinuxRun`. ``device``: ``"model"`` (the Python
    virtio-rng back-end on the device-side ports) or ``"rtl"`` (the RTL virtio-rng device, its
    DMA port served from guest memory). Raises :class:`setup.SetupError` when QEMU or the guest
    cannot be prepared, ValueError for a bad ``bus``, ``simulator`` or ``device``."""
    if bus not in BUSES:
        raise ValueError(f"bus must be one of {', '.join(BUSES)}, not {bus!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    say = progress or (lambda message: print(message, file=out, flush=True))
    work = Path(work_dir).resolve() / f"{bus}-{simulator}" / device
    work.mkdir(parents=True, exist_ok=True)

    assets = setup.prepare(progress=say)
    if simulator == "icarus":
        setup.ensure_host_packages(["iverilog"], "--sim icarus", progress=say)
    prepare_simulator(simulator, Path(work_dir).resolve() / "tools")
    params = linux_params(bus, device)
    what = "the RTL virtio-rng device" if device == "rtl" else "a Python virtio-rng back-end"
    say(f"[linux] building the {bus} endpoint (plain-v2) with {what} for {simulator}")
    runner = build(params, work / "sim_build", simulator=simulator, log_file=work / "build.log",
                   device="rng" if device == "rtl" else "none")

    run = LinuxRun(bus=bus, simulator=simulator, device=device, console=work / "console.log")
    result_path = work / "session.json"
    results_xml = work / "results.xml"
    for stale in (result_path, results_xml):
        stale.unlink(missing_ok=True)
    socket_dir = tempfile.mkdtemp(prefix="vmmio-")
    socket_path = os.path.join(socket_dir, "mmio.sock")
    simulation_error = []

    def simulate():
        try:
            runner.test(test_module="virtio_mmio_sim.linux.cosim", hdl_toplevel=params.name,
                        hdl_toplevel_lang="verilog", build_dir=work / "sim_build",
                        test_dir=work, results_xml=str(results_xml),
                        log_file=work / "simulation.log",
                        extra_env={PARAMS_ENV: json.dumps(params.as_dict()),
                                   SOCKET_ENV: socket_path, RESULT_ENV: str(result_path),
                                   SEED_ENV: str(seed), DEVICE_ENV: device})
        except SystemExit:
            pass                # a failed cocotb test: results.xml says which
        except BaseException as error:      # reported after the session
            simulation_error.append(f"{type(error).__name__}: {error}")

    start = time.monotonic()
    thread = threading.Thread(target=simulate, name="cocotb", daemon=True)
    thread.start()
    qemu_exit, timed_out = None, False
    try:
        if not _wait_for_socket(socket_path, thread, 120):
            raise RuntimeError(f"the simulation did not start listening; see "
                               f"{work / 'simulation.log'}")
        command = setup.qemu_command(assets, socket_path)
        say(f"[linux] booting {assets.kernel_release} in QEMU (console below; also in "
            f"{run.console})")
        with open(run.console, "w") as console, \
                subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT) as qemu:
            expired = threading.Event()

            def stop_qemu():
                expired.set()
                qemu.kill()

            killer = threading.Timer(timeout, stop_qemu)
            killer.start()
            try:
                for raw in qemu.stdout:
                    text = raw.decode("utf-8", "replace")
                    console.write(text)
                    out.write(text)
                    out.flush()
            finally:
                killer.cancel()
                qemu_exit = qemu.wait()
                timed_out = expired.is_set()
        thread.join(60)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
    run.seconds = time.monotonic() - start
    run.qemu_exit = qemu_exit
    if result_path.exists():
        run.result = json.loads(result_path.read_text())
    run.checks = judge(run.console.read_text(errors="replace"), run.result, qemu_exit,
                       timed_out)
    if simulation_error:
        run.checks.append(Check("cocotb", False, simulation_error[0]))
    elif results_xml.exists():
        problems = failures(results_xml)
        run.checks.append(Check("cocotb", not problems, "; ".join(problems) or
                                "cocotb test passed"))
    else:
        run.checks.append(Check("cocotb", False, f"no cocotb results; see "
                                f"{work / 'simulation.log'}"))
    return run
