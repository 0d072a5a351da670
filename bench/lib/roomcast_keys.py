#!/usr/bin/env python3
"""Creates the projects a benchmark scenario needs on a running roomcast and writes their
API keys, one per line (room r = line r), for the load generator's --keys-file.

Goes through the public REST API exactly as a user would: sign up, then create projects.
Standard library only; one keep-alive connection; loopback only.
"""
import argparse
import http.client
import json
import secrets
import sys
import time


def call(conn, method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        raise SystemExit(f"{method} {path} -> {resp.status}: {data[:200]!r}")
    return json.loads(data) if data else {}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not args.host.startswith("127."):
        raise SystemExit("loopback only")
    if not 0 < args.count <= 10_000:
        raise SystemExit("--count must be 1..10000")

    conn = http.client.HTTPConnection(args.host, args.port, timeout=30)
    email = f"bench-{secrets.token_hex(6)}@example.com"
    token = call(conn, "POST", "/api/v1/signup",
                 {"email": email, "password": secrets.token_hex(12)})["token"]
    started = time.monotonic()
    keys = []
    for i in range(args.count):
        created = call(conn, "POST", "/api/v1/projects", {"name": f"bench-{i}"}, token)
        keys.append(created["api_key"])
    with open(args.out, "w") as f:
        f.write("\n".join(keys) + "\n")
    print(f"created {len(keys)} projects in {time.monotonic() - started:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
