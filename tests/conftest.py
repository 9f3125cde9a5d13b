"""Fixtures shared by every test folder: none yet (the cluster fixtures live in tests/e2e)."""
