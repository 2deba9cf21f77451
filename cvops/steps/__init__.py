"""ZenML steps: thin wrappers, one per file, each calling into the cvops library.

Import a step from its module (`from cvops.steps.detect_drift import detect_drift`): this package imports
none of them, so a pipeline loads only its own steps' libraries (the monitoring pipeline no torch or timm).
"""
