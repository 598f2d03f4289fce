"""Dataset problems, collected and reported together (a user fixes them all in one go)."""
from __future__ import annotations

from pathlib import Path

from reid.errors import ReidError


class DatasetError(ReidError):
    """A dataset root is not usable; ``problems`` names every offending file."""

    def __init__(self, root: str | Path, problems: list[str], show: int = 20) -> None:
        self.root = str(root)
        self.problems = list(problems)
        listed = "\n".join(f"  {p}" for p in self.problems[:show])
        more = f"\n  ... and {len(self.problems) - show} more (reid data check lists all)" \
            if len(self.problems) > show else ""
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"{len(self.problems)} {noun} in dataset {self.root}:\n{listed}{more}")
