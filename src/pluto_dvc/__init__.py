"""pluto-dvc: the PLUTO planner on nuPlan as a DVC pipeline."""

__version__ = "0.1.0"
