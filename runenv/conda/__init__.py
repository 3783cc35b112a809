"""Conda envs built from a definition by py-rattler, without a conda binary.

- :mod:`runenv.conda.spec`: the ``conda`` mapping (an environment.yml), validated.
- :mod:`runenv.conda.lock`: the lock — exact package URLs and sha256 for one platform.
- :mod:`runenv.conda.channels`: which channels, and credentials kept out of locks.
- :mod:`runenv.conda.build`: solving on the submitter, installing on each node (kind ``conda``).
- :mod:`runenv.conda.child`: the process py-rattler runs in.
"""
