"""The LeViT family as data, and the shapes of every op each variant runs.

:data:`SPECS` holds the five paper variants (Graham et al. 2021, Table 2). :func:`op_shapes` expands a spec into
its transformer blocks in forward order, each as a frozen dataclass carrying every size an implementation needs
(heads, key/value dims, grid sides, stride, the (in, out) of each projection). The model in :mod:`levit.model` is
built from that list, so the shapes benchmarks and tests take from it are the model's shapes by construction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from levit_kernels.reference import grid, grid_points, grid_sides, query_grid

# A grid (an image, a token map, an attention's key grid): an int S for S×S, or (H, W) when not square. Every shape
# here holds the canonical form (reference.grid: the int when square), so square models look as they always have.
Grid = Union[int, tuple[int, int]]

STEM_CONVS = 4                 # 3×3 stride-2 pad-1 convs: 224 → 14, the "b16" patch embedding
STAGE_ATTENTION_VALUE_RATIO = 2  # stage attention: value dim = 2·D
SHRINK_VALUE_RATIO = 4           # shrink attention: value dim = 4·D
MLP_RATIO = 2                    # MLP hidden width = 2·C
SHRINK_STRIDE = 2


@dataclass(frozen=True)
class LeViTSpec:
    """One variant: channels C, heads and depth (attention+MLP pairs) per stage; key dim D shared by all."""

    name: str
    widths: tuple[int, ...]
    key_dim: int
    heads: tuple[int, ...]
    depths: tuple[int, ...]
    drop_path: float = 0.0  # residual drop-path rate used in training (LeViT-384: 0.1)

    @property
    def stages(self) -> int:
        return len(self.widths)


SPECS: dict[str, LeViTSpec] = {spec.name: spec for spec in (
    LeViTSpec("levit_128s", (128, 256, 384), 16, (4, 6, 8), (2, 3, 4)),
    LeViTSpec("levit_128", (128, 256, 384), 16, (4, 8, 12), (4, 4, 4)),
    LeViTSpec("levit_192", (192, 288, 384), 32, (3, 5, 6), (4, 4, 4)),
    LeViTSpec("levit_256", (256, 384, 512), 32, (4, 6, 8), (4, 4, 4)),
    LeViTSpec("levit_384", (384, 512, 768), 32, (6, 9, 12), (4, 4, 4), drop_path=0.1),
)}
MODEL_NAMES = tuple(SPECS)


def get_spec(name: Union[str, LeViTSpec]) -> LeViTSpec:
    """The spec of ``name`` (a spec passes through); unknown names raise ValueError listing the valid ones."""
    if isinstance(name, LeViTSpec):
        return name
    try:
        return SPECS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown LeViT variant {name!r}; valid names: {', '.join(MODEL_NAMES)}") from None


def downsampled_side(side: Grid, stride: int = 2) -> Grid:
    """Grid side after a stride-s subsampling (or a 3×3 stride-s pad-1 conv): ceil(side / s); a grid (H, W)
    side by side (odd sides round up)."""
    if isinstance(side, tuple):
        return grid(*query_grid(side, stride))
    return (side - 1) // stride + 1


def image_grid(img_size, what: str = "img_size") -> Grid:
    """A model's ``img_size``: an int S (S×S images) or a pair (H, W) of positive ints, in canonical form; anything
    else raises ValueError naming it."""
    def positive(v) -> bool:
        return not isinstance(v, bool) and isinstance(v, int) and v >= 1

    if isinstance(img_size, (tuple, list)) and len(img_size) == 2 and all(positive(v) for v in img_size):
        return grid(int(img_size[0]), int(img_size[1]))
    if positive(img_size):
        return img_size
    raise ValueError(f"{what} must be a positive int (square images) or a pair (H, W) of positive ints (image sides "
                     f"in pixels), got {img_size!r}")


def grid_text(g: Grid) -> str:
    """'14×14' or '28×50'."""
    h, w = grid_sides(g)
    return f"{h}×{w}"


@dataclass(frozen=True)
class ConvShape:
    """A stem Conv+BN: 3×3, stride 2, padding 1, on a side×side (or H×W) image."""

    in_channels: int
    out_channels: int
    in_side: Grid
    kernel: int = 3
    stride: int = 2
    padding: int = 1

    @property
    def out_side(self) -> Grid:
        return downsampled_side(self.in_side, self.stride)

    @property
    def out_points(self) -> int:
        return grid_points(self.out_side)


class _AttentionGeometry:
    """What stage and shrink attention share: keys on the R×R (or Rh×Rw) grid, queries on its stride-s subgrid."""

    heads: int
    key_dim: int
    value_dim: int
    resolution: Grid
    stride: int

    @property
    def queries(self) -> int:
        return grid_points(downsampled_side(self.resolution, self.stride))

    @property
    def keys(self) -> int:
        return grid_points(self.resolution)

    def attention_operands(self, batch: int) -> dict[str, tuple[int, ...]]:
        """Shapes of :func:`levit_kernels.biased_attention`'s tensors (``out``: its result) at ``batch``."""
        h, nq, nk = self.heads, self.queries, self.keys
        return {"q": (batch, h, nq, self.key_dim), "k": (batch, h, nk, self.key_dim),
                "v": (batch, h, nk, self.value_dim), "attention_biases": (h, nk),
                "out": (batch, nq, h * self.value_dim)}


