"""comp: Kaggle-style image-classification competitions from a TOML recipe.

The data flows recipe → table → dataset/augment → models → train → checkpoint → predict →
report; each step is its own module, in that order.
"""

__version__ = "0.1.0"
