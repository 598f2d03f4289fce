"""The `reid` command line from a checkout: `python cli.py train --config configs/demo.yaml` is `reid train ...`.

The commands live in the package (reid/cli/, one module per command group); this file runs the same app, so the
command line works from a source tree before (or without) `pip install -e .`.
"""
from reid.cli import main

if __name__ == "__main__":
    main()
