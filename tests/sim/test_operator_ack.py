"""The operator's acknowledge decision, shared by the simulator's operator and the rig's
(``host.sim.operator.wants_ack``), against the real supervisor's status shape."""

from __future__ import annotations

import pytest

from host.sim.operator import ACK_HOLDS, wants_ack


@pytest.mark.parametrize("hold", sorted(ACK_HOLDS))
def test_a_latched_stop_or_comms_hold_is_acknowledged(hold: str) -> None:
    assert wants_ack({"state": "hold", "hold": ["confirm", hold], "alarms": []})


@pytest.mark.parametrize("hold", ["confirm", "manual"])
def test_a_hold_only_a_confirm_ends_is_not_acknowledged(hold: str) -> None:
    assert not wants_ack({"state": "hold", "hold": [hold], "alarms": ["3:charger_offline"]})


def test_a_damaged_journal_is_acknowledged_whatever_the_hold() -> None:
    assert wants_ack({"state": "hold", "hold": ["confirm"], "alarms": ["-1:journal_replay"]})


def test_a_status_from_the_channel_with_empty_fields_needs_nothing() -> None:
    # over the rig's channel, an idle station's status may carry None for these
    assert not wants_ack({"state": "run", "hold": None, "alarms": None})
