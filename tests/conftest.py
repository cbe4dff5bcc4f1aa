"""Shared test setup, deliberately small: helpers live in :mod:`tests.support`.

The ``etcd`` fixture (a fresh, healthy etcd per test) is registered from there.
"""

pytest_plugins = ("tests.support.etcd_server",)
