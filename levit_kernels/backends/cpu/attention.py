"""CPU biased_attention and shrink_attention (csrc/attention). Placeholder until issue 3 lands the kernels."""


def biased_attention(q, k, v, attention_biases, resolution, stride, scale, activation):
    raise NotImplementedError("cpu biased_attention: kernel not built yet (issue 3)")


def shrink_attention(x, q_weight, q_bias, k, v, attention_biases, resolution, stride, scale, activation):
    raise NotImplementedError("cpu shrink_attention: kernel not built yet (issue 3)")
