"""ImageNet top-k predictions for image files, with the timm / official LeViT preprocessing.

Preprocessing (timm's eval transform for LeViT, crop_pct 0.9): resize the shorter side to 248 (= 224 / 0.9) with
bicubic interpolation, center-crop 224, scale to [0, 1], normalize with the ImageNet mean and std. Done with PIL
and torch only. Class names ship in ``levit_kernels/data/imagenet_classes.txt`` (synset id, tab, lemmas; label
order).
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP = 224
CROP_PCT = 0.9
CLASSES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "imagenet_classes.txt")


@functools.lru_cache(maxsize=1)
def class_names() -> tuple[tuple[str, str], ...]:
    """(synset id, lemmas) of the 1000 ImageNet-1k classes, in label order."""
    with open(CLASSES_FILE, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t", 1) for line in f if line.strip() and not line.startswith("#")]
    return tuple((row[0], row[1] if len(row) > 1 else "") for row in rows)


def resize_size(crop: int = CROP, crop_pct: float = CROP_PCT) -> int:
    return int(math.floor(crop / crop_pct))


def preprocess(path: str, crop: int = CROP) -> torch.Tensor:
    """An image file → a normalized (3, crop, crop) float32 tensor. Raises OSError/ValueError if unreadable."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        short = resize_size(crop)
        # The shorter side becomes `short`; the longer keeps the aspect ratio (truncated, as torchvision's Resize).
        if width <= height:
            size = (short, int(short * height / width))
        else:
            size = (int(short * width / height), short)
        image = image.resize(size, Image.Resampling.BICUBIC)
        left = int(round((size[0] - crop) / 2.0))
        top = int(round((size[1] - crop) / 2.0))
        image = image.crop((left, top, left + crop, top + crop))
        data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    pixels = data.view(crop, crop, 3).permute(2, 0, 1).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (pixels - mean) / std


@dataclass(frozen=True)
class Prediction:
    path: str
    top: list[tuple[float, int, str, str]]  # (probability, label, synset id, lemmas), best first

    def format(self) -> str:
        lines = [f"{self.path}:"]
        lines += [f"  {p * 100:6.2f}%  {label:4d}  {synset}  {name}" for p, label, synset, name in self.top]
        return "\n".join(lines)


def load_images(paths: Iterable[str], on_error: Optional[Callable[[str, Exception], None]] = None
                ) -> list[tuple[str, torch.Tensor]]:
    """(path, preprocessed image) of each readable file; unreadable ones go to ``on_error(path, exc)`` (or raise)."""
    loaded = []
    for path in paths:
        try:
            loaded.append((path, preprocess(path)))
        except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError, ...
            if on_error is None:
                raise
            on_error(path, exc)
    return loaded


def classify(model: Callable[[torch.Tensor], torch.Tensor], loaded: list[tuple[str, torch.Tensor]], top: int = 5,
             batch: int = 16) -> list[Prediction]:
    """Top-``top`` classes of each (path, image) under ``model`` (images → logits), in batches."""
    names = class_names()
    results = []
    for start in range(0, len(loaded), batch):
        chunk = loaded[start:start + batch]
        with torch.no_grad():
            logits = model(torch.stack([t for _, t in chunk]))
        probs = logits.float().softmax(-1)
        values, labels = probs.topk(min(top, probs.shape[-1]), dim=-1)
        for (path, _), vs, ls in zip(chunk, values.tolist(), labels.tolist()):
            results.append(Prediction(path, [(v, label, *(names[label] if label < len(names) else ("?", "?")))
                                             for v, label in zip(vs, ls)]))
    return results


def predict(model: Callable[[torch.Tensor], torch.Tensor], paths: Iterable[str], top: int = 5, batch: int = 16,
            on_error: Optional[Callable[[str, Exception], None]] = None) -> list[Prediction]:
    """:func:`classify` the readable images among ``paths`` (see :func:`load_images` for ``on_error``)."""
    return classify(model, load_images(paths, on_error), top, batch)
