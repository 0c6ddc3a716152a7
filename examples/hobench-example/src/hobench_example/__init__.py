"""An example hobench plugin: `quadratic-bowl` (a task), `coordinate-search` (a strategy) and
`nsga2` (Optuna's NSGA-II sampler as a strategy)."""
