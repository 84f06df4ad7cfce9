"""Benchmarks of levit-kernels on the machine at hand (``levit-kernels bench``).

- :mod:`~levit_kernels.bench.hardware`: fingerprint and hardware id; :mod:`~levit_kernels.bench.peak`: the
  machine's measured peak;
- :mod:`~levit_kernels.bench.timing`: interleaved CPU timing, GPU device-event / CUDA-graph timing;
- :mod:`~levit_kernels.bench.cases` (per op, shapes from levit.config) and :mod:`~levit_kernels.bench.e2e`
  (whole model): what is timed and against which baselines;
- :mod:`~levit_kernels.bench.runner` runs a plan; :mod:`~levit_kernels.bench.results` is the results file;
  :mod:`~levit_kernels.bench.report` prints tables, comparisons and charts; :mod:`~levit_kernels.bench.command`
  is the command line.
"""
from levit_kernels.bench.command import add_bench_parser, run_bench

__all__ = ["add_bench_parser", "run_bench"]
