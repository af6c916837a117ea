"""The paper's cached flow: config and cache keys, model store, roles, stages, experiment, sweep and tuning."""
