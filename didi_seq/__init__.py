"""didi-seq: distil masked discrete diffusion teachers into few-step students."""

from ._version import __version__

__all__ = ["MaskedDiffusionModel", "__version__"]


def __getattr__(name: str):
    """``didi_seq.MaskedDiffusionModel`` imports the API (and torch) only when asked for: ``import didi_seq``
    stays cheap for the CLI's ``--help``."""
    if name == "MaskedDiffusionModel":
        from .api import MaskedDiffusionModel

        return MaskedDiffusionModel
    raise AttributeError(f"module 'didi_seq' has no attribute {name!r}")
