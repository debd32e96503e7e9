"""Helpers the tests share: fakes of the domain's ports, the stack and service they start, the
rows and users they arrange. Fixtures live in conftest.py; everything they use lives here."""
