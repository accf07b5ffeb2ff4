"""``python -m segone.config``: the table of every setting, for docs/configuration.md."""

from segone.config.model import markdown_table

print(markdown_table(), end="")
