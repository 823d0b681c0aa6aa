"""cluster/lease.py against a stand-in for etcd's lease calls (etcd itself: test_cluster.py)."""

import threading

from hadaemon.cluster.lease import Lease


class FakeEtcd:
    """grant/keepalive/revoke as etcd answers them; `ttl_left` is what the next keepalive
    says (<= 0: the lease expired)."""

    def __init__(self):
        self.next_id, self.ttl_left, self.revoked = 0x10, 10, []

    def grant(self, ttl):
        self.next_id += 1
        return self.next_id

    def keepalive(self, lease):
        return self.ttl_left

    def revoke(self, lease):
        self.revoked.append(lease)


def test_no_lease_no_time_left_and_no_renewal():
    lease = Lease(FakeEtcd(), 10)
    assert lease.id is None and lease.time_left() == -1.0 and lease.renew() is False


def test_grant_then_renew_keeps_it_valid_for_about_ttl():
    etcd = FakeEtcd()
    lease = Lease(etcd, 10)
    first = lease.ensure()
    assert lease.ensure() == first  # granted once
    assert 0 < lease.time_left() <= 10
    before = lease.valid_until
    assert lease.renew() is True and lease.valid_until >= before


def test_an_expired_lease_is_forgotten_and_the_next_ensure_grants_anew():
    etcd = FakeEtcd()
    lease = Lease(etcd, 10)
    first = lease.ensure()
    etcd.ttl_left = 0
    assert lease.renew() is False and lease.id is None and lease.time_left() == -1.0
    etcd.ttl_left = 10
    assert lease.ensure() != first


def test_an_answer_sent_earlier_never_shortens_what_a_later_one_said():
    etcd = FakeEtcd()
    lease = Lease(etcd, 10)
    lease.grant()
    until = lease.valid_until
    etcd.ttl_left = 1  # as if sent before the last renewal (two threads): no shorter
    lease.renew()
    assert lease.valid_until == until


def test_revoke_gives_it_up_once():
    etcd = FakeEtcd()
    lease = Lease(etcd, 10)
    lease_id = lease.grant()
    lease.revoke()
    lease.revoke()
    assert etcd.revoked == [lease_id] and lease.id is None


def test_renewals_from_a_thread_while_the_loop_reads():
    etcd = FakeEtcd()
    lease = Lease(etcd, 10)
    lease.grant()
    t = threading.Thread(target=lambda: [lease.renew(etcd) for _ in range(2000)])
    t.start()
    lefts = [lease.time_left() for _ in range(2000)]
    t.join()
    assert all(0 < left <= 10 for left in lefts)
