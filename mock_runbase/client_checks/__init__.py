"""Contracts for clients: plans of what Runbase may answer, and verdicts on how a client coped.

    plan        a Plan: faults on the next creates, polls and downloads, and a run's
                lifecycle in polls; as rules of the control API and as readable steps
    verdicts    judge_client: the rules a client broke, from the mock's journal
    check       mock-runbase check-client: any command, once per drawn plan, shrunk on failure

The hypothesis strategy is ``mock_runbase.strategies.runbase_behaviours``; the pytest plugin's
``runbase_mock.behave(plan)`` and ``assert_client_conformed()`` use the same two modules.
"""
