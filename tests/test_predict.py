"""predict: the timm/official preprocessing, class names, and ``levit-kernels predict`` on real image files."""
import pytest
import torch
from PIL import Image

import levit
from levit_kernels import predict
from levit_kernels.cli import main

MEAN = torch.tensor(predict.IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(predict.IMAGENET_STD).view(3, 1, 1)


def save(array: torch.Tensor, path) -> str:
    """(H, W, 3) uint8 tensor → image file (format from the suffix)."""
    Image.fromarray(array.numpy()).save(path)
    return str(path)


def random_pixels(gen, height, width):
    return torch.randint(0, 256, (height, width, 3), generator=gen, dtype=torch.uint8)


def test_class_names_are_the_1000_imagenet_classes_in_label_order():
    names = predict.class_names()
    assert len(names) == 1000 and len({synset for synset, _ in names}) == 1000
    assert names[0] == ("n01440764", "tench, Tinca tinca") and names[999][0] == "n15075141"


def test_a_248_pixel_image_is_center_cropped_and_normalized_exactly(tmp_path, gen):
    pixels = random_pixels(gen, 248, 248)  # already 248 on its shorter side: the resize keeps it
    out = predict.preprocess(save(pixels, tmp_path / "x.png"))
    want = (pixels[12:236, 12:236].permute(2, 0, 1).float() / 255 - MEAN) / STD
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    assert torch.allclose(out, want, atol=1e-6)


@pytest.mark.parametrize("size", [(300, 900), (900, 300)])  # (width, height): tall and wide
def test_shorter_side_goes_to_248_and_the_crop_is_centered(tmp_path, size):
    # Three bands along the longer side; after resizing its middle 224 pixels lie inside the middle band.
    width, height = size
    pixels = torch.zeros(height, width, 3, dtype=torch.uint8)
    long_axis = 0 if height > width else 1
    third = max(size) // 3
    for band, color in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        index = [slice(None), slice(None)]
        index[long_axis] = slice(band * third, (band + 1) * third)
        pixels[tuple(index)] = torch.tensor(color, dtype=torch.uint8)
    out = predict.preprocess(save(pixels, tmp_path / "bands.png"))
    green = ((torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1) - MEAN) / STD).expand(3, 224, 224)
    assert torch.allclose(out, green, atol=1e-5)  # 248×744 → crop rows/cols 260..484: inside 248..496
    assert predict.resize_size() == 248


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "levit_128s.pth"
    model = levit.randomize_(levit.create_model("levit_128s"), torch.Generator().manual_seed(0))
    torch.save(model.state_dict(), path)
    return str(path)


def test_predict_command_on_png_jpeg_and_a_corrupt_file(tmp_path, gen, capsys, checkpoint):
    png = save(random_pixels(gen, 240, 320), tmp_path / "a.png")
    jpeg = save(random_pixels(gen, 400, 300), tmp_path / "b.jpg")
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    argv = ["predict", "--model", "levit_128s", "--checkpoint", checkpoint, "--backend", "reference", png,
            str(corrupt), jpeg]
    assert main(argv) == 0
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and str(corrupt) in err[0] and "skipping" in err[0] and "Traceback" not in captured.err
    lines = captured.out.splitlines()
    assert lines[0] == f"{png}:" and lines[6] == f"{jpeg}:" and len(lines) == 12
    names = dict(predict.class_names())
    probabilities = []
    for line in lines[1:6] + lines[7:12]:
        percent, label, synset, name = line.split(maxsplit=3)
        assert names[synset] == name and predict.class_names()[int(label)][0] == synset
        probabilities.append(float(percent.rstrip("%")))
    assert probabilities[:5] == sorted(probabilities[:5], reverse=True) and sum(probabilities[:5]) <= 100.01


def test_predict_matches_the_eager_model(tmp_path, gen, checkpoint):
    path = save(random_pixels(gen, 256, 256), tmp_path / "c.png")
    model = levit.create_model("levit_128s", checkpoint=checkpoint).eval()
    [result] = predict.predict(model, [path], top=3)
    with torch.no_grad():
        probs = model(predict.preprocess(path)[None]).softmax(-1)[0]
    values, labels = probs.topk(3)
    assert [label for _, label, _, _ in result.top] == labels.tolist()
    assert torch.allclose(torch.tensor([p for p, *_ in result.top]), values, atol=1e-6)


def test_predict_fails_when_no_image_can_be_read(tmp_path, capsys, checkpoint):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["predict", "--model", "levit_128s", "--checkpoint", checkpoint, "--backend", "reference",
                 str(text), str(tmp_path / "missing.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "notes.txt" in err[0] and "missing.png" in err[1]
    assert err[2] == "levit-kernels predict: error: none of the 2 image(s) could be read"


def test_predict_requires_a_checkpoint(capsys):
    assert main(["predict", "--model", "levit_128s", "x.png"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--checkpoint" in err[0]
