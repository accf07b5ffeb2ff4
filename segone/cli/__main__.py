"""``python -m segone.cli``: the ``segone`` command."""

from segone.cli import main

main()
