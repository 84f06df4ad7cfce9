"""levit_kernels.keep_freed_memory: after it, a repeated large allocation reuses its pages (no page faults); without
it glibc faults them in again. Each case in its own interpreter: the setting is process-wide."""
import subprocess
import sys

import pytest

import levit_kernels as lk

_PROBE = r"""
import resource, sys, torch
import levit_kernels as lk
changed = lk.keep_freed_memory() if sys.argv[1] == "keep" else None
floats = 40 << 18  # 40 MiB: past glibc's largest dynamic mmap threshold (32 MiB), under a thread heap's 64 MiB
def touch():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.empty(floats)
    t.fill_(1.0)
    del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
touch()
# The fewest faults of eight re-touches: with the setting the rounds settle on reusing the heap's pages (0 faults),
# but not at once: here two rounds in a row fault fresh pages in before that, the first two, the second and third
# or (CI, at 64 MiB) at least the third to fifth; without the setting every round maps fresh pages.
print(changed, min(touch() for _ in range(8)), floats * 4 // 4096)
"""

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")


def _second_touch_faults(mode):
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True).stdout
    changed, faults, pages = out.split()
    return changed, int(faults), int(pages)


@glibc
def test_large_tensors_reuse_their_pages():
    changed, faults, pages = _second_touch_faults("keep")
    assert changed == "True"
    assert faults < pages // 10, f"after keep_freed_memory: at least {faults} page faults in every re-touch of {pages} pages"


@glibc
def test_without_it_glibc_faults_them_in_again():
    """The control: the measured effect is this setting's, not the probe's."""
    changed, faults, pages = _second_touch_faults("default")
    assert changed == "None"
    assert faults > pages // 2, f"default glibc: a re-touch of {pages} pages took only {faults} page faults"


@pytest.mark.parametrize("kwargs,name", [({"mmap_threshold": 0}, "mmap_threshold"),
                                         ({"trim_threshold": 1 << 31}, "trim_threshold"),
                                         ({"mmap_threshold": 1.5}, "mmap_threshold"),
                                         ({"trim_threshold": True}, "trim_threshold")])
def test_bad_thresholds_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"{name} must be an int of bytes"):
        lk.keep_freed_memory(**kwargs)
