"""``python -m didi_seq``: the same program as the ``didi-seq`` command.

The core does not import the CLI package (the CLI imports the core, never the reverse); it
finds the ``didi-seq`` console script through the installed metadata, the way the
``didi-seq`` launcher itself does, exactly as it finds domain plugins through entry points.
"""

from importlib.metadata import entry_points


def main() -> None:
    (script,) = entry_points(group="console_scripts", name="didi-seq")
    script.load()()


if __name__ == "__main__":
    main()
