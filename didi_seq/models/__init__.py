"""The model layer: the masked process, the DiT, teacher adapters and formats, loading, the networks distillers train.

Builds on io and registry only: samplers and distillers build on it, never the reverse."""
