"""AI-likelihood scoring: the fastText detector, its calibration, RunInference wiring, training and estimators."""
