"""conv2d (the stem's and the downsampling layers' convolutions) on the CPU backend's implicit-GEMM kernel against the
float64 reference, under every ISA variant this machine runs: every LeViT and EfficientFormer stem / downsample
shape, odd maps, batch 1 and 3, every activation, NHWC and NCHW-strided inputs, the packed-weight path, poisoned
outputs; argument errors; the backend that has no convolution (triton)."""
import pytest
import torch

import levit_kernels as lk
from levit import config
from levit_kernels import backends, reference, tolerances
from levit_kernels._debug import poisoned_outputs
from levit_kernels.backends import cpu
from tests.conftest import abs64, assert_close_to_reference
from tests.test_cpu_gemm import isa  # noqa: F401  (the fixture: every ISA variant this machine runs, forced)

_ok, _why = backends.availability("cpu")
pytestmark = pytest.mark.skipif(not _ok, reason=f"CPU backend unavailable: {_why}")

ACTIVATIONS = reference.ACTIVATIONS

# (C_in, C_out, input side) of every stem conv of the LeViT variants at 224² (3 → C/8 → C/4 → C/2 → C), and of
# EfficientFormer L1/L3/L7's stems (3 → C0/2 → C0) and downsamplings between stages (C_i → C_{i+1} at 56², 28², 14²;
# widths from efficientformer-facts).
LEVIT_STEMS = sorted({(s.in_channels, s.out_channels, s.in_side) for name in config.MODEL_NAMES
                      for s in config.stem_shapes(name)})
