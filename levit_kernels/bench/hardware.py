"""Hardware fingerprint of the machine a benchmark runs on, and the stable id its results file is named after."""
from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from typing import Optional

import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cpuinfo() -> dict[str, str]:
    """First processor's fields of /proc/cpuinfo (empty off Linux)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    info = _cpuinfo()
    for key in ("model name", "Model", "Hardware", "cpu model"):
        if info.get(key):
            return info[key]
    return platform.processor() or platform.machine() or "unknown cpu"


# x86 microarchitectures by (vendor, family, model range), for CPUs whose model name does not say it: cloud VMs
# report AMD parts as plain "AMD EPYC", and this project's machines of that name have been Zen 3 (AVX2 only), Zen 4
# (AVX-512 on 256-bit units, FMA peak ~113 GFLOP/s/core) and Zen 5 (512-bit units, ~250 GFLOP/s/core): kernels tuned
# on one behave differently on the next, so their results must not share a file. Families and model ranges from
# AMD's and Intel's public processor documentation; unlisted parts get None (the id then has no such part).
_MICROARCHITECTURES: tuple[tuple[str, int, range, str], ...] = (
    ("AuthenticAMD", 23, range(0x00, 0x30), "zen"),     # Zen / Zen+ (Naples, Pinnacle Ridge, Picasso, ...)
    ("AuthenticAMD", 23, range(0x30, 0x100), "zen2"),   # Rome, Matisse, Renoir, ...
    ("AuthenticAMD", 25, range(0x00, 0x10), "zen3"),    # Milan
    ("AuthenticAMD", 25, range(0x10, 0x20), "zen4"),    # Genoa
    ("AuthenticAMD", 25, range(0x20, 0x60), "zen3"),    # Vermeer, Rembrandt, Cezanne
    ("AuthenticAMD", 25, range(0x60, 0x80), "zen4"),    # Raphael, Phoenix
    ("AuthenticAMD", 25, range(0xA0, 0xB0), "zen4"),    # Bergamo, Siena (Zen 4c)
    ("AuthenticAMD", 26, range(0x00, 0x100), "zen5"),   # Turin, Granite Ridge, Strix
    ("GenuineIntel", 6, range(0x55, 0x56), "skylake-sp"),  # Skylake-SP / Cascade Lake / Cooper Lake
    ("GenuineIntel", 6, range(0x6A, 0x6D), "icelake-sp"),
    ("GenuineIntel", 6, range(0x8F, 0x90), "sapphirerapids"),
    ("GenuineIntel", 6, range(0xCF, 0xD0), "emeraldrapids"),
    ("GenuineIntel", 6, range(0xAD, 0xAE), "graniterapids"),
)


def _int_field(info: dict[str, str], key: str) -> Optional[int]:
    try:
        return int(info[key], 0)
    except (KeyError, ValueError):
        return None


def cpu_ids() -> dict:
    """Vendor, family and model number of the CPU (x86 /proc/cpuinfo; None elsewhere) and the microarchitecture
    they name in :data:`_MICROARCHITECTURES` (None when unlisted)."""
    info = _cpuinfo()
    vendor, family, model = info.get("vendor_id"), _int_field(info, "cpu family"), _int_field(info, "model")
    uarch = next((name for v, f, models, name in _MICROARCHITECTURES
                  if v == vendor and f == family and model in models), None)
    return {"vendor": vendor, "family": family, "model_number": model, "microarchitecture": uarch}


def describe_cpu() -> str:
    """The model name, with the microarchitecture and family/model when the name lacks a model number."""
    name, ids = cpu_model(), cpu_ids()
    if re.search(r"\d", name) or ids["family"] is None:
        return name
    uarch = f"{ids['microarchitecture']}, " if ids["microarchitecture"] else ""
    return f"{name} ({uarch}family {ids['family']} model {ids['model_number']})"


def detected_isa() -> str:
    """Best SIMD level the CPU flags advertise, named like the extension's ISAs."""
    flags = set((_cpuinfo().get("flags") or _cpuinfo().get("Features") or "").split())
    if "avx512f" in flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    if "asimd" in flags or platform.machine() in ("arm64", "aarch64"):
        return "neon"
    return "scalar"


def active_isa() -> Optional[str]:
    """ISA the CPU kernels run now, or None when the extension is not built."""
    from levit_kernels.backends import availability
    from levit_kernels.backends.cpu import cpu_isa

    ok, _ = availability("cpu")
    return cpu_isa() if ok else None


def memory_gib() -> Optional[float]:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def host_cpus() -> int:
    """Logical CPUs of the machine: part of its identity, whatever this process is pinned to."""
    return os.cpu_count() or 1


def cpu_cores() -> int:
    """CPUs this process may run on (the affinity mask, e.g. under taskset; not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def git_commit() -> Optional[str]:
    """Commit of the checkout levit_kernels is imported from (with "+dirty" when it has local changes), or None."""
    try:
        sha = subprocess.run(["git", "-C", _ROOT, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", _ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def _module_version(name: str) -> Optional[str]:
    try:
        module = __import__(name)
    except Exception:  # an optional package may be absent or fail to import for its own reasons
        return None
    return getattr(module, "__version__", "unknown")


def gpu_info() -> Optional[dict]:
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    driver = None
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20, check=True).stdout.split("\n")[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return {"name": torch.cuda.get_device_name(0), "driver": driver, "cuda": torch.version.cuda,
            "memory_gib": round(props.total_memory / 2**30, 1), "capability": f"{props.major}.{props.minor}",
            "count": torch.cuda.device_count()}


def fingerprint() -> dict:
    """Everything that identifies the hardware and software a measurement came from."""
    return {
        "cpu": {"model": cpu_model(), **cpu_ids(), "arch": platform.machine(), "isa_active": active_isa(),
                "isa_detected": detected_isa(), "cores": host_cpus(), "cores_usable": cpu_cores(),
                "memory_gib": memory_gib()},
        "gpu": gpu_info(),
        "software": {"python": platform.python_version(), "torch": torch.__version__,
                     "triton": _module_version("triton"), "onnxruntime": _module_version("onnxruntime"),
                     "levit_kernels": _module_version("levit_kernels"), "os": platform.platform()},
        "git_commit": git_commit(),
        # Not hardware, but it qualifies every number: other work on the machine while it was measured.
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)", "", text.lower())
    text = re.sub(r"\b(cpu|processor|core|with|radeon graphics|[0-9]+-core)\b", " ", text)
    text = re.sub(r"@.*$", "", text)
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def hardware_id(fp: dict, device: str = "cpu") -> str:
    """Stable file-name id: "cpu-<model>[-<microarchitecture>]-<isa>-<cores>c" or "gpu-<name>" (e.g.
    "gpu-nvidia-h100-80gb-hbm3"). The microarchitecture is added when the model name has no model number in it
    (a VM's "AMD EPYC" is Zen 3, 4 or 5)."""
    if device == "cuda":
        if not fp.get("gpu"):
            raise ValueError("hardware_id(device='cuda'): the fingerprint has no GPU")
        return "gpu-" + _slug(fp["gpu"]["name"])
    cpu = fp["cpu"]
    isa = cpu.get("isa_active") or cpu.get("isa_detected") or "unknown"
    model = _slug(cpu["model"])
    if cpu.get("microarchitecture") and not re.search(r"\d", model):
        model += "-" + _slug(cpu["microarchitecture"])
    return f"cpu-{model}-{isa}-{cpu['cores']}c"
