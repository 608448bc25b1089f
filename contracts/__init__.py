"""The Runbase contract suite: one property-based suite for any implementation of the runs API.

Run it with ``pytest contracts`` (the in-process mock), ``pytest contracts --base-url URL`` (any
live server), ``pytest contracts --live`` (the real API, spend-capped) or, from an installed
package, ``mock-runbase contract`` (the wheel ships this folder as ``mock_runbase/contracts``,
so its modules import each other relatively only). The properties speak HTTP only, through
``target.Target``; what they know about the API is read from ``openapi.yaml`` by ``facts``.

    facts.py        models, prices, sizes, error codes and statuses, from the spec
    spend.py        the spend ledger behind --max-spend-usd (pure arithmetic)
    options.py      the run's options (server, keys, profile, live): session, strategies read them
    target.py       the HTTP seam: in-process app or base URL, control API probe, polling
    session.py      the run's one target, built from the options; hypothesis settings
    strategies.py   hypothesis strategies built from the spec: valid inputs of every model
    breakers.py     each documented rule broken in turn, with the code the docs give it
    registry.py     contracts registered by name, violations that explain themselves
    report.py       the rich summary table
    conftest.py     options, the target fixture, selection, summary and JUnit properties
    test_*.py       the properties
"""
