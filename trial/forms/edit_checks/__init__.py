"""Edit checks: values possible but unusual are saved, returned as warnings and queried.

``rules`` declares them (the built-ins), ``config`` reads the protocol's ``[[edit_checks]]``,
``conditions`` reads a visit's forms, ``run`` raises the queries. Nothing is imported here:
the protocol loader imports ``config``, which must not pull in the forms' models.
"""
