"""The didi-seq command line (typer)."""
