// Python-visible helpers of the extension (the ops themselves are torch custom ops, registered per op family).
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <mutex>
#include <set>

#include "common/isa.h"
#include "common/output.h"
#include "gemm/gemm.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "levit-kernels C++ CPU kernels";
  m.def("active_isa", [] { return std::string(levit::isa_name(levit::active_isa())); },
        "ISA variant the CPU kernels use now");
  m.def("best_isa", [] { return std::string(levit::isa_name(levit::best_isa())); });
  m.def("isa_supported", [](const std::string& name) { return levit::isa_supported(levit::parse_isa(name)); });
  m.def("set_poison_outputs", [](bool on) { levit::poison_outputs_flag().store(on); },
        "Fill every op output with NaN before the kernel writes it (tests)");
  m.def("set_active_isa", [](const std::string& name) { levit::set_active_isa(levit::parse_isa(name)); });
  m.def("fma_peak_gflops",
        [](int threads) { return levit::gemm::fma_peak_gflops(levit::gemm::kernels_for(levit::active_isa()), threads); },
        pybind11::arg("threads") = 1,
        "fp32 FMA peak (GFLOP/s) of the active ISA on `threads` threads, from an FMA-bound loop timed by CPU time");
  m.def("parallel_workers",
        [](int64_t items) {
          std::mutex lock;
          std::set<int> workers;
          at::parallel_for(0, items, 1, [&](int64_t, int64_t) {
            std::lock_guard<std::mutex> guard(lock);
            workers.insert(at::get_thread_num());
          });
          return static_cast<int64_t>(workers.size());
        },
        pybind11::arg("items"),
        "Threads the kernels' at::parallel_for ran `items` work items on: proof the build really runs in parallel");
}
