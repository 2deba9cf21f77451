"""A third task, as small as a task can be: regress an image's mean brightness (0 to 1) with a two-layer model.

It has the parts a task needs to train, be evaluated, pass the gate and be exported (`data`, `train`, `val`,
`report`, `export`); registered with one line (tests/model/test_task_interface.py).
"""
