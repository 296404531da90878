"""Recipes: the typed config (:mod:`~comp.recipe.schema`) and its TOML loading (:mod:`~comp.recipe.load`)."""

from comp.recipe.load import (apply_override, choices, load_recipe, parse_override, recipe_from_dict, recipe_to_dict,
                              recipe_to_toml)
from comp.recipe.schema import (IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, CVConfig, DataConfig, LogConfig,
                                LossConfig, ModelConfig, OptimConfig, PredictConfig, Provenance, Recipe, RecipeError,
                                ScheduleConfig, SubmissionConfig, TrainConfig)

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "AugmentConfig", "CVConfig", "DataConfig", "LogConfig", "LossConfig",
    "ModelConfig",
    "OptimConfig", "PredictConfig", "Provenance", "Recipe", "RecipeError", "ScheduleConfig", "SubmissionConfig",
    "TrainConfig",
    "apply_override", "choices", "load_recipe", "parse_override", "recipe_from_dict", "recipe_to_dict", "recipe_to_toml",
]
