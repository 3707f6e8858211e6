"""Cross-checks Kassa's codec against pyiso8583 on every message kind of docs/reference/iso8583.md.

For each message: (1) pyiso8583 encodes it, Kassa decodes the frame to the same MTI, envelope
and fields and re-encodes it byte for byte; (2) Kassa encodes it from the same logical fields,
the bytes equal pyiso8583's, and pyiso8583 decodes Kassa's bytes to the same fields.

Usage: python interop.py PATH_TO_iso8583_interop_BINARY
"""

import json
import subprocess
import sys

import iso8583

from kassa_spec import SPEC, frame, from_pyiso, hexstr, n_fixed, to_pyiso, unframe
from messages import BENCH_SALE, MESSAGES


def kassa(binary, requests):
    lines = "".join(json.dumps(request) + "\n" for request in requests)
    completed = subprocess.run([binary], input=lines, capture_output=True, text=True, check=True)
    answers = [json.loads(line) for line in completed.stdout.splitlines()]
    if len(answers) != len(requests):
        raise RuntimeError(f"{len(requests)} requests, {len(answers)} answers: {completed.stderr}")
    return answers


def check_kassa_decodes_pyiso(message, py_hex, answer):
    if not answer.get("ok"):
        return f"Kassa could not decode pyiso8583's frame: {answer.get('error')}"
    if answer["mti"] != message["mti"]:
        return f"MTI {answer['mti']} != {message['mti']}"
    if answer["envelope"] != message["envelope"]:
        return f"envelope {answer['envelope']} != {message['envelope']}"
    if answer["fields"] != message["fields"]:
        return f"fields differ: {answer['fields']} != {message['fields']}"
    if answer["reencoded"] != py_hex:
        return f"re-encoding differs:\n  kassa {answer['reencoded']}\n  pyiso {py_hex}"
    return None


def check_pyiso_decodes_kassa(message, py_hex, answer):
    if not answer.get("ok"):
        return f"Kassa could not encode: {answer.get('error')}"
    if answer["frame"] != py_hex:
        return f"Kassa's bytes differ:\n  kassa {answer['frame']}\n  pyiso {py_hex}"
    doc, _ = iso8583.decode(unframe(bytes.fromhex(answer["frame"])), SPEC)
    if doc["t"] != message["mti"] or doc["h"] != message["envelope"]:
        return f"pyiso8583 read MTI {doc['t']}, envelope {doc['h']}"
    if from_pyiso(doc) != message["fields"]:
        return f"pyiso8583 read fields {from_pyiso(doc)} != {message['fields']}"
    return None


def control_detects_wrong_alignment(binary):
    """Negative control: with field 22 right-aligned (as a naive spec would have it), the
    harness must report a mismatch, or the checks above prove nothing."""
    wrong = dict(SPEC, **{"22": n_fixed(3)})
    body, _ = iso8583.encode(to_pyiso(BENCH_SALE), wrong)
    py_hex = hexstr(frame(body))
    [answer] = kassa(binary, [{"op": "decode", "frame": py_hex}])
    return check_kassa_decodes_pyiso(BENCH_SALE, py_hex, answer) is not None


def main():
    binary = sys.argv[1]
    py_hexes = []
    requests = []
    for message in MESSAGES:
        body, _ = iso8583.encode(to_pyiso(message), SPEC)
        py_hex = hexstr(frame(body))
        py_hexes.append(py_hex)
        requests.append({"op": "decode", "frame": py_hex})
        requests.append({"op": "encode", "mti": message["mti"], "envelope": message["envelope"],
                         "fields": message["fields"]})
    answers = kassa(binary, requests)

    passed = failed = 0
    for index, message in enumerate(MESSAGES):
        checks = [
            ("pyiso8583 -> kassa", check_kassa_decodes_pyiso(message, py_hexes[index], answers[2 * index])),
            ("kassa -> pyiso8583", check_pyiso_decodes_kassa(message, py_hexes[index], answers[2 * index + 1])),
        ]
        for direction, problem in checks:
            if problem is None:
                passed += 1
                print(f"ok   {message['mti']} {message['name']}: {direction}")
            else:
                failed += 1
                print(f"FAIL {message['mti']} {message['name']}: {direction}: {problem}")
    if control_detects_wrong_alignment(binary):
        passed += 1
        print("ok   control: a right-aligned field 22 is detected as a mismatch")
    else:
        failed += 1
        print("FAIL control: a right-aligned field 22 went unnoticed")
    print(f"iso8583 interop: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
