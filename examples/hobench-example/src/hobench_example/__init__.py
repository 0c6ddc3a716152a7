"""An example hobench plugin: `quadratic-bowl` (a task) and `coordinate-search` (a strategy)."""
