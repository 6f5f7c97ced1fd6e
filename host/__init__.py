# Desktop side: plant models (Cython), simulation engine, scenarios, reports and the CLI.
