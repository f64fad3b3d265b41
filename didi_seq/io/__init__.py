"""Files in and out, safely: checkpoints, provenance, model cards, untrusted input, outputs, samples, cache.

The lowest layer: imports no other layer of the core."""
