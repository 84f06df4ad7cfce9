// The `str? activation` argument of the torch ops, parsed once per call (torch-facing: op wrappers only).
#pragma once
#include <c10/util/Exception.h>

#include <optional>
#include <string_view>

#include "common/activation.h"

namespace levit {

inline Activation parse_activation(const char* op, const std::optional<std::string_view>& name) {
  Activation act = Activation::kNone;
  if (!name.has_value()) return act;
  TORCH_CHECK_VALUE(activation_from_name(*name, act), op, ": argument 'activation' must be ", kActivationChoices,
                    ", got '", *name, "'");
  return act;
}

}  // namespace levit
