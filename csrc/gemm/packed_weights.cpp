// Cache design: a mutex-guarded map from (TensorImpl*, nr) to the packed tensor. Each entry holds a weak reference
// to the TensorImpl, which keeps the object's memory (not its storage) allocated while the entry exists, so the
// address cannot be reused by another tensor and the pointer key stays unambiguous. Entries of dead weights (weak
// reference expired) are dropped on every miss and every kSweepEvery calls, which frees their packed copies without
// any Python-side hook (the op is also called straight from torch.compile graphs); the map is bounded, least
// recently used entries going first. Lookups check data pointer, shape, strides and `_version`, so an in-place
// update of the weight (copy_, add_, load_state_dict under no_grad) is seen on the next call. Not seen: writes
// through `.data` (a tensor with its own version counter), the same limitation autograd has.
#include "gemm/packed_weights.h"

#include <ATen/ops/empty.h>

#include <map>
#include <mutex>
#include <utility>

#include "gemm/gemm.h"

namespace levit::gemm {
namespace {

constexpr size_t kMaxEntries = 1024;
constexpr uint64_t kSweepEvery = 64;

struct Entry {
  c10::weak_intrusive_ptr<c10::TensorImpl> owner;
  const void* data;
  int64_t sizes[2];
  int64_t strides[2];
  int64_t version;
  at::Tensor packed;
  uint64_t last_use;

  bool describes(const at::Tensor& w, int64_t current_version) const {
    return data == w.data_ptr() && sizes[0] == w.size(0) && sizes[1] == w.size(1) && strides[0] == w.stride(0) &&
           strides[1] == w.stride(1) && version == current_version;
  }
};

struct Cache {
  std::mutex mutex;
  std::map<std::pair<const c10::TensorImpl*, int>, Entry> entries;
  uint64_t calls = 0;

  void drop_dead() {
    for (auto it = entries.begin(); it != entries.end();) it = it->second.owner.expired() ? entries.erase(it) : ++it;
  }
  void evict_least_recent() {
    while (entries.size() > kMaxEntries) {
      auto oldest = entries.begin();
      for (auto it = entries.begin(); it != entries.end(); ++it)
        if (it->second.last_use < oldest->second.last_use) oldest = it;
      entries.erase(oldest);
    }
  }
};

// Never destroyed: an op may run while static objects are being torn down at exit.
Cache& cache() {
  static Cache* instance = new Cache();
  return *instance;
}

}  // namespace

at::Tensor pack_weight_tensor(const at::Tensor& weight, int nr) {
  const int64_t n = weight.size(0), k = weight.size(1);
  at::Tensor packed = at::empty({packed_floats(n, k, nr)}, weight.options().dtype(at::kFloat));
  pack_weight(weight.const_data_ptr<float>(), weight.stride(0), weight.stride(1), n, k, nr,
              packed.mutable_data_ptr<float>());
  return packed;
}

at::Tensor cached_packed_weight(const at::Tensor& weight, int nr) {
  if (weight.is_inference()) return pack_weight_tensor(weight, nr);
  const int64_t version = weight._version();
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  const uint64_t now = ++c.calls;
  if (now % kSweepEvery == 0) c.drop_dead();
  const auto key = std::make_pair(static_cast<const c10::TensorImpl*>(weight.unsafeGetTensorImpl()), nr);
  auto it = c.entries.find(key);
  if (it != c.entries.end() && it->second.describes(weight, version)) {
    it->second.last_use = now;
    return it->second.packed;
  }
  // Packed under the lock: threads racing on a new weight wait here and then find the entry.
  Entry entry{c10::weak_intrusive_ptr<c10::TensorImpl>(weight.getIntrusivePtr()),
              weight.data_ptr(),
              {weight.size(0), weight.size(1)},
              {weight.stride(0), weight.stride(1)},
              version,
              pack_weight_tensor(weight, nr),
              now};
  at::Tensor packed = entry.packed;
  if (it != c.entries.end())
    it->second = std::move(entry);
  else
    c.entries.emplace(key, std::move(entry));
  c.drop_dead();
  c.evict_least_recent();
  return packed;
}

int64_t packed_weight_cache_entries() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.drop_dead();
  return static_cast<int64_t>(c.entries.size());
}

void clear_packed_weight_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.entries.clear();
}

}  // namespace levit::gemm
