"""comp: Kaggle-style image-classification competitions from a TOML recipe.

The data flows recipe → data → model → train → predict → evaluate, one subpackage each, with
the command line (cli) on top; each imports only those before it (see pyproject's importlinter).
"""

__version__ = "0.1.0"
