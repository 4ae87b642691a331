"""``python -m scenecut.models > weights/README.md``: the weights table, from the registry."""

from scenecut.models.hub import registry_markdown

print(registry_markdown(), end="")
