"""A toy kind of item for tests/test_kinds.py: short sequences of digits ("3 1 4 1 5"), registered from the test
folder as a third party would, to show a new kind needs no edit to nbml's generic modules."""
