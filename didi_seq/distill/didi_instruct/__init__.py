"""DiDi-Instruct (arXiv 2509.25035): its hyperparameters with their sources, and its trainer."""
