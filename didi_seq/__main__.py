"""``python -m didi_seq``: the same program as the ``didi-seq`` command.

The core does not import the CLI package (the CLI imports the core, never the reverse); it
finds the ``didi-seq`` console script through the installed metadata, the way the
``didi-seq`` launcher itself does, exactly as it finds domain plugins through entry points.
"""

from importlib.metadata import entry_points


def main() -> None:
    scripts = list(entry_points(group="console_scripts", name="didi-seq"))
    if not scripts:
        raise SystemExit("error: the didi-seq command is not installed (pip install -e . in the repository)")
    scripts[0].load()()


if __name__ == "__main__":
    main()
