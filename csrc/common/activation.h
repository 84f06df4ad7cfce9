// The activation an op's epilogue applies, shared by every kernel (gemm, attention) and the standalone tests.
// Torch-free; the math per ISA is in simd/activations.h.
#pragma once
#include <string_view>

namespace levit {

// Hardswish (LeViT), GELU in its exact erf form (torch's default: EfficientFormer, T2T-ViT, vit-pytorch), ReLU.
// The names are those of levit_kernels.reference.ACTIVATIONS.
enum class Activation : int { kNone = 0, kHardswish = 1, kGelu = 2, kRelu = 3 };

inline const char* activation_name(Activation act) {
  switch (act) {
    case Activation::kHardswish: return "hardswish";
    case Activation::kGelu: return "gelu";
    case Activation::kRelu: return "relu";
    default: return "none";
  }
}

// What the ops accept, for their error messages.
constexpr const char* kActivationChoices = "None, 'hardswish', 'gelu' or 'relu'";

// The activation called `name`; false (and `act` untouched) for an unknown name.
inline bool activation_from_name(std::string_view name, Activation& act) {
  for (Activation a : {Activation::kHardswish, Activation::kGelu, Activation::kRelu}) {
    if (name == activation_name(a)) {
      act = a;
      return true;
    }
  }
  return false;
}

}  // namespace levit
