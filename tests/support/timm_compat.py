"""Import the real timm (and vit-pytorch) in tests on machines without a usable torchvision.

timm imports torchvision at module level (transforms, FrozenBatchNorm2d, feature extraction), but LeViT never
touches those symbols, and PyPI has no CPU torchvision wheel for this project's torch; vit-pytorch's package
``__init__`` imports its DINO trainer, which imports torchvision transforms, though its LeViT never uses them. When
torchvision is missing or broken, :func:`import_timm` / :func:`import_vit_pytorch_levit` install an import hook that
serves placeholder torchvision modules whose attributes exist but raise if anything is actually called; the model
code under test is the package's own.
"""
import importlib
import importlib.abc
import importlib.machinery
import sys
import types


class _PlaceholderType(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return f"{cls.__name__}.{name}"

    def __call__(cls, *args, **kwargs):
        raise RuntimeError(f"torchvision placeholder {cls.__name__} called: torchvision is not installed")


class _PlaceholderModule(types.ModuleType):
    def __init__(self, name):
        super().__init__(name)
        self.__path__ = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name[:1].isupper():
            value = _PlaceholderType(name, (), {})
        else:
            value = _PlaceholderModule(f"{self.__name__}.{name}")
            sys.modules[value.__name__] = value
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _PlaceholderModule(spec.name)

    def exec_module(self, module):
        pass


def _import_with_torchvision_standin(module: str):
    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or a CUDA build whose ops fail to register against a CPU torch
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        if not any(isinstance(f, _Finder) for f in sys.meta_path):
            sys.meta_path.insert(0, _Finder())
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def import_timm():
    """Return the timm module, or None when timm is not installed."""
    return _import_with_torchvision_standin("timm")


def import_vit_pytorch_levit():
    """Return the ``vit_pytorch.levit`` module, or None when vit-pytorch (or einops) is not installed."""
    return _import_with_torchvision_standin("vit_pytorch.levit")


def import_vit_pytorch(module: str):
    """Return the ``vit_pytorch.<module>`` module (e.g. "t2t", "vit"), or None when vit-pytorch (or einops) is not
    installed."""
    return _import_with_torchvision_standin(f"vit_pytorch.{module}")
