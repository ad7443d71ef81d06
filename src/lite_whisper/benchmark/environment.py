"""Facts about the machine a benchmark ran on, recorded beside every result, and thread control."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import transformers

from lite_whisper.runtime.cpu_route import fast_cpu_kernels, onednn_usable


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:

    try:
        usable_cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        usable_cpus = os.cpu_count()
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "onednn_fused_linear_usable": onednn_usable(),
        "lite_whisper_fast_cpu": fast_cpu_kernels(),  # LITE_WHISPER_FAST_CPU / fast_cpu_kernels()
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def gpu_environment() -> dict:
    """What a GPU timing depends on: the device, driver, CUDA, cuDNN, TF32 flags, CTranslate2's view of CUDA."""
    info: dict = {"cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
                  "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(torch.cuda.current_device())
        info.update(gpu=properties.name, gpu_memory_gb=round(properties.total_memory / 2**30, 1),
                    capability=f"{properties.major}.{properties.minor}", cudnn=torch.backends.cudnn.version())
        try:
            query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            info["driver"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    try:
        import ctranslate2

        info["ctranslate2"] = ctranslate2.__version__
        info["ctranslate2_cuda_devices"] = ctranslate2.get_cuda_device_count()
    except Exception as error:  # noqa: BLE001 (missing, or its CUDA libraries do not load: say which)
        info["ctranslate2"] = f"unavailable: {type(error).__name__}: {error}"
    return info


@contextmanager
def torch_threads(threads: int | None):
    """Run with `threads` intra-op threads, restoring the previous setting afterwards."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None
