"""Video: every frame of a file through the served model (`cvops run video`), a detector's boxes tracked so
that each object keeps one id, a classifier's labels smoothed over time into segments; the outputs a person
plays and a program reads, and the job's MLflow run."""
