"""Statuses are a known set: the default ones plus `statuses =`; a result naming another is
rejected, with the nearest declared name."""

import pytest

from hadaemon import protocol, statuses


def test_the_default_set_is_extended_never_replaced():
    assert statuses.declared("") == {"up", "warning", "down", "unknown", "master", "slave"}
    assert statuses.declared("standby, maintenance") == statuses.declared("") | {
        "standby", "maintenance"}
    assert statuses.declared("standby maintenance,,up") == statuses.declared(
        "standby, maintenance")
    with pytest.raises(ValueError, match="'Standby' is not a status name"):
        statuses.vet("Standby")
    with pytest.raises(ValueError, match="'a_b' is not a status name"):
        statuses.vet("ok, a_b")


def test_an_undeclared_status_in_a_result_is_rejected_naming_it():
    known = statuses.declared("standby")
    out = b'[{"host": "db1", "status": "master"}, {"host": "db2", "status": "Mastr"}]'
    with pytest.raises(protocol.Rejected, match=r"result 1: status 'mastr' is not declared "
                       r"\(did you mean 'master'\?\)"):
        protocol.parse_output(out, 0, statuses=sorted(known))
    assert protocol.parse_output(out, 0)[1]["status"] == "mastr"  # no set: any safe name
    assert protocol.parse_output(b'{"host": "db1", "status": "standby"}', 0,
                                 statuses=known)[0]["status"] == "standby"
    # the Nagios reading gives only default statuses
    assert protocol.parse_output(b"CRITICAL", 2, "db1", statuses=statuses.DEFAULT)[0][
        "status"] == "down"

