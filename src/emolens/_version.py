"""The one place emolens' version is written: pyproject.toml reads it (``[tool.setuptools.dynamic]``), and
``emolens.__version__`` and ``emolens --version`` show it."""

__version__ = "0.2.0.dev0"  # the next release, 0.2.0 (CHANGELOG.md, Unreleased)
