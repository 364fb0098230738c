"""Sweeps, searches and their executors, for users who outgrow one machine: an experiment file's
points (``sweep``), each run as one job by submitit on this machine or as a Slurm array task
(``executors``, ``jobs``), each point's state from its files (``status``), and Optuna studies
whose trials run through the same executors (``search``). Needs the ``cluster`` extra."""

#: Where a sweep's points (a search's trials) run.
EXECUTORS = ("local", "slurm")
