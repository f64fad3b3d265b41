"""Training: one run (run directory, resume, checkpoints, loop), its state, log and torchrun helpers, and pretraining."""
