"""Randomization: the list, allocation, kits, and the only code that reads an arm.

Not built yet (issue 3). ``trial`` may import this package only to register it in the app
factory.
"""
