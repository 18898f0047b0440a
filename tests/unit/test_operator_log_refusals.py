"""The tests' check for API refusals in an operator log: real refusals only."""

from __future__ import annotations

from tests.support.operator_process import refusals


def test_refusals_are_found_and_timestamps_or_uids_with_403_are_not() -> None:
    log = "\n".join(
        [
            "2026-11-22 07:15:56,403 INFO kubesft.operator: SFTJob ns/llama: Running",
            '{"msg": "created Job", "uid": "b34538c1-c722-4f31-8767-9fc561a54030"}',
            "2026-11-22 07:15:57,001 WARNING kubesft.operator: ns/a: API error 403 Forbidden",
            'kopf: jobs.batch is forbidden: User "system:serviceaccount:ns:op" cannot create',
            "kopf: Not enough permissions to watch for resources",
        ]
    )

    assert refusals(log) == log.splitlines()[2:]
