"""Times pyiso8583 decode + encode of the benchmark 0200 sale (the same message bytes,
MTI to field 64, that crates/kassa-iso8583/benches/codec.rs times).

Prints `pyiso8583 decode+encode/s: N` (best of several runs).
"""

import sys
import time

import iso8583

from kassa_spec import SPEC, to_pyiso
from messages import BENCH_SALE

MESSAGE_SPEC = dict(SPEC, h=dict(SPEC["h"], max_len=0))  # no TPDU/header: message bytes only


def message_bytes():
    body, _ = iso8583.encode(to_pyiso(BENCH_SALE), SPEC)
    return bytes(body[11:])  # drop TPDU + header


def run(data, iterations):
    start = time.perf_counter()
    for _ in range(iterations):
        decoded, _ = iso8583.decode(data, MESSAGE_SPEC)
        iso8583.encode(decoded, MESSAGE_SPEC)
    return iterations / (time.perf_counter() - start)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    data = message_bytes()
    decoded, _ = iso8583.decode(data, MESSAGE_SPEC)
    encoded, _ = iso8583.encode(decoded, MESSAGE_SPEC)
    assert bytes(encoded) == data, "pyiso8583 must round-trip the benchmark message"
    iterations = max(1000, int(run(data, 1000) * seconds / 5))
    best = max(run(data, iterations) for _ in range(5))
    print(f"message bytes: {len(data)}")
    print(f"pyiso8583 decode+encode/s: {best:.0f}")


if __name__ == "__main__":
    main()
