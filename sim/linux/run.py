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

Profiles ``seed`` and ``linux-k1`` (Version 3) boot a GICv3 machine with its ITS, the slot's
device-tree node naming it as ``msi-parent`` with the device's DeviceID, on two vCPUs; the guest
loads the Version-3 transport driver ``virtio_mmio_v3.ko`` (:mod:`.kmod`) instead of the stock
one and runs the scenarios of ``guest/init`` in one boot, delimited by marks the simulation
records its counters at (:func:`v3_figures` collects them, :func:`judge_v3` judges them):

* ``msi``: read with MSI; the platform driver of the slot, the ITS vectors (one per queue plus
  config) and their counts in /proc/interrupts, the wired line (GIC SPI 47) silent;
* ``config``: a configuration-change event from the device arrives on vector 0;
* ``affinity``: the queue vector moved to CPU1 in the middle of a read, traffic goes on there;
* ``wired``: module removed and inserted with ``msi=0``: the wired interrupt, no MSI;
* ``again``: removed and inserted with MSI once more, traffic again;
* per phase, the register accesses per used buffer (MSI against the wired interrupt), the
  doorbell writes per queue (none at QueueNotify, 0x050), and every MSI message with its
  vector, none refused (``msi_errors`` 0).

``device="console"``: the Python virtio-console back-end with MULTIPORT (:mod:`.console`,
six queues, two ports) under the stock ``virtio_console`` driver, in any profile; the guest runs
``guest/console`` (:func:`console_figures` collects, :func:`judge_console` judges): the driver
bound with MULTIPORT negotiated, the control handshake for both ports, port 1's stream from the
device read by the guest and the guest's pattern written to port 1 at the same time (both
checked byte for byte), records written to hvc0 (port 0), the interrupts per vector
(/proc/interrupts) or on the wired line, the doorbells per queue.
"""

import hashlib
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
from . import console as vcons
from .cosim import DEVICE_ENV, DEVICES, RESULT_ENV, SEED_ENV, SOCKET_ENV
from .protocol import MARK_CONFIG_CHANGE


__all__ = ["BUSES", "DEVICES", "PROFILES", "LINUX_PARAMS", "LinuxRun", "linux_params",
           "console_params", "run_linux", "judge", "judge_v3", "v3_figures", "console_figures",
           "judge_console", "MARKER"]

#: The console lines the guest's /init prints start with this.
MARKER = "VMMIO-LOOP: "
BUSES = ("axil", "wishbone")
#: plain-v2: the stock virtio_mmio driver; seed / linux-k1 (Version 3) and dragonball
#: (Version 2 with the Dragonball extensions): the virtio_mmio_v3 driver with MSI through the
#: GICv3 ITS.
PROFILES = ("plain-v2", "seed", "linux-k1", "dragonball")
#: The driver's dialect= for each profile it drives (the "Version-3" sessions below).
DIALECTS = {"seed": "seed", "linux-k1": "k1", "dragonball": "dragonball"}
#: The slot's MMIO window in QEMU (the co-simulation device's COSIM_WINDOW_SIZE and the
#: device tree's reg size): doorbells beyond it cannot be reached, and the driver then
#: notifies at QueueNotify (dragonball's doorbells at 0x1000 + 4q).
SLOT_WINDOW = 0x200
#: vCPUs of a Version-3 session (the affinity scenario needs two).
V3_CPUS = 2
#: The platform driver name of virtio_mmio_v3.ko.
V3_DRIVER = "virtio-mmio-v3"
#: The marks guest/init writes around each read: phase -> (start, end).
PHASE_MARKS = {"msi": (1, 2), "affinity": (3, 4), "wired": (5, 6), "again": (7, 8)}
#: The slot's wired interrupt in /proc/interrupts on the GICv3: SPI 47 = hwirq 79.
WIRED_HWIRQ = 79
#: Platform-MSI hwirq numbers carry the MSI index (= the vector) in their low 11 bits.
PMSI_INDEX_BITS = 11
#: Where the ITS takes MSI writes on the virt machine (GITS_TRANSLATER).
GITS_TRANSLATER = 0x0809_0040
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


def console_params(bus, profile="plain-v2"):
    """The endpoint of the virtio-console back-end: DeviceID 3, VERSION_1 and MULTIPORT,
    :data:`.console.QUEUES` queues of 64, the 12-byte console config space."""
    base = LINUX_PARAMS[bus]
    return EndpointParams(profile=profile, bus=bus, wishbone_mode=base.wishbone_mode,
                          queues=vcons.QUEUES, queue_size=64,
                          device_id=vcons.VIRTIO_ID_CONSOLE,
                          features=1 << Feature.VERSION_1 | 1 << vcons.F_MULTIPORT,
                          config_size=vcons.CONFIG_SIZE)


def linux_params(bus, device="model", profile="plain-v2"):
    """The endpoint for ``bus`` and ``profile``; with ``device="rtl"`` the parameters of the
    RTL virtio-rng endpoint (:func:`virtio_mmio.devices.rng.rng_params`, same profile and bus); with
    ``device="console"`` :func:`console_params`."""
    if device == "console":
        return console_params(bus, profile)
    params = LINUX_PARAMS[bus]
    if profile != params.profile:
        params = EndpointParams(profile=profile, bus=params.bus,
                                wishbone_mode=params.wishbone_mode, queues=params.queues,
                                queue_size=params.queue_sizes[0], device_id=params.device_id,
                                features=params.features, config_size=params.config_size)
    if device == "rtl":
        from virtio_mmio.devices.rng import rng_params
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
    profile: str = "plain-v2"
    checks: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)     # Version 3: v3_figures()
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
        what = {"rtl": "RTL virtio-rng device",
                "console": "Python virtio-console back-end"}.get(self.device, "Python back-end")
        where = (f"{self.profile}, {self.bus} on {self.simulator}, {what}, "
                 f"{self.seconds:.1f} s, "
                 f"{counts.get('mmio_read', 0)} reads + {counts.get('mmio_write', 0)} writes, "
                 f"{self.result.get('buffers', 0)} buffers")
        if self.passed and self.device == "console":
            f = self.figures
            return (f"PASS: Linux bound virtio_console (MULTIPORT, 2 ports) to the RTL; port 1 "
                    f"{f['rx_bytes']} bytes device->guest and {f['tx_bytes']} bytes "
                    f"guest->device at the same time, hvc0 {f['hvc_bytes']} bytes, all equal; "
                    f"interrupts per vector {f['irq_per_vector']}, wired "
                    f"{f['wired_irqs']}; doorbells per queue {f['doorbells']} ({where})")
        if self.passed and self.profile != "plain-v2":
            per = {p: v["per_request"] for p, v in self.figures.get("phases", {}).items()}
            return (f"PASS: Linux bound {V3_DRIVER} and virtio_rng to the RTL, MSI through the "
                    f"ITS on every vector, remove/insert with the wired interrupt and back, "
                    f"config change, affinity move; accesses per request with MSI "
                    f"{per.get('msi')} vs wired {per.get('wired')}; read /dev/hwrng "
                    f"{len(self.figures.get('reads', {}))} times, every byte the device's "
                    f"({where})")
        if self.passed:
            return (f"PASS: Linux bound virtio_rng to the RTL, negotiated VERSION_1, read "
                    f"{HWRNG_BYTES} bytes from /dev/hwrng that match the device's, powered off "
                    f"cleanly ({where})")
        failed = "; ".join(f"{check.name}: {check.detail}" for check in self.checks
                           if not check.ok) or "no checks ran"
        return f"FAIL: {failed} ({where})"

    def report(self):
        """Version 3: the figures, a few lines (empty for plain-v2)."""
        f = self.figures
        if not f:
            return ""
        if self.device == "console":
            return "\n".join([
                f"  port 1: device->guest {f['rx_bytes']} bytes, guest->device {f['tx_bytes']} "
                f"bytes; hvc0 (port 0) guest->device {f['hvc_bytes']} bytes; rx/tx used "
                f"events interleaved {f['interleaving']} times",
                f"  /proc/interrupts per vector during the transfer {f['irq_per_vector']}, "
                f"since boot {f['irq_totals']} ({f['irq_names']}); wired line "
                f"{f['wired_irqs']}",
                f"  MSI writes {f['msi_writes']} per vector {f['msi_per_vector']} refused "
                f"{f['msi_refused']} msi_errors {f['msi_errors']}",
                f"  doorbells per queue {f['doorbells']}, notifications {f['notifications']}, "
                f"used events {f['used_events']} (suppressed {f['suppressed']})",
                f"  control in {f['control_in']}",
                f"  control out {f['control_out']}"])
        lines = []
        for phase, v in f["phases"].items():
            lines.append(f"  {phase:9s} MSI {'on ' if v['msi_enabled'][-1] else 'off'} "
                         f"{v['accesses']:4d} accesses / {v['buffers']:3d} buffers = "
                         f"{v['per_request']} per request; {v['msi_writes']} MSI writes, "
                         f"{v['wired_rises']} wired rises; doorbells {v['doorbells']}, "
                         f"QueueNotify {v['queue_notify']}, InterruptStatus reads "
                         f"{v['isr_reads']}")
        for label, v in f["irqs"].items():
            lines.append(f"  /proc/interrupts {label:13s} ITS vectors {v['vectors']} "
                         f"wired {v['wired']}")
        lines.append(f"  MSI writes {f['msi_writes']} per vector {f['msi_per_vector']} "
                     f"targets {f['msi_targets']} refused {f['msi_refused']} msi_errors "
                     f"{f['msi_errors']}")
        return "\n".join(lines)


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
        checks.append(Check("hwrng", *_bytes_check(hwrng[0], stream, strict=True,
                                                   fill_thread=_fill_thread_left(markers))))
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


# ------------------------------------------------------------------------------ Version 3

@dataclass
class IrqLine:
    """One line of /proc/interrupts as guest/init prints it."""
    irq: int
    counts: list
    chip: str
    hwirq: int
    name: str

    @property
    def total(self):
        return sum(self.counts)

    @property
    def vector(self):
        """The MSI index (= the endpoint's vector) of a platform MSI, else None."""
        return self.hwirq & ((1 << PMSI_INDEX_BITS) - 1) if "pMSI" in self.chip else None

    @property
    def wired(self):
        return "pMSI" not in self.chip and self.hwirq == WIRED_HWIRQ


def _irq_dumps(markers):
    """label -> [IrqLine] from the ``irq LABEL CPUS LINE`` lines."""
    dumps = {}
    for m in markers:
        parts = m.split()
        if len(parts) < 3 or parts[0] != "irq":
            continue
        label, fields = parts[1], parts[3:]
        dumps.setdefault(label, [])
        try:
            cpus = int(parts[2])
            line = IrqLine(int(fields[0].rstrip(":")), [int(c) for c in fields[1:1 + cpus]],
                           fields[1 + cpus], int(fields[2 + cpus]),
                           " ".join(fields[3 + cpus:]))
        except (ValueError, IndexError):
            continue
        dumps[label].append(line)
    return dumps


def _vectors(dump):
    """vector -> per-CPU counts of the platform MSIs in one dump."""
    return {line.vector: line.counts for line in dump if line.vector is not None}


def _wired_total(dump):
    """The wired line's count in one dump (0 when it is not listed)."""
    return sum(line.total for line in dump if line.wired)


def _access_log(lines):
    """(write, offset, value) of every access in accesses.log (mark lines left out); the
    value written, or None for a read."""
    out = []
    for line in lines:
        m = re.match(r"(read|write) (0x[0-9a-f]+) (?:<- (0x[0-9a-f]+) )?", line)
        if m:
            out.append((m.group(1) == "write", int(m.group(2), 16),
                        int(m.group(3), 16) if m.group(3) else None))
    return out


def _doorbell_offsets(params):
    """{byte offset: queue} of the per-queue doorbells of ``params``."""
    return {params.notify_base + q * params.notify_multiplier: q for q in range(params.queues)}


def _doorbells_reachable(params):
    """Whether the driver can notify at the per-queue doorbells: they exist and lie inside the
    slot's :data:`SLOT_WINDOW` (otherwise it notifies at QueueNotify)."""
    return bool(params.has_doorbells and params.notify_multiplier and
                params.doorbell_end <= SLOT_WINDOW)


#: Bytes the hwrng core's fill thread takes from the device at a time (rng_buffer_size():
#: SMP_CACHE_BYTES, 64 on arm64).
HWRNG_FILL_BYTES = 64


def _runs(data, stream):
    """``data`` as maximal runs of ``stream``, greedily from the front: [(start in stream,
    length)], or None when a byte of ``data`` is nowhere in ``stream``."""
    runs, i = [], 0
    while i < len(data):
        lo, hi = 0, len(data) - i          # data[i:i+lo] is in stream; find the longest
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if data[i:i + mid] in stream:
                lo = mid
            else:
                hi = mid - 1
        if lo == 0:
            return None
        runs.append((stream.index(data[i:i + lo]), lo))
        i += lo
    return runs


def _fill_thread_left(markers):
    """Whether the guest reported an hwrng fill thread still running after it set the
    quality to 0 (``guest/init``, quiet_hwrng)."""
    return any(re.match(r"rng-quality .*fill threads \d+ -> [1-9]", m) for m in markers)


def _bytes_check(hex_text, stream, strict, fill_thread=False):
    """(ok, detail) for bytes read from /dev/hwrng: one run of the device's bytes, with two
    exceptions a reader of the stock hwrng core meets:

    * ``fill_thread`` (the guest's hwrng fill thread was still running): one gap of at most
      :data:`HWRNG_FILL_BYTES` bytes inside the read, the buffer that thread took in the middle
      of it; the bytes on both sides stay in the device's order;
    * not ``strict``: a first run of at most 64 bytes from anywhere earlier in the stream, what
      the hwrng core kept from the device before a remove + insert."""
    try:
        data = bytes.fromhex(hex_text.strip())
    except ValueError:
        data = b""
    if len(data) != HWRNG_BYTES:
        return False, f"read {len(data)} bytes, not {HWRNG_BYTES}"
    runs = _runs(data, stream) or []
    notes = []
    if len(runs) > 1 and not strict and runs[0][1] <= 64:
        notes.append(f"{runs[0][1]} bytes kept from before")
        runs = runs[1:]
    if len(runs) == 2 and fill_thread:
        (first, length), (second, _) = runs
        gap = second - (first + length)
        if 0 < gap <= HWRNG_FILL_BYTES:
            notes.append(f"{gap} bytes between two runs taken by the hwrng fill thread")
            runs = [(first, None)]
    if len(runs) == 1:
        start = runs[0][0]
        return True, (f"{len(data)} bytes = device bytes from {start} of {len(stream)}" +
                      (f" ({'; '.join(notes)})" if notes else ""))
    return False, (f"the {len(data)} bytes read are not a run of the {len(stream)} bytes the "
                   f"device wrote ({len(runs) or 'no'} runs"
                   f"{', with an hwrng fill thread left' if fill_thread else ''})")


def v3_figures(console_text, result, access_lines, params):
    """What a Version-3 session showed, from the console, the simulation's record and the
    access log: a dict of plain values (see :func:`judge_v3`)."""
    markers = _markers(console_text)
    doorbells = _doorbell_offsets(params)
    accesses = _access_log(access_lines)
    marks = {}
    for snap in result.get("marks", []):
        marks.setdefault(snap["mark"], snap)

    platform = {}
    for m in markers:
        found = re.match(r"platform (\S+) \S+ driver=(\S+)", m)
        if found:
            platform[found.group(1)] = found.group(2)
    parent = next((m.split()[1] for m in markers if m.startswith("msi-parent ")), None)

    phases = {}
    for phase, (start, end) in PHASE_MARKS.items():
        if start not in marks or end not in marks:
            continue
        a, b = marks[start], marks[end]
        segment = accesses[a["accesses"]:b["accesses"]]
        buffers = (b["buffers"] or 0) - (a["buffers"] or 0)
        count = b["accesses"] - a["accesses"]
        phases[phase] = {
            "msi_enabled": [a["msi_enabled"], b["msi_enabled"]],
            "accesses": count, "buffers": buffers,
            "per_request": round(count / buffers, 2) if buffers else None,
            "msi_writes": b["msi_writes"] - a["msi_writes"],
            "wired_rises": b["irq_rise"] - a["irq_rise"],
            "queue_notify": sum(1 for w, o, _ in segment if w and o == 0x050),
            "doorbells": {str(q): sum(1 for w, o, _ in segment if w and o == off)
                          for off, q in doorbells.items()},
            "isr_reads": sum(1 for w, o, _ in segment if not w and o == 0x060),
        }

    dumps = _irq_dumps(markers)
    irqs = {label: {"vectors": {str(v): c for v, c in sorted(_vectors(dump).items())},
                    "wired": _wired_total(dump)}
            for label, dump in dumps.items()}

    stream = bytes.fromhex(result.get("stream", ""))
    reads = {}
    for m in markers:
        found = re.match(r"hwrng(\.\S+)? (\S*)$", m)
        if found:
            label = (found.group(1) or ".msi")[1:]
            reads[label] = _bytes_check(found.group(2), stream, strict=label == "msi",
                                        fill_thread=_fill_thread_left(markers))
        found = re.match(r"hwrng-failed(\.\S+)? (.*)$", m)
        if found:
            reads[(found.group(1) or ".msi")[1:]] = (False, found.group(2))
    background = next((int(m.split()[1]) for m in markers
                       if re.fullmatch(r"background \d+", m)), None)

    session_writes = [(w, o) for w, o, _ in accesses if w]
    return {
        "profile": params.profile,
        "platform_driver": platform,
        "msi_parent": parent,
        "phases": phases,
        "irqs": irqs,
        "reads": {label: {"ok": ok, "detail": detail} for label, (ok, detail) in reads.items()},
        "background_bytes": background,
        "affinity": next((m for m in markers if m.startswith("affinity")), None),
        "msi_error_probe": result.get("msi_error_probe"),
        "queue_notify_writes": sum(1 for _, o in session_writes if o == 0x050),
        "doorbells_reachable": _doorbells_reachable(params),
        "doorbell_writes": {str(q): sum(1 for _, o in session_writes if o == off)
                            for off, q in doorbells.items()},
        "msi_writes": len(result.get("msi_writes", [])),
        "msi_addresses": sorted({w[0] for w in result.get("msi_writes", [])}),
        "msi_per_vector": result.get("msi_per_vector", {}),
        "msi_targets": result.get("msi_targets", {}),
        "msi_refused": result.get("msi_refused"),
        "msi_errors": result.get("msi_errors"),
        # As of the config mark (the MSI error probe raises one more later).
        "config_events": marks.get(MARK_CONFIG_CHANGE, {}).get("config_events"),
        "failures": [m for m in markers if re.match(r"\S+-failed", m)],
    }


def judge_v3(figures, queues=1, devid=setup.DEFAULT_DEVID, cpus=V3_CPUS):
    """The Version-3 checks from :func:`v3_figures`."""
    checks = []
    add = lambda name, ok, detail: checks.append(Check(name, bool(ok), detail))  # noqa: E731
    f = figures
    phases, irqs, reads = f["phases"], f["irqs"], f["reads"]

    parent = f["msi_parent"] or ""
    got_devid = int(parent[8:16], 16) if len(parent) == 16 else None
    add("msi_parent", got_devid == devid,
        f"msi-parent = <&its {got_devid:#x}>" if got_devid is not None else
        "the slot's device-tree node has no msi-parent")

    drivers = f["platform_driver"]
    bound = [drivers.get(phase) for phase in ("msi", "wired", "again")]
    unbound = [drivers.get(phase) for phase in ("removed", "removed-again")]
    add("driver", bound == [V3_DRIVER] * 3 and unbound == ["none"] * 2,
        f"platform driver of the slot per load: {', '.join(map(str, bound))}; after "
        f"each remove: {', '.join(map(str, unbound))}")

    def vector_delta(after, before, vector, cpu=None):
        a = irqs.get(after, {}).get("vectors", {}).get(str(vector))
        b = irqs.get(before, {}).get("vectors", {}).get(str(vector), [0] * len(a or []))
        if a is None:
            return None
        if cpu is not None:
            return a[cpu] - b[cpu] if cpu < len(a) else None
        return sum(a) - sum(b)

    msi = phases.get("msi")
    wanted = [str(v) for v in range(queues + 1)]
    got = sorted(irqs.get("msi", {}).get("vectors", {}), key=int)
    queue_counts = [vector_delta("msi", "msi-before", q + 1) for q in range(queues)]
    wired_msi = irqs.get("msi", {}).get("wired")
    ok = (msi is not None and msi["msi_enabled"] == [1, 1] and msi["buffers"] > 0 and
          msi["msi_writes"] >= msi["buffers"] and msi["wired_rises"] == 0 and got == wanted and
          all(c and c > 0 for c in queue_counts) and wired_msi == 0)
    add("msi", ok, "no MSI phase recorded" if msi is None else
        f"MSI {'on' if msi['msi_enabled'] == [1, 1] else 'OFF'}, {msi['buffers']} buffers, "
        f"{msi['msi_writes']} MSI writes; ITS vectors {','.join(got) or 'none'} "
        f"(want {','.join(wanted)}), queue vector interrupts {queue_counts}, wired line "
        f"{wired_msi} interrupts, {msi['wired_rises']} rises")

    if f["doorbells_reachable"]:
        add("doorbells", f["queue_notify_writes"] == 0 and
            all(n > 0 for n in f["doorbell_writes"].values()),
            f"{f['queue_notify_writes']} writes at QueueNotify (0x050), doorbell writes per "
            f"queue {f['doorbell_writes']}")
    else:
        add("doorbells", f["queue_notify_writes"] > 0 and
            not any(f["doorbell_writes"].values()),
            f"the doorbells lie beyond the {SLOT_WINDOW:#x}-byte slot, so the driver notifies "
            f"at QueueNotify: {f['queue_notify_writes']} writes at 0x050, doorbell writes per "
            f"queue {f['doorbell_writes']}")

    config = vector_delta("config", "msi", 0)
    add("config", f["config_events"] == 1 and config is not None and config > 0,
        f"{f['config_events']} configuration-change event(s) raised, vector 0 interrupts "
        f"+{config}")

    if cpus >= 2:
        found = re.search(r"\bto=(\d+)", f["affinity"] or "")
        mask = int(found.group(1), 16) if found else 0
        cpu = mask.bit_length() - 1 if mask and not mask & (mask - 1) else None
        moved = vector_delta("affinity", "config", 1, cpu=cpu) if cpu is not None else None
        read = reads.get("affinity", {"ok": False, "detail": "no read"})
        add("affinity", moved is not None and moved > 0 and read["ok"] and
            f["background_bytes"] == 8 * 1024,
            f"{f['affinity'] or 'no affinity line'}; queue vector interrupts on CPU{cpu} "
            f"+{moved} after the move; background read {f['background_bytes']} bytes; then "
            f"{read['detail']}")

    wired = phases.get("wired")
    wired_delta = (irqs.get("wired", {}).get("wired", 0) -
                   irqs.get("wired-before", {}).get("wired", 0)) if "wired" in irqs else None
    read = reads.get("wired", {"ok": False, "detail": "no read"})
    add("wired", wired is not None and wired["msi_enabled"] == [0, 0] and
        wired["msi_writes"] == 0 and wired_delta and wired_delta > 0 and read["ok"],
        "no wired phase recorded" if wired is None else
        f"after remove + insert msi=0: MSI {'off' if wired['msi_enabled'] == [0, 0] else 'ON'}, "
        f"{wired['msi_writes']} MSI writes, wired line +{wired_delta} interrupts, "
        f"{read['detail']}")

    again = phases.get("again")
    again_counts = [vector_delta("again", "none", q + 1) for q in range(queues)]
    again_wired = (irqs.get("again", {}).get("wired", 0) -
                   irqs.get("wired", {}).get("wired", 0)) if "again" in irqs else None
    read = reads.get("again", {"ok": False, "detail": "no read"})
    add("again", again is not None and again["msi_enabled"] == [1, 1] and
        again["msi_writes"] > 0 and all(c and c > 0 for c in again_counts) and
        again_wired == 0 and read["ok"],
        "no second MSI phase recorded" if again is None else
        f"after remove + insert with MSI: {again['msi_writes']} MSI writes, queue vector "
        f"interrupts {again_counts}, wired line +{again_wired}, {read['detail']}")

    per = {phase: phases[phase]["per_request"] for phase in ("msi", "wired", "again")
           if phase in phases}
    add("per_request", per.get("msi") is not None and per.get("wired") is not None and
        per["msi"] < per["wired"],
        "register accesses per used buffer: " +
        ", ".join(f"{phase} {value}" for phase, value in per.items()))

    strays = f["msi_per_vector"].get("none", 0)
    addresses = set(f["msi_addresses"])
    programmed = sorted({address for targets in f["msi_targets"].values()
                         for address, _ in targets})
    probe = f["msi_error_probe"] or {}
    probe_errors = probe.get("msi_errors_after", 0) - probe.get("msi_errors_before", 0)
    add("msi_messages", f["msi_refused"] == 0 and f["msi_errors"] == probe_errors and
        strays == 0 and f["msi_writes"] > 0 and addresses == {GITS_TRANSLATER},
        f"{f['msi_writes']} MSI writes to {', '.join(hex(a) for a in sorted(addresses)) or '-'} "
        f"(the ITS's GITS_TRANSLATER is {GITS_TRANSLATER:#x}), per vector "
        f"{f['msi_per_vector']}, unattributed {strays}, {f['msi_refused']} refused; targets "
        f"programmed: {', '.join(hex(a) for a in programmed)}")

    refused = [w for w in probe.get("writes", []) if w[3] != 0]
    add("msi_error", bool(probe) and probe["msi_enabled"] == 1 and len(probe["writes"]) == 1 and
        len(refused) == 1 and probe_errors == 1 and probe["msi_error_latched"] == 1,
        "no MSI error probe ran" if not probe else
        f"vector 0 pointed at {probe['address']:#x} (nothing there): "
        f"{len(probe['writes'])} message(s), QEMU result "
        f"{[w[3] for w in probe['writes']]}, msi_errors {probe['msi_errors_before']} -> "
        f"{probe['msi_errors_after']}, msi_error {probe['msi_error_latched']}")

    if f["failures"]:
        add("guest", False, "; ".join(f["failures"]))
    return checks


# -------------------------------------------------------------------------- virtio-console

#: The names the driver gives the queues (and their MSI vectors, vector = queue + 1).
CONSOLE_QUEUE_NAMES = ("input0", "output0", "control-i", "control-o", "input1", "output1")


def _digest(text):
    """(size, sha256 hex, head hex) from a ``console-rx``/``console-tx`` line, else None."""
    parts = text.split()
    try:
        return int(parts[0]), parts[1], parts[2] if len(parts) > 2 else ""
    except (IndexError, ValueError):
        return None


def console_figures(console_text, result, access_lines, params, seed=1):
    """What a virtio-console session showed: a dict of plain values (see
    :func:`judge_console`)."""
    markers = _markers(console_text)
    record = result.get("console", {})
    queues = params.queues
    writes = [(o, value) for w, o, value in _access_log(access_lines) if w]
    if _doorbells_reachable(params):
        offsets = _doorbell_offsets(params)
        doorbells = {str(q): sum(1 for o, _ in writes if o == off)
                     for off, q in offsets.items()}
        queue_notify = sum(1 for o, _ in writes if o == 0x050)
    else:
        doorbells = {str(q): sum(1 for o, d in writes if o == 0x050 and d == q)
                     for q in range(queues)}
        queue_notify = sum(doorbells.values())

    dumps = _irq_dumps(markers)
    before, after = dumps.get("before", []), dumps.get("after", [])
    vb, va = _vectors(before), _vectors(after)
    per_vector = {str(v): sum(counts) - sum(vb.get(v, [0])) for v, counts in sorted(va.items())}
    wired = _wired_total(after) - _wired_total(before) if "after" in dumps else None

    tx = [bytes.fromhex(t) for t in record.get("tx", [])]
    rx = [bytes.fromhex(r) for r in record.get("rx", [])]
    found = lambda prefix: next((m[len(prefix):] for m in markers  # noqa: E731
                                 if m.startswith(prefix)), None)
    guest_rx = _digest(found("console-rx ") or "")
    guest_tx = _digest(found("console-tx ") or "")
    data_rx = rx[vcons.DATA_PORT_ID] if len(rx) > vcons.DATA_PORT_ID else b""
    data_tx = tx[vcons.DATA_PORT_ID] if len(tx) > vcons.DATA_PORT_ID else b""
    hvc = tx[vcons.CONSOLE_PORT_ID] if tx else b""
    expected_rx = vcons.rx_stream(seed, record.get("rx_total", vcons.RX_BYTES))
    expected_tx = vcons.tx_pattern(vcons.TX_BYTES)
    expected_hvc = vcons.hvc_pattern(vcons.HVC_RECORDS)
    marks = {snap["mark"]: snap for snap in result.get("marks", [])}
    phase = None
    if 1 in marks and 2 in marks:
        a, b = marks[1], marks[2]
        phase = {"accesses": b["accesses"] - a["accesses"], "buffers": b["buffers"] - a["buffers"],
                 "msi_writes": b["msi_writes"] - a["msi_writes"],
                 "wired_rises": b["irq_rise"] - a["irq_rise"],
                 "msi_enabled": [a["msi_enabled"], b["msi_enabled"]]}
    devices = [re.match(r"device (\S+) id=(\S+) vendor=(\S+) driver=(\S+) features=(\S*)", m)
               for m in markers if m.startswith("device ")]
    devices = [d.groups() for d in devices if d]
    return {
        "profile": params.profile,
        "devices": devices,
        "platform_driver": next((m.split("driver=")[1] for m in markers
                                 if m.startswith("platform console ")), None),
        "ports": [m[len("port "):] for m in markers if m.startswith("port ")],
        "hvc0": "hvc0 present" in markers,
        "rx_bytes": len(data_rx),
        "rx_expected": data_rx == expected_rx,
        "rx_guest": guest_rx,
        "rx_guest_ok": guest_rx is not None and guest_rx[0] == len(expected_rx) and
        guest_rx[1] == hashlib.sha256(expected_rx).hexdigest(),
        "tx_bytes": len(data_tx),
        "tx_expected": data_tx == expected_tx,
        "tx_guest": guest_tx,
        "tx_guest_ok": guest_tx is not None and guest_tx[0] == len(expected_tx) and
        guest_tx[1] == hashlib.sha256(expected_tx).hexdigest(),
        "hvc_bytes": len(hvc),
        "hvc_expected": hvc == expected_hvc,
        "irq_per_vector": per_vector,
        "irq_totals": {str(v): sum(counts) for v, counts in sorted(va.items())},
        "irq_names": {str(line.vector): line.name for line in after if line.vector is not None},
        "wired_irqs": wired,
        "phase": phase,
        "doorbells": doorbells,
        "queue_notify_writes": queue_notify,
        "doorbells_reachable": _doorbells_reachable(params),
        "notifications": record.get("queue_notifications"),
        "used_events": record.get("queue_used_events"),
        "suppressed": record.get("queue_suppressed"),
        "interleaving": record.get("interleaving"),
        "guest_opens": record.get("guest_opens"),
        "control_in": [f"{c[1]}({c[0] if c[0] != 0xFFFF_FFFF else 'BAD_ID'},{c[2]})"
                       for c in record.get("control_in", [])],
        "control_out": [f"{c[1]}({c[0]},{c[3] or c[2]})" for c in record.get("control_out", [])],
        "control_pending": record.get("control_pending"),
        "unexpected": record.get("unexpected", []),
        "msi_writes": len(result.get("msi_writes", [])),
        "msi_addresses": sorted({w[0] for w in result.get("msi_writes", [])}),
        "msi_per_vector": result.get("msi_per_vector", {}),
        "msi_refused": result.get("msi_refused"),
        "msi_errors": result.get("msi_errors"),
        "failures": [m for m in markers if re.match(r"\S+-failed", m)],
    }


def judge_console(figures, console_text, result, qemu_exit, timed_out):
    """The checks of a virtio-console session from :func:`console_figures`."""
    checks = []
    add = lambda name, ok, detail: checks.append(Check(name, bool(ok), detail))  # noqa: E731
    f = figures
    v3 = f["profile"] in DIALECTS
    bound = [d for d in f["devices"] if d[3] == "virtio_console"]
    features = bound[0][4] if bound else ""
    negotiated = [bit for bit in (vcons.F_MULTIPORT, Feature.VERSION_1)
                  if len(features) > bit and features[bit] == "1"]
    add("bound", bound and int(bound[0][1], 0) == vcons.VIRTIO_ID_CONSOLE and
        len(negotiated) == 2 and (not v3 or f["platform_driver"] == V3_DRIVER),
        f"devices {[d[:2] + d[3:4] for d in f['devices']] or 'none'}, features {features or '-'}"
        f" (MULTIPORT and VERSION_1 wanted), platform driver {f['platform_driver']}")
    want_out = ["DEVICE_ADD(0,0)", "DEVICE_ADD(1,0)"]
    add("control", all(w in f["control_out"] for w in want_out) and
        "DEVICE_READY(BAD_ID,1)" in f["control_in"] and "PORT_READY(0,1)" in f["control_in"]
        and "PORT_READY(1,1)" in f["control_in"] and f["control_pending"] == 0 and
        f["guest_opens"] and 1 in f["guest_opens"][vcons.DATA_PORT_ID] and
        any("name=cosim.1" in p for p in f["ports"]),
        f"driver -> device {f['control_in']}; device -> driver {f['control_out']}; ports "
        f"{f['ports']}; guest PORT_OPEN per port {f['guest_opens']}")
    add("rx", f["rx_bytes"] > 0 and f["rx_expected"] and f["rx_guest_ok"],
        f"device sent {f['rx_bytes']} bytes on port 1 "
        f"({'the seeded stream' if f['rx_expected'] else 'NOT the seeded stream'}); the guest "
        f"read {f['rx_guest'] or 'nothing'} ({'equal' if f['rx_guest_ok'] else 'DIFFERENT'})")
    add("tx", f["tx_bytes"] > 0 and f["tx_expected"] and f["tx_guest_ok"],
        f"device received {f['tx_bytes']} bytes on port 1 "
        f"({'equal to' if f['tx_expected'] else 'DIFFERENT from'} the pattern the guest wrote, "
        f"{f['tx_guest']})")
    add("hvc0", f["hvc0"] and f["hvc_expected"],
        f"hvc0 {'present' if f['hvc0'] else 'MISSING'}; device received {f['hvc_bytes']} bytes "
        f"on port 0 ({'equal' if f['hvc_expected'] else 'DIFFERENT'})")
    busy = [q for q, n in f["doorbells"].items() if n > 0]
    doorbells = f["doorbells_reachable"]
    add("doorbells", len(busy) > 1 and (not doorbells or f["queue_notify_writes"] == 0),
        f"notifications per queue {f['doorbells']}"
        + (f", {f['queue_notify_writes']} at QueueNotify" if doorbells else " (QueueNotify)"))
    if v3:
        # Port 1's queues carry the transfer; the control receiveq the handshake before it.
        data = [vcons.rx_queue(1) + 1, vcons.tx_queue(1) + 1]
        control = vcons.CONTROL_RX + 1
        counts, totals = f["irq_per_vector"], f["irq_totals"]
        phase = f["phase"] or {}
        add("msi", all(counts.get(str(v), 0) > 0 for v in data) and
            totals.get(str(control), 0) > 0 and f["wired_irqs"] == 0 and
            phase.get("wired_rises") == 0 and phase.get("msi_enabled") == [1, 1],
            f"/proc/interrupts per vector during the transfer {counts} (port-1 receiveq and "
            f"transmitq, vectors {data}, must rise), since boot {totals} (control receiveq, "
            f"vector {control}, > 0); wired line {f['wired_irqs']}, wired rises "
            f"{phase.get('wired_rises')}")
        strays = f["msi_per_vector"].get("none", 0)
        add("msi_messages", f["msi_refused"] == 0 and f["msi_errors"] == 0 and strays == 0 and
            f["msi_addresses"] == [GITS_TRANSLATER],
            f"{f['msi_writes']} MSI writes to {[hex(a) for a in f['msi_addresses']]}, per "
            f"vector {f['msi_per_vector']}, {f['msi_refused']} refused, msi_errors "
            f"{f['msi_errors']}")
    else:
        add("wired", f["wired_irqs"] and f["wired_irqs"] > 0,
            f"wired line +{f['wired_irqs']} interrupts during the transfer")
    if f["failures"]:
        add("guest", False, "; ".join(f["failures"]))
    powered_off = "done" in _markers(console_text) and "reboot: Power down" in console_text
    add("poweroff", not timed_out and qemu_exit == 0 and powered_off,
        "timed out; QEMU was stopped" if timed_out else
        f"QEMU exit status {qemu_exit}, {'power-down seen' if powered_off else 'no power-down'}")
    outcome = result.get("outcome", "no record from the simulation")
    errors = result.get("backend_errors", []) + f["unexpected"]
    add("simulation", outcome == "closed" and not errors,
        "simulation ended with QEMU" if outcome == "closed" and not errors else
        f"{outcome}{'; device: ' + '; '.join(errors) if errors else ''}")
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


def run_linux(*, bus="axil", simulator="verilator", device="model", profile="plain-v2",
              dialect=None, cpus=None, timeout=300.0, work_dir="build/linux", out=sys.stdout,
              seed=1, progress=None):
    """Run one session; returns a :class:`LinuxRun`. ``device``: ``"model"`` (the Python
    virtio-rng back-end on the device-side ports), ``"rtl"`` (the RTL virtio-rng device, its
    DMA port served from guest memory) or ``"console"`` (the Python virtio-console back-end
    with MULTIPORT, :mod:`.console`, and the ``guest/console`` scenario). ``profile``:
    ``plain-v2`` (the stock driver) or a Version-3 profile, ``seed`` / ``linux-k1`` (the virtio_mmio_v3 driver, MSI through the
    GICv3 ITS, the scenarios of ``guest/init``); ``dialect``: the driver's ``dialect=``
    (default: the profile's); ``cpus``: vCPUs (Version 3 default :data:`V3_CPUS`, else 1).
    Raises :class:`setup.SetupError` when QEMU or the guest cannot be prepared, ValueError for
    a bad ``bus``, ``simulator``, ``device``, ``profile``, ``dialect`` or ``cpus``."""
    if bus not in BUSES:
        raise ValueError(f"bus must be one of {', '.join(BUSES)}, not {bus!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {profile!r}")
    v3 = profile in DIALECTS
    if dialect is not None and (not v3 or dialect not in ("auto", *DIALECTS.values())):
        raise ValueError(f"dialect must be one of auto, {', '.join(DIALECTS.values())} with "
                         f"a profile the virtio_mmio_v3 driver drives, "
                         f"not {dialect!r}")
    if cpus is None:
        cpus = V3_CPUS if v3 else 1
    if not isinstance(cpus, int) or not 1 <= cpus <= 8:
        raise ValueError(f"cpus must be an integer in 1..8, not {cpus!r}")
    say = progress or (lambda message: print(message, file=out, flush=True))
    variant = f"{bus}-{simulator}" if not v3 else f"{bus}-{simulator}-{profile}"
    work = Path(work_dir).resolve() / variant / device
    work.mkdir(parents=True, exist_ok=True)

    console_device = device == "console"
    assets = setup.prepare(progress=say, driver=v3, console=console_device)
    if simulator == "icarus":
        setup.ensure_host_packages(["iverilog"], "--sim icarus", progress=say)
    prepare_simulator(simulator, Path(work_dir).resolve() / "tools")
    params = linux_params(bus, device, profile)
    what = {"rtl": "the RTL virtio-rng device",
            "console": "a Python virtio-console back-end"}.get(device,
                                                               "a Python virtio-rng back-end")
    say(f"[linux] building the {bus} endpoint ({profile}) with {what} for {simulator}")
    runner = build(params, work / "sim_build", simulator=simulator, log_file=work / "build.log",
                   device="rng" if device == "rtl" else "none")

    run = LinuxRun(bus=bus, simulator=simulator, device=device, profile=profile,
                   console=work / "console.log")
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
        append = f"vmmio.rx={vcons.RX_BYTES}" if console_device else ""
        if v3:
            append += f" vmmio.transport=v3 vmmio.dialect={dialect or DIALECTS[profile]}"
            command = setup.qemu_command(assets, socket_path, append.strip(), its=True,
                                         cpus=cpus)
        else:
            command = setup.qemu_command(assets, socket_path, append, cpus=cpus)
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
    console_text = run.console.read_text(errors="replace")
    if console_device:
        log = work / "accesses.log"
        lines = log.read_text().splitlines() if log.exists() else []
        run.figures = console_figures(console_text, run.result, lines, params, seed)
        run.checks = judge_console(run.figures, console_text, run.result, qemu_exit, timed_out)
    else:
        run.checks = judge(console_text, run.result, qemu_exit, timed_out)
    if v3 and not console_device:
        log = work / "accesses.log"
        lines = log.read_text().splitlines() if log.exists() else []
        run.figures = v3_figures(console_text, run.result, lines, params)
        run.checks += judge_v3(run.figures, params.queues, cpus=cpus)
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