_EF_WIDTHS = {"l1": (48, 96, 224, 448), "l3": (64, 128, 320, 512), "l7": (96, 192, 384, 768)}
EFFICIENTFORMER_CONVS = sorted({shape for w in _EF_WIDTHS.values() for shape in
                                [(3, w[0] // 2, 224), (w[0] // 2, w[0], 112),
                                 (w[0], w[1], 56), (w[1], w[2], 28), (w[2], w[3], 14)]})
MODEL_CONVS = sorted(set(LEVIT_STEMS) | set(EFFICIENTFORMER_CONVS))
# The portable variant is ~100x slower; the same gather and GEMM code runs at every size, so its model cases run on
# maps of at most this side (still several pixel tiles and padded borders).
SCALAR_MAX_SIDE = 24


def _conv_weights(gen, c_out, c_in, kh=3, kw=3):
    k = c_in * kh * kw
    return torch.randn(c_out, c_in, kh, kw, generator=gen) / k ** 0.5, torch.randn(c_out, generator=gen)


def _terms_scale(x, w, b, stride, padding):
    """max over outputs of |bias| + Σ|w·x|: the magnitude of the terms each output sums (GEMM error scale)."""
    return reference.conv2d(*abs64(x, w, b), stride, padding).max().item()


def _check(x, w, b, stride, padding, act, what, packed=False):
    with poisoned_outputs():
        if packed:
            out = cpu.conv2d_packed(x, cpu.pack_conv_weight(w), w.shape[0], w.shape[2:], b, stride, padding, act)
        else:
            out = lk.conv2d(x, w, b, stride, padding, act, backend="cpu")
    ref = reference.conv2d(x.double(), w.double(), None if b is None else b.double(), stride, padding, act)
    assert out.dtype == torch.float32 and out.shape == ref.shape and out.is_contiguous()
    assert_close_to_reference(out, ref, torch.float32, what, scale=_terms_scale(x, w, b, stride, padding))
    return out


def _nhwc(gen, batch, h, w, c, nchw=False):
    """A (B, H, W, C) map: contiguous, or the permuted view of a contiguous (B, C, H, W) tensor (images)."""
    if nchw:
        return torch.randn(batch, c, h, w, generator=gen).permute(0, 2, 3, 1)
    return torch.randn(batch, h, w, c, generator=gen)


@pytest.mark.parametrize("c_in,c_out,side", MODEL_CONVS)
def test_model_convs(isa, gen, c_in, c_out, side):
    act = "hardswish" if (c_in, c_out, side) in LEVIT_STEMS else "relu"
    side = min(side, SCALAR_MAX_SIDE) if isa == "scalar" else side
    w, b = _conv_weights(gen, c_out, c_in)
    x = _nhwc(gen, 1, side, side, c_in, nchw=c_in == 3)  # the first layer reads the NCHW images in place
    _check(x, w, b, 2, 1, act, f"{isa} conv {c_in}->{c_out} at {side}²")


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("h,w", [(7, 9), (1, 1), (33, 17), (2, 2)])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_odd_maps(isa, gen, batch, h, w, act):
    for c_in, c_out, nchw in ((3, 16, True), (16, 33, False), (5, 8, False)):
        wt, b = _conv_weights(gen, c_out, c_in)
        x = _nhwc(gen, batch, h, w, c_in, nchw)
        _check(x, wt, b, 2, 1, act, f"{isa} conv {c_in}->{c_out} on {batch}×{h}×{w} ({act})")


@pytest.mark.parametrize("stride,padding,kernel", [(1, 1, (3, 3)), ((2, 1), (0, 2), (3, 3)), (1, 0, (1, 1)),
                                                   (2, 1, (5, 3)), (3, 2, (3, 3))])
def test_geometries(isa, gen, stride, padding, kernel):
    w, b = _conv_weights(gen, 12, 7, *kernel)
    x = _nhwc(gen, 2, 11, 10, 7)
    _check(x, w, b, stride, padding, "gelu", f"{isa} conv k{kernel} s{stride} p{padding}")
    _check(x, w, None, stride, padding, None, f"{isa} conv k{kernel} s{stride} p{padding} without bias")


def test_strided_input_and_packed(isa, gen):
    """An input with padded rows (a slice of a wider map) and the explicitly packed weight."""
    w, b = _conv_weights(gen, 40, 24)
    wide = torch.randn(2, 20, 30, 32, generator=gen)
    x = wide[:, 1:18, 2:27, 4:28]  # strides of the (2, 20, 30, 32) tensor
    first = _check(x, w, b, 2, 1, "hardswish", f"{isa} conv on a strided slice")
    again = _check(x.contiguous(), w, b, 2, 1, "hardswish", f"{isa} conv packed", packed=True)
    assert torch.equal(first, again), "the packed path must compute exactly what conv2d computes"


def test_threads_split_columns(gen):
    """Few output pixels on several threads: the output channels are split between them too."""
    w, b = _conv_weights(gen, 96, 32)
    x = _nhwc(gen, 1, 5, 6, 32)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _check(x, w, b, 2, 1, "relu", "conv with column blocks")
    finally:
        torch.set_num_threads(before)


def test_packed_weight_of_another_isa_rejected(gen):
    isas = [i for i in cpu.supported_isas() if i != "scalar"]
    if not isas:
        pytest.skip("only the scalar variant runs here")
    w, b = _conv_weights(gen, 8, 3)
    with cpu.force_isa("scalar"):
        packed = cpu.pack_conv_weight(w)
    with cpu.force_isa(isas[-1]), pytest.raises(ValueError, match="packed for panel width"):
        cpu.conv2d_packed(torch.randn(1, 8, 8, 3, generator=gen), packed, 8, (3, 3), b, (2, 2), (1, 1), None)


def test_reference_backend_matches_nchw_conv(gen):
    w, b = _conv_weights(gen, 8, 3)
    images = torch.randn(2, 3, 9, 7, generator=gen, dtype=torch.float64)
    out = lk.conv2d(images.permute(0, 2, 3, 1), w.double(), b.double(), 2, 1, "hardswish", backend="reference")
    expected = torch.nn.functional.hardswish(torch.nn.functional.conv2d(images, w.double(), b.double(), 2, 1))
    torch.testing.assert_close(out, expected.permute(0, 2, 3, 1), rtol=1e-12, atol=1e-12)


def test_triton_has_no_conv(gen):
    ok, why = backends.availability("triton")
    if not ok:
        pytest.skip(f"triton unavailable: {why}")
    w, b = _conv_weights(gen, 8, 3)
    with pytest.raises(ValueError, match="backend 'triton' does not support this op"):
        lk.conv2d(torch.randn(1, 8, 8, 3, generator=gen), w, b, 2, 1, backend="triton")


def test_opcheck(gen):
    w, b = _conv_weights(gen, 8, 3)
    x = torch.randn(2, 9, 7, 3, generator=gen)
    torch.library.opcheck(torch.ops.levit_kernels.conv2d.default, (x, w, b, [2, 2], [1, 1], "hardswish"))
    packed = cpu.pack_conv_weight(w)
    torch.library.opcheck(torch.ops.levit_kernels.conv_pack.default, (w,))
    torch.library.opcheck(torch.ops.levit_kernels.conv2d_packed.default,
                          (x, packed, 8, [3, 3], b, [2, 2], [1, 1], None))


def _args(gen):
    w, b = _conv_weights(gen, 8, 3)
    return torch.randn(1, 8, 8, 3, generator=gen), w, b


@pytest.mark.parametrize("change,error,message", [
    (lambda x, w, b: (x[0], w, b, 2, 1, None), ValueError, r"argument 'x' must be a 4-D tensor \(B, H, W, C_in\)"),
    (lambda x, w, b: (x, w[:, :2], b, 2, 1, None), ValueError, r"argument 'weight' must be of size 3 in dim 1"),
    (lambda x, w, b: (x, w[0], b, 2, 1, None), ValueError, r"argument 'weight' must be a 4-D tensor"),
    (lambda x, w, b: (x, w, b[:5], 2, 1, None), ValueError, r"argument 'bias' must be of size 8 in dim 0"),
    (lambda x, w, b: (x, w, b, 0, 1, None), ValueError, r"argument 'stride' must be ints >= 1, got 0"),
    (lambda x, w, b: (x, w, b, (2, 2, 2), 1, None), TypeError, r"argument 'stride' must be an int or a pair"),
    (lambda x, w, b: (x, w, b, 2, -1, None), ValueError, r"argument 'padding' must be ints >= 0"),
    (lambda x, w, b: (x, w, b, 2.0, 1, None), TypeError, r"argument 'stride' must be an int or a pair"),
    (lambda x, w, b: (x[:, :1, :1], w, b, 2, 0, None), ValueError, r"argument 'x' must be a map with H \+ 2"),
    (lambda x, w, b: (x, w.double(), b, 2, 1, None), TypeError, r"argument 'weight' must be of the same dtype"),
    (lambda x, w, b: (x, w, b, 2, 1, "swish"), ValueError, r"argument 'activation' must be one of"),
    (lambda x, w, b: (x.int(), w, b, 2, 1, None), TypeError, r"argument 'x' must be a floating tensor"),
])
def test_bad_input(gen, change, error, message):
    with pytest.raises(error, match=message):
        lk.conv2d(*change(*_args(gen)), backend="cpu")


def test_cpu_backend_requires_float32(gen):
    x, w, b = _args(gen)
    with pytest.raises(TypeError, match="float32"):
        lk.conv2d(x.double(), w.double(), b.double(), 2, 1, backend="cpu")


def test_custom_op_errors_name_the_argument(gen):
    x, w, b = _args(gen)
    packed = cpu.pack_conv_weight(w)
    with pytest.raises(ValueError, match=r"conv2d_packed: argument 'packed_weight' must be the packed form of a "
                       r"\(8, 4, 3, 3\)"):
        cpu.conv2d_packed(torch.randn(1, 8, 8, 4, generator=gen), packed, 8, (3, 3), b, (2, 2), (1, 1), None)
    with pytest.raises(ValueError, match=r"conv2d_packed: argument 'kernel_size' must be two ints >= 1"):
        cpu.conv2d_packed(x, packed, 8, (0, 3), b, (2, 2), (1, 1), None)
    with pytest.raises(ValueError, match=r"conv2d: argument 'activation' must be"):
        torch.ops.levit_kernels.conv2d.default(x, w, b, [2, 2], [1, 1], "tanh")


def _stem_variants(convs, x):
    from levit_kernels.optimize.stem import FusedStem

    f32, dev = torch.float32, torch.device("cpu")
    with torch.no_grad():
        return {"every layer ours": FusedStem(convs, f32, dev, kernel_conv=True)(x),
                "optimize's choice": FusedStem(convs, f32, dev)(x),
                "none ours": FusedStem(convs, f32, dev, kernel_conv=False)(x)}


@pytest.mark.parametrize("name,side,batch", [("levit_128s", 224, 1), ("levit_192", 97, 3),
                                             ("efficientformer_l1", 65, 2)])
def test_stem_on_our_conv_matches_eager(gen, name, side, batch):
    """The optimized stem with its convolutions on our kernel (every layer, and where optimize() picks it) against the
    eager float64 stem; the terms' magnitude from the eager stem run on |x| with |weights| bounds the rounding."""
    import levit
    from levit_kernels.optimize import recognize

    model = levit.randomize_(levit.create_model(name), gen).eval()
    convs = recognize.describe(model).stem
    x = torch.randn(batch, 3, side, side, generator=gen)
    with torch.no_grad():
        ref = x.double()
        for conv in convs:
            ref = reference.apply_activation(torch.nn.functional.conv2d(ref, conv.weight, conv.bias, conv.stride,
                                                                        conv.padding), conv.activation)
        ref = ref.flatten(2).transpose(1, 2)
        eager = model.double().stem(x.double()) if hasattr(model, "stem") else None
    if eager is not None and eager.dim() == 4:
        assert tolerances.max_rel_error(ref, eager.flatten(2).transpose(1, 2)) <= 1e-12, "folded convs ≠ eager stem"
    for variant, tokens in _stem_variants(convs, x).items():
        assert tokens.shape == ref.shape and tokens.is_contiguous(), variant
        assert_close_to_reference(tokens, ref, torch.float32, f"{name} stem, {variant}")


def test_stem_engines_reported(gen):
    from levit_kernels.optimize.stem import FusedStem
    from levit_kernels.optimize.specs import Conv

    convs = [Conv(torch.randn(8, 3, 3, 3, generator=gen, dtype=torch.float64), torch.zeros(8, dtype=torch.float64),
                  (2, 2), (1, 1), "hardswish", "stem.conv1")]
    ours = FusedStem(convs, torch.float32, torch.device("cpu"), kernel_conv=True)
    assert ours.engines == ["levit_kernels"] and "levit_kernels" in repr(ours)
    theirs = FusedStem(convs, torch.float32, torch.device("cpu"), kernel_conv=False)
    assert "levit_kernels" not in theirs.engines
    # Not channels-last, or not fp32: never ours.
    assert FusedStem(convs, torch.float32, torch.device("cpu"), channels_last=False, kernel_conv=True).engines != \
        ["levit_kernels"]
    assert FusedStem(convs, torch.float64, torch.device("cpu"), kernel_conv=True).engines != ["levit_kernels"]


def test_kernel_chosen_per_call_by_size(gen):
    """optimize()'s choice: the first layer (K = 27, the direct kernel) always, later layers on ours up to
    MAX_PATCH_FLOATS, both paths equal to the float64 convolution."""
    from levit_kernels.optimize import stem
    from levit_kernels.optimize.specs import Conv

    def conv(c_in, c_out):
        return Conv(torch.randn(c_out, c_in, 3, 3, generator=gen, dtype=torch.float64) / (9 * c_in) ** 0.5,
                    torch.randn(c_out, generator=gen, dtype=torch.float64), (2, 2), (1, 1), "hardswish", "stem")

    nr = torch.ops.levit_kernels.gemm_panel_width()
    first, second = conv(3, nr + 8), conv(16, 32)
    assert stem.kernel_wins(first, 1, nr) and stem.kernel_wins(first, 1 << 40, nr)
    assert stem.kernel_wins(second, stem.MAX_PATCH_FLOATS // 144, nr) and \
        not stem.kernel_wins(second, stem.MAX_PATCH_FLOATS // 144 + 1, nr)
    layers = stem.ConvLayers([second], torch.float32, torch.device("cpu"))
    assert layers.engines[0].startswith("levit_kernels where kernel_wins")
    for side in (8, 2 * int((stem.MAX_PATCH_FLOATS // 144) ** 0.5) + 2):  # ours, then oneDNN / F.conv2d
        x = torch.randn(1, 16, side, side, generator=gen)
        with torch.no_grad():
            out = layers(x)
        ref = reference.apply_activation(torch.nn.functional.conv2d(x.double(), second.weight, second.bias, 2, 1),
                                         "hardswish")
        assert_close_to_reference(out, ref, torch.float32, f"layer on a {side}² map")


def test_first_layer_reads_images_in_place(gen):
    """optimize()'s stem runs the first layer (K = 27) on our direct kernel at every size, straight from NCHW images
    (no channels-last copy), and its output is channels-last for the layers after it."""
    from levit_kernels.optimize import stem
    from levit_kernels.optimize.specs import Conv

    convs = [Conv(torch.randn(c_out, c_in, 3, 3, generator=gen, dtype=torch.float64) / (9 * c_in) ** 0.5,
                  torch.randn(c_out, generator=gen, dtype=torch.float64), (2, 2), (1, 1), act, "stem")
             for c_in, c_out, act in ((3, 24, "hardswish"), (24, 32, None))]
    layers = stem.ConvLayers(convs, torch.float32, torch.device("cpu"))
    assert layers.engines[0] == "levit_kernels" and layers._any_layout_in
    x = torch.randn(2, 3, 37, 30, generator=gen)
    with poisoned_outputs(), torch.no_grad():
        out = layers(x)
    ref = x.double()
    for c in convs:
        ref = reference.apply_activation(torch.nn.functional.conv2d(ref, c.weight, c.bias, 2, 1), c.activation)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close_to_reference(out, ref, torch.float32, "stem from NCHW images")
