"""CPU per etcd request: hadaemon's client (cluster/etcd.py, http.client) against etcd3gw.

The agent and the runner of every node ask etcd several times per poll, all year: what a request
costs in the client's own CPU (process time, not wall time) is their cost at rest. Both clients
ask the same one-member etcd the same requests (a linearizable range of 20 keys under a prefix,
and a lease keepalive, as a look and a renewal are) in alternating rounds, in this process.

    python bench/etcd_client.py [--requests 500] [--rounds 3]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from etcdkit import SERVERS, Etcd  # noqa: E402
from harness import print_table  # noqa: E402
from hadaemon.cluster.etcd import Etcd as Client, _b64, prefix_end  # noqa: E402


def ours(endpoint):
    client = Client([endpoint])
    return lambda path, payload: client._post(path, payload)


def etcd3gw_client(endpoint):
    import etcd3gw
    scheme, host, port = endpoint
    client = etcd3gw.client(host=host, port=port, protocol=scheme, timeout=1, api_path="/v3/")
    return lambda path, payload: client.post(client.get_url(path), data=json.dumps(payload))


def per_request(post, requests, lease):
    look = {"key": _b64("/bench/live/"), "range_end": _b64(prefix_end("/bench/live/"))}
    t0 = time.process_time()
    for i in range(requests):
        if i % 2:
            post("/lease/keepalive", {"ID": lease})
        else:
            post("/kv/range", look)
    return (time.process_time() - t0) / requests * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if not SERVERS:
        sys.exit("no etcd binary: apt-get install etcd-server")
    base = Path(tempfile.mkdtemp(prefix="hadaemon-etcd-client-"))
    (base / "etcd").mkdir()
    server = Etcd(base / "etcd", n=1, server=SERVERS[0])
    try:
        server.start()
        port = int(server.endpoints.rsplit(":", 1)[1])
        endpoint = ("http", "127.0.0.1", port)
        post = ours(endpoint)
        for i in range(20):
            post("/kv/put", {"key": _b64(f"/bench/live/{i:02}"), "value": _b64("x" * 60)})
        lease = int(post("/lease/grant", {"TTL": 60, "ID": 0})["ID"])
        clients = [("etcd3gw 2.x + requests", etcd3gw_client(endpoint)),
                   ("hadaemon (http.client)", ours(endpoint))]
        rows, totals = [], {name: [] for name, _ in clients}
        for r in range(1, a.rounds + 1):
            for name, client in clients:
                client("/kv/range", {"key": _b64("/bench/")})  # connected before timing
                ms = per_request(client, a.requests, lease)
                totals[name].append(ms)
                rows.append([name, r, round(ms, 3)])
        base_ms, ours_ms = (min(totals[name]) for name, _ in clients)
        rows.append(["hadaemon / etcd3gw (best rounds)", "", round(ours_ms / base_ms, 3)])
        print_table(f"CPU per etcd request ({a.requests} requests a round: ranges of 20 keys and "
                    f"keepalives, etcd {SERVERS[0][0]}, one member)",
                    ["client", "round", "ms CPU per request"], rows,
                    "python bench/etcd_client.py " + " ".join(sys.argv[1:]))
    finally:
        server.close()


if __name__ == "__main__":
    main()
