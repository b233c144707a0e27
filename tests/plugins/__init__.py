"""Plugin modules used by the tests."""
