"""Evaluation of a trained planner: nuPlan's open-loop score (OLS) exactly as the devkit samples
it, learning metrics, baselines scored by the same code, reports and scene pictures.

    from pluto_dvc.evaluation.stage import run_evaluate     # the `evaluate` stage
    from pluto_dvc.evaluation.open_loop import score_scenario, OpenLoopConfig
    from pluto_dvc.evaluation.scenes import draw_scene

Modules: ``open_loop`` (the metric), ``scenarios`` (which 15 s scenarios, queried frames),
``planners`` (baselines) and ``model_planner`` (PLUTO), ``runner`` (frames -> plans -> scores per
log), ``learning`` (minADE / minFDE / MR / prediction errors), ``report`` (reports/ files),
``scenes`` (PNG pictures), ``tracking`` (MLflow), ``stage`` (everything together).
"""
