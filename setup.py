"""The C++ CPU kernels (levit_kernels._C), built by torch's cpp_extension and ninja; everything else about the
package (metadata, dependencies, console script) is in pyproject.toml. Install without build isolation so the build
uses the torch already installed (an isolated build env would download its own, possibly CUDA, torch):

    pip install --no-build-isolation -e .      (editable)
    pip install --no-build-isolation .         (regular: _C lands in site-packages)
    pip wheel --no-build-isolation --no-deps . (a wheel for other environments with the same torch)

Environment:
    LEVIT_KERNELS_SANITIZE=1   build csrc with AddressSanitizer + UndefinedBehaviorSanitizer (tests only; python must
                               LD_PRELOAD libasan and libstdc++ to load it: see scripts/sanitize_test.sh).
    LEVIT_KERNELS_NO_EXT=1     skip the C++ extension (pure-Python install; backend "cpu" reports unavailable).
"""
import glob
import os
import platform

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_extension():
    from torch.utils.cpp_extension import CppExtension

    # Kernel sources are grouped op → ISA under csrc/; csrc/tests holds the standalone (torch-free) test programs.
    sources = sorted(p for p in glob.glob("csrc/**/*.cpp", recursive=True) if not p.startswith("csrc/tests/"))
    if not sources:
        return []
    cxx = ["-O3", "-std=c++17", "-fno-math-errno", "-Wall", "-Wno-unused-function"]
    if platform.machine() in ("x86_64", "AMD64"):
        # Baseline x86-64 only: AVX-512/AVX2 code lives in per-ISA translation units that enable their own targets
        # (#pragma GCC target), so no AVX instruction can reach code that runs on a plain x86-64 CPU.
        cxx += ["-march=x86-64", "-mtune=generic"]
    ldflags = []
    import torch

    if torch._C.has_openmp:
        # at::parallel_for is inlined from ATen's headers as an `omp parallel` region when torch's parallel backend
        # is OpenMP: without -fopenmp the pragma is dropped and every kernel silently runs on one thread. The
        # runtime it links (libgomp.so.1) is the one torch has already loaded.
        cxx.append("-fopenmp")
        ldflags.append("-fopenmp")
    if os.environ.get("LEVIT_KERNELS_SANITIZE") == "1":
        cxx = [f for f in cxx if f != "-O3"] + ["-O1", "-g", "-fsanitize=address,undefined,float-cast-overflow",
                                               "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
        ldflags += ["-fsanitize=address,undefined,float-cast-overflow"]
    return [CppExtension("levit_kernels._C", sources, include_dirs=[os.path.join(HERE, "csrc")],
                         extra_compile_args={"cxx": cxx}, extra_link_args=ldflags)]


def build_config():
    if os.environ.get("LEVIT_KERNELS_NO_EXT") == "1":
        return {}
    from torch.utils.cpp_extension import BuildExtension

    ext = cpu_extension()
    return {"ext_modules": ext, "cmdclass": {"build_ext": BuildExtension.with_options(use_ninja=True)}} if ext else {}


setup(**build_config())
