"""``python -m reid`` (and ``torchrun -m reid train ...``) runs the command line, from any directory."""
from reid.cli import main

main()
