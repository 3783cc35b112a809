"""What runs inside worker processes as well as in the driver.

Only the standard library and cloudpickle are used here: this package (with ``runenv.api`` and
``runenv.errors``) is copied into a bootstrap directory that workers in isolated envs import.
"""