@dataclass(frozen=True)
class AttentionShape(_AttentionGeometry):
    """Residual stage attention on an R×R grid of C-channel tokens: qkv Linear+BN, biased attention, proj."""

    stage: int
    channels: int
    heads: int
    key_dim: int
    value_dim: int
    resolution: Grid
    stride: int = 1
    kind: str = "attention"

    @property
    def tokens(self) -> int:
        return grid_points(self.resolution)

    @property
    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each projection, keyed by the model's attribute name."""
        h, d, dv, c = self.heads, self.key_dim, self.value_dim, self.channels
        return {"qkv": (c, h * (2 * d + dv)), "proj": (h * dv, c)}


@dataclass(frozen=True)
class ShrinkAttentionShape(_AttentionGeometry):
    """Shrink attention between stages (no residual): keys/values from all R×R tokens, queries from the stride-2
    subsampled grid, output at the next stage's width on the R_out×R_out grid."""

    stage: int  # the stage it leads into
    in_channels: int
    out_channels: int
    heads: int
    key_dim: int
    value_dim: int
    resolution: Grid
    stride: int = SHRINK_STRIDE
    kind: str = "shrink"

    @property
    def out_resolution(self) -> Grid:
        return downsampled_side(self.resolution, self.stride)

    @property
    def linears(self) -> dict[str, tuple[int, int]]:
        h, d, dv = self.heads, self.key_dim, self.value_dim
        return {"kv": (self.in_channels, h * (d + dv)), "q": (self.in_channels, h * d),
                "proj": (h * dv, self.out_channels)}

    def shrink_operands(self, batch: int) -> dict[str, tuple[int, ...]]:
        """Shapes of :func:`levit_kernels.shrink_attention`'s tensors (``out``: its result) at ``batch``."""
        shapes = self.attention_operands(batch)
        del shapes["q"]
        hd = self.heads * self.key_dim
        return {"x": (batch, self.keys, self.in_channels), "q_weight": (hd, self.in_channels), "q_bias": (hd,),
                **shapes}


@dataclass(frozen=True)
class MLPShape:
    """Residual MLP on R×R tokens: Linear+BN (C → hidden), Hardswish, Linear+BN (hidden → C)."""

    stage: int
    channels: int
    hidden: int
    resolution: Grid
    kind: str = "mlp"

    @property
    def tokens(self) -> int:
        return grid_points(self.resolution)

    @property
    def linears(self) -> dict[str, tuple[int, int]]:
        return {"fc1": (self.channels, self.hidden), "fc2": (self.hidden, self.channels)}

    def mlp_operands(self, batch: int) -> dict[str, tuple[int, ...]]:
        """Shapes of :func:`levit_kernels.mlp`'s tensors (``out``: its result) at ``batch``."""
        c, hidden = self.channels, self.hidden
        return {"x": (batch, self.tokens, c), "w1": (hidden, c), "b1": (hidden,), "w2": (c, hidden), "b2": (c,),
                "out": (batch, self.tokens, c)}


BlockShape = Union[AttentionShape, ShrinkAttentionShape, MLPShape]


@dataclass(frozen=True)
class HeadShape:
    """Mean over tokens, then BN+Linear (C → classes); twice with the distillation head."""

    channels: int
    num_classes: int
    heads: int  # 2 with distillation, else 1


def stem_shapes(name: Union[str, LeViTSpec], img_size: Grid = 224) -> list[ConvShape]:
    """The stem's convs: 3 → C/8 → C/4 → C/2 → C channels, each halving the side(s)."""
    width = get_spec(name).widths[0]
    channels = [3] + [width // 2 ** (STEM_CONVS - 1 - i) for i in range(STEM_CONVS)]
    shapes, side = [], image_grid(img_size)
    for cin, cout in zip(channels, channels[1:]):
        shapes.append(ConvShape(cin, cout, side))
        side = shapes[-1].out_side
    return shapes


def token_resolution(img_size: Grid = 224) -> Grid:
    """Side of the token grid the stem produces from an img_size×img_size image (14 for 224; (28, 50) for
    (448, 800): every stem conv halves each side, rounding up)."""
    side = image_grid(img_size)
    for _ in range(STEM_CONVS):
        side = downsampled_side(side)
    return side


def op_shapes(name: Union[str, LeViTSpec], img_size: Grid = 224) -> list[BlockShape]:
    """Every transformer block of variant ``name`` in forward order.

    Stage s runs depths[s] × (AttentionShape, MLPShape); before stages 1, 2, … a ShrinkAttentionShape (heads =
    C_in / D, value dim 4D, stride 2) and an MLPShape at the new width. Stage attention has value dim 2D; every
    MLP has hidden width 2C.
    """
    spec = get_spec(name)
    d = spec.key_dim
    side = token_resolution(img_size)
    blocks: list[BlockShape] = []
    for s, (width, heads, depth) in enumerate(zip(spec.widths, spec.heads, spec.depths)):
        if s > 0:
            c_in = spec.widths[s - 1]
            shrink = ShrinkAttentionShape(s, c_in, width, c_in // d, d, SHRINK_VALUE_RATIO * d, side)
            side = shrink.out_resolution
            blocks += [shrink, MLPShape(s, width, MLP_RATIO * width, side)]
        for _ in range(depth):
            blocks += [AttentionShape(s, width, heads, d, STAGE_ATTENTION_VALUE_RATIO * d, side),
                       MLPShape(s, width, MLP_RATIO * width, side)]
    return blocks


def head_shape(name: Union[str, LeViTSpec], num_classes: int = 1000, distillation: bool = True) -> HeadShape:
    return HeadShape(get_spec(name).widths[-1], num_classes, 2 if distillation else 1)
