"""`bench reproduce`: the paper's study as one declarative, resumable pipeline.

`paper.yaml` lists the steps (each one `bench` command line), `study.py` loads and checks it, `plan.py` prints
the steps with their hub needs and GPU-hour estimates (no GPU, no hub), and `execute.py` runs them in order,
recording a done-marker per step so that a rerun skips what is finished.
"""
