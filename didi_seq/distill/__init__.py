"""Distillation: the method contract, the run, and the built-in methods (DiDi-Instruct, SDTT, MMD)."""
