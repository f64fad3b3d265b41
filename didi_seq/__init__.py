"""didi-seq: distil masked discrete diffusion teachers into few-step students."""

__version__ = "0.1.0"
