"""The plugin surface: hook specifications and the plugin manager (first registration of a name wins).

Imports no other layer, so every layer may ask it for domains, formats, samplers, scorers, methods."""
