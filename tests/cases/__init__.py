"""Test cases as data (no test functions): the tables test modules parametrize over, one table per subject."""
