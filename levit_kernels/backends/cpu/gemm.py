"""CPU linear and mlp (csrc/gemm). Placeholder until issue 3 lands the kernels."""


def linear(x, weight, bias, activation, residual):
    raise NotImplementedError("cpu linear: kernel not built yet (issue 3)")


def mlp(x, w1, b1, w2, b2, activation, residual):
    raise NotImplementedError("cpu mlp: kernel not built yet (issue 3)")
