"""The multiply-adds a model really runs in one forward, for the FLOPs tests of every family: a hook on every
Conv2d/Linear module, and the references the models call with bare weights (the attention core, the mlp) patched."""
import torch
import torch.nn as nn

from levit.flops import attention_core_macs
from levit_kernels import reference


def forward_macs(model: nn.Module, x: torch.Tensor, monkeypatch) -> int:
    counted = []

    def on_linear(module, inputs, output):
        counted.append(module.in_features * output.numel())

    def on_conv(module, inputs, output):
        counted.append(module.in_channels * module.kernel_size[0] * module.kernel_size[1] * output.numel())

    real_attention, real_mlp = reference.biased_attention, reference.mlp

    def on_attention(q, k, v, *args, **kwargs):
        counted.append(attention_core_macs(q.shape[1], q.shape[2], k.shape[2], q.shape[3], v.shape[3]))
        return real_attention(q, k, v, *args, **kwargs)

    def on_mlp(h, w1, b1, w2, b2, *args, **kwargs):
        counted.append((w1.numel() + w2.numel()) * h[..., 0].numel())
        return real_mlp(h, w1, b1, w2, b2, *args, **kwargs)

    handles = [m.register_forward_hook(on_linear if isinstance(m, nn.Linear) else on_conv)
               for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    monkeypatch.setattr(reference, "biased_attention", on_attention)
    monkeypatch.setattr(reference, "mlp", on_mlp)
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        monkeypatch.undo()
    return sum(counted)
