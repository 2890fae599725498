"""Test infrastructure: real services started on loopback and stopped by PID.

Every module in this package is loaded as a pytest plugin by tests/conftest.py.
"""
