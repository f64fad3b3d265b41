"""``python -m didi_seq_cli`` (what torchrun's ``-m`` takes): the ``didi-seq`` command."""

from .main import main

main()
