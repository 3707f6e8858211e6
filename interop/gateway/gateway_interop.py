"""Every row of docs/reference/iso8583.md's transaction table against a live `kassa up`, driven by the Python
terminal of terminal.py (pyiso8583 + psec) over real TCP with real MACs and PIN blocks.

Usage: python gateway_interop.py PATH_TO_kassa

Prints one line per check and `gateway: N passed, M failed`; exits 1 on any failure. Checks
listed in KNOWN_FAILURES are printed as such and counted neither as passed nor as failed (one
that passes while listed is a failure: the list must be kept true).
"""

import os
import random
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import traceback

from host import KassaHost, Tms
from terminal import Card, Connection, ProtocolError, Terminal, Txn, decode, pin_block

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "iso8583"))
from messages import ICC  # noqa: E402

MERCHANT = "898100000000001"
APPROVED = Card("6222021234567890128", "3012")
LOW_BALANCE = Card("6222021234567890136", "3012")
EXPIRED = Card("6222021234567890144", "2001")
LOST = Card("6222021234567890151", "3012")
SILENT = Card("6222021234567890169", "3012")
CHIP = Card("6222021234567890177", "3012", service_code="201")
PIN = "123456"
WRONG_PIN = "654321"
SUPERVISOR, SUPERVISOR_INITIAL, SUPERVISOR_NEW = "00", "123456", "246810"
REFUND_PASSWORD = "123456"
ISSUER_TIMEOUT_S = 10.0
INCOMPLETE_FRAME_TIMEOUT_S = 10.0
# A new connection must complete its first frame within this (docs/reference/iso8583.md).
FIRST_FRAME_TIMEOUT_S = 5.0

# Check name -> why it fails. Printed as known failures, never counted as passed.
KNOWN_FAILURES = {}

PRESENT = object()


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = []
        self.known = []

    def check(self, name, ok, detail=""):
        if name in KNOWN_FAILURES:
            if ok:
                self.failed.append(name)
                print(f"FAIL  {name}: passes but is listed in KNOWN_FAILURES; remove it from the list")
            else:
                self.known.append(name)
                print(f"KNOWN FAILURE  {name}: {KNOWN_FAILURES[name]} ({detail})")
        elif ok:
            self.passed += 1
            print(f"ok    {name}")
        else:
            self.failed.append(name)
            print(f"FAIL  {name}: {detail}")
        sys.stdout.flush()
        return ok

    def expect(self, name, answer, code, mac=True, **fields):
        """`answer` has response code `code`, a verified MAC (`mac=True`) or none (`False`), and
        each field `f<N>` equal to the value given (or present, for PRESENT; or satisfying a
        callable)."""
        problems = []
        if answer.code != code:
            problems.append(f"39 is {answer.code!r}, expected {code!r}")
        if mac is not None and answer.mac_verified != mac:
            problems.append("no MAC on the answer" if mac else "a MAC on an answer that must carry none")
        for key, expected in fields.items():
            field = key[1:]
            value = answer.fields.get(field)
            if expected is PRESENT:
                good = bool(value)
            elif callable(expected):
                good = value is not None and expected(value)
            else:
                good = value == expected
            if not good:
                problems.append(f"field {field} is {value!r}")
        return self.check(name, not problems, "; ".join(problems) + f" in {answer!r}")


def digits(count):
    return lambda value: len(value) == count and value.isdigit()


def rrn_ok(value):
    return len(value) == 12 and value.strip() != ""


def auth_code_ok(value):
    return len(value) == 6 and value.strip() != ""


class Book:
    """The terminal's own view of its open batch: what it will settle and upload."""

    def __init__(self):
        self.debits = []
        self.credits = []

    def totals(self, settle_code="0", skew_count=0):
        debit = sum(txn.amount for txn in self.debits)
        credit = sum(txn.amount for txn in self.credits)
        domestic = f"{debit:012}{len(self.debits) + skew_count:03}{credit:012}{len(self.credits):03}"
        return domestic + settle_code + "0" * 31

    def remove(self, txn):
        self.debits = [t for t in self.debits if t.rrn != txn.rrn]


class Run:
    """A live host, its demo terminals, and the checks."""

    def __init__(self, host, report):
        self.host = host
        self.report = report
        credentials = host.credentials()
        self.terminals = credentials["terminals"]

    def terminal(self, terminal_id, operator="01"):
        return Terminal(self.host.iso, terminal_id, MERCHANT, self.terminals[terminal_id]["tmk"], operator)

    def section(self, name, function, *args):
        """Runs a group of checks; an exception (a closed connection, an unreadable answer) is
        one failed check and the run goes on."""
        print(f"--- {name}")
        try:
            function(*args)
        except (ProtocolError, OSError, ValueError, KeyError, TypeError) as error:
            self.report.check(f"{name}: runs to its end", False, f"{type(error).__name__}: {error}")
            traceback.print_exc(file=sys.stdout)


def approved_capture(report, name, t, book, fields, mti="0200", pan=None, **extra):
    """Sends a capture that must be approved, books it, and returns its Txn."""
    answer = t.exchange(mti, fields)
    checks = dict(f4=fields.get("4"), f37=rrn_ok, f38=auth_code_ok, f15=digits(4), f12=digits(6), f13=digits(4),
                  f63="CUP")
    checks.update(extra)
    checks = {key: value for key, value in checks.items() if value is not None}
    report.expect(name, answer, "00", **checks)
    txn = Txn(fields, answer, t.batch, pan or fields.get("2") or fields.get("35", "").split("=")[0])
    if answer.code == "00" and book is not None:
        book.debits.append(txn)
    return txn, answer


# -- the sections ------------------------------------------------------------------------------


def sign_in_and_echo(run, t1):
    report = run.report
    answer = t1.sign_in()
    report.expect("sign-in 0800/003: 0810 approved, field 62 keys whose check values verify", answer, "00",
                  mac=False, f62=lambda v: len(v) == 80, f60=lambda v: v[:2] == "00" and v[8:] == "003",
                  f12=digits(6), f13=digits(4))
    report.check("sign-in: 60.2 is the open batch the terminal adopts", t1.batch >= 1, f"batch {t1.batch}")
    first = t1.keys
    answer = t1.sign_in()
    report.check("sign-in again: new working keys", answer.code == "00" and t1.keys.mac_key != first.mac_key
                 and t1.keys.pin_key != first.pin_key, repr(answer))
    fields = t1.balance_inquiry(APPROVED)
    answer = t1.exchange("0200", fields, mac_key=first.mac_key)
    report.expect("keys of the previous sign-in stop working: A0, answer without MAC", answer, "A0", mac=False)
    answer = t1.echo()
    report.expect("echo test 0820/301: 0830 approved, no MAC", answer, "00", mac=False,
                  f60=lambda v: v.endswith("301"))


def balance(run, t1):
    answer = t1.exchange("0200", t1.balance_inquiry(LOW_BALANCE))
    run.report.expect("balance inquiry 310000: 54 = 10 02 156 C 10.00 of card ...0136", answer, "00",
                      f54="1002156C000000001000", f63="CUP", f3="310000")
    run.report.check("balance inquiry: no amount field 4 in the answer", "4" not in answer.fields, repr(answer))


def sales(run, t1, book):
    report = run.report
    approved_capture(report, "sale 000000, approved card ...0128: 00, RRN, auth code, 15, CUP", t1, book,
                     t1.sale(APPROVED, 10_000))
    answer = t1.exchange("0200", t1.sale(LOW_BALANCE, 2_000))
    report.expect("sale 20.00 on card ...0136 (balance 10.00): 51 with MAC", answer, "51", f37=rrn_ok)
    report.check("declined sale carries no authorisation code", "38" not in answer.fields, repr(answer))
    answer = t1.exchange("0200", t1.sale(EXPIRED, 100))
    report.expect("sale on expired card ...0144: 54", answer, "54")
    answer = t1.exchange("0200", t1.sale(LOST, 100))
    report.expect("sale on lost card ...0151: 41", answer, "41")
    approved_capture(report, "chip sale (22 = 051, 23, field 55) on card ...0177: 00", t1, book,
                     t1.chip_sale(CHIP, 2_345, ICC))
    # The wrong-PIN rule on the low-balance card, so the card the other checks use keeps its PIN.
    answer = t1.exchange("0200", t1.sale(LOW_BALANCE, 100, WRONG_PIN))
    report.expect("wrong PIN: 55", answer, "55")
    approved_capture(report, "a correct PIN after a wrong one: 00 (resets the count)", t1, book,
                     t1.sale(LOW_BALANCE, 100))
    codes = [t1.exchange("0200", t1.sale(LOW_BALANCE, 100, WRONG_PIN)).code for _ in range(3)]
    report.check("three wrong PINs in a row: 55, 55, then 75", codes == ["55", "55", "75"], f"{codes}")
    answer = t1.exchange("0200", t1.sale(LOW_BALANCE, 100))
    report.expect("the right PIN on a locked card: still 75", answer, "75")


def issuer_timeout(run, t1):
    """The silent issuer card, while another connection shows the incomplete-frame limit."""
    report = run.report
    closed = {}

    def incomplete_frame():
        conn = Connection(run.host.iso, timeout=INCOMPLETE_FRAME_TIMEOUT_S * 3)
        started = time.monotonic()
        conn.send(b"\x00\x40\x60\x00\x01")
        closed["closed"] = conn.closed_by_host(INCOMPLETE_FRAME_TIMEOUT_S * 3)
        closed["after_s"] = time.monotonic() - started
        conn.close()

    watcher = threading.Thread(target=incomplete_frame)
    watcher.start()
    fields = t1.sale(SILENT, 1_000)
    started = time.monotonic()
    answer = t1.exchange("0200", fields)
    elapsed = time.monotonic() - started
    report.expect("sale on silent-issuer card ...0169: 98", answer, "98")
    report.check(f"98 comes after the issuer timeout ({ISSUER_TIMEOUT_S:.0f} s), before the terminal's 60 s",
                 ISSUER_TIMEOUT_S - 1 <= elapsed < 60, f"after {elapsed:.1f} s")
    answer = t1.exchange("0400", Terminal.reversal_of(fields, "98"))
    report.expect("reversal of the timed-out sale: 00", answer, "00")
    repeat = t1.exchange("0201", fields)
    report.expect("retransmission of the timed-out sale after its reversal: 12", repeat, "12")
    watcher.join()
    report.check(f"an incomplete first frame is closed at the first-frame deadline ({FIRST_FRAME_TIMEOUT_S:.0f} s)",
                 closed.get("closed") and FIRST_FRAME_TIMEOUT_S - 1 <= closed["after_s"] < 20,
                 f"{closed}")


def voids(run, t1, book):
    report = run.report
    sale, _ = approved_capture(report, "sale to void: 00", t1, book, t1.sale(APPROVED, 5_000))
    answer = t1.exchange("0200", t1.void(sale, amount_minor=4_999))
    report.expect("void 200000/23 with another amount: 64", answer, "64")
    unknown = Txn({"11": "000999", "60": "23", "4": "5000"}, answer, t1.batch)
    unknown.rrn, unknown.auth_code = "999999999999", sale.auth_code
    answer = t1.exchange("0200", t1.void(unknown))
    report.expect("void of an unknown RRN: 25", answer, "25")
    fields = t1.void(sale)
    answer = t1.exchange("0200", fields)
    report.expect("void: 00, 38 = the sale's auth code, new RRN, amount echoed", answer, "00", f38=sale.auth_code,
                  f37=lambda v: rrn_ok(v) and v != sale.rrn, f4="000000005000", f63="CUP")
    if answer.code == "00":
        book.remove(sale)
    repeat = t1.exchange("0201", fields)
    report.expect("void retransmitted (0201): the same answer", repeat, "00", f37=answer.get("37"),
                  f38=answer.get("38"))
    answer = t1.exchange("0200", t1.void(sale))
    report.expect("voiding the voided sale: 12", answer, "12")


def refunds(run, t1, book):
    report = run.report
    sale, _ = approved_capture(report, "sale to refund (100.00): 00", t1, book, t1.sale(APPROVED, 10_000))
    for amount, code, label in [(3_000, "00", "30.00 of 100.00"), (5_000, "00", "50.00 more (80.00)"),
                                (3_000, "61", "30.00 more would be 110.00"), (2_000, "00", "the last 20.00"),
                                (1, "61", "0.01 beyond the captured amount")]:
        fields = t1.refund(sale, amount)
        answer = t1.exchange("0220", fields)
        extra = dict(f37=rrn_ok, f38=auth_code_ok, f4=f"{amount:012}", f63="CUP") if code == "00" else {}
        report.expect(f"refund 0220/25 {label}: {code}", answer, code, **extra)
        if answer.code == "00":
            book.credits.append(Txn(fields, answer, t1.batch, sale.pan))
    unknown = Txn({"11": "000999", "60": "25"}, answer, t1.batch)
    unknown.rrn, unknown.date = "999999999999", sale.date
    answer = t1.exchange("0220", t1.refund(unknown, 100))
    report.expect("refund of an unknown RRN: 25", answer, "25")


def preauths(run, t1, book):
    report = run.report
    fields = t1.preauth(APPROVED, 20_000)
    answer = t1.exchange("0100", fields)
    report.expect("pre-authorisation 0100/030000/06: 0110 approved, auth code", answer, "00", f37=rrn_ok,
                  f38=auth_code_ok, f4="000000020000")
    preauth = Txn(fields, answer, t1.batch)
    answer = t1.exchange("0200", t1.completion(preauth, APPROVED, 25_000))
    report.expect("completion above the held amount: 61", answer, "61")
    fields = t1.completion(preauth, APPROVED, 18_000)
    answer = t1.exchange("0200", fields)
    report.expect("pre-auth completion 0200/000000/06/20 of 180.00: 00", answer, "00", f37=rrn_ok,
                  f38=preauth.auth_code, f4="000000018000")
    completion = Txn(fields, answer, t1.batch, APPROVED.pan)
    if answer.code == "00":
        book.debits.append(completion)
    answer = t1.exchange("0200", t1.void(completion, kind="21", condition="06"))
    report.expect("completion void 0200/200000/06/21: 00", answer, "00", f4="000000018000")
    if answer.code == "00":
        book.remove(completion)
    answer = t1.exchange("0100", t1.preauth_void(preauth, APPROVED))
    report.expect("pre-auth void 0100/200000/06/11 after its completion was voided: 00", answer, "00",
                  f4="000000020000")
    answer = t1.exchange("0200", t1.completion(preauth, APPROVED, 1_000))
    report.expect("completion of a voided pre-authorisation: 12", answer, "12")
    fields = t1.preauth(APPROVED, 6_000)
    answer = t1.exchange("0100", fields)
    report.expect("second pre-authorisation: 00", answer, "00")
    second = Txn(fields, answer, t1.batch)
    fields = t1.completion(second, APPROVED, 6_000)
    answer = t1.exchange("0200", fields)
    report.expect("its completion for the full amount: 00", answer, "00")
    if answer.code == "00":
        book.debits.append(Txn(fields, answer, t1.batch, APPROVED.pan))
    answer = t1.exchange("0100", t1.preauth_void(second, APPROVED))
    report.expect("pre-auth void of a completed pre-authorisation: 12", answer, "12")


def offline(run, t1, book):
    approved_capture(run.report, "offline sale upload 0220/000000/30: 0230 approved", t1, book,
                     t1.offline_sale(APPROVED, 4_500, "OFF001"), mti="0220", f15=None, f38=PRESENT)


def reversals(run, t1, book):
    report = run.report
    fields = t1.sale(APPROVED, 1_234)
    sale, _ = approved_capture(report, "sale to reverse: 00", t1, book, fields)
    reversal = Terminal.reversal_of(fields, "98")
    report.check("a reversal carries no track data nor PIN block",
                 not any(f in reversal for f in ("35", "36", "52", "53", "26")), f"{sorted(reversal)}")
    answer = t1.exchange("0400", reversal)
    report.expect("reversal 0400 of an approved sale: 0410 approved", answer, "00", f4="000000001234")
    if answer.code == "00":
        book.remove(sale)
    report.expect("retransmission (0201) of the reversed sale: 12", t1.exchange("0201", fields), "12")
    report.expect("the reversed sale again (0200): 12", t1.exchange("0200", fields), "12")
    report.expect("void of the reversed sale: 12", t1.exchange("0200", t1.void(sale)), "12")
    report.expect("reversing it again: 00, nothing changes", t1.exchange("0401", reversal), "00")

    fields = t1.sale(APPROVED, 500)
    answer = t1.exchange("0400", Terminal.reversal_of(fields, "98"))
    report.expect("reversal before its original arrived: 00", answer, "00")
    report.expect("the original after its reversal: 12, never charged", t1.exchange("0200", fields), "12")
    report.expect("its retransmission (0201): 12", t1.exchange("0201", fields), "12")


def void_reversals(run, t1, book):
    """A void, a pre-auth void and a completion void are reversible: their reversal re-instates
    what they cancelled, once; the void retransmitted after it is 12."""
    report = run.report
    sale, _ = approved_capture(report, "sale whose void is reversed: 00", t1, book, t1.sale(APPROVED, 2_100))
    void = t1.void(sale)
    report.expect("its void: 00", t1.exchange("0200", void), "00")
    book.remove(sale)
    answer = t1.exchange("0400", Terminal.reversal_of(void, "98"))
    report.expect("reversal 0400 of the void (60.1 23, the void's STAN): 0410 approved", answer, "00",
                  f4="000000002100")
    if answer.code == "00":
        book.debits.append(sale)
    report.expect("reversing the void again (0401): 00, nothing changes",
                  t1.exchange("0401", Terminal.reversal_of(void, "98")), "00")
    report.expect("the void retransmitted after its reversal: 12", t1.exchange("0201", void), "12")
    report.expect("the sale stands again: voiding it again is 00", t1.exchange("0200", t1.void(sale)), "00")
    book.remove(sale)

    fields = t1.preauth(APPROVED, 3_000)
    answer = t1.exchange("0100", fields)
    report.expect("pre-authorisation whose void is reversed: 00", answer, "00")
    preauth = Txn(fields, answer, t1.batch)
    preauth_void = t1.preauth_void(preauth, APPROVED)
    report.expect("its pre-auth void: 00", t1.exchange("0100", preauth_void), "00")
    report.expect("reversal 0400 of the pre-auth void (60.1 11): 0410 approved",
                  t1.exchange("0400", Terminal.reversal_of(preauth_void, "98")), "00")
    report.expect("the pre-auth void retransmitted after its reversal: 12", t1.exchange("0101", preauth_void), "12")
    fields = t1.completion(preauth, APPROVED, 3_000)
    answer = t1.exchange("0200", fields)
    report.expect("the hold stands again: its completion 00", answer, "00", f4="000000003000")
    completion = Txn(fields, answer, t1.batch, APPROVED.pan)
    if answer.code == "00":
        book.debits.append(completion)

    completion_void = t1.void(completion, kind="21", condition="06")
    report.expect("completion void: 00", t1.exchange("0200", completion_void), "00")
    book.remove(completion)
    answer = t1.exchange("0400", Terminal.reversal_of(completion_void, "98"))
    report.expect("reversal 0400 of the completion void (60.1 21): 0410 approved", answer, "00")
    if answer.code == "00":
        book.debits.append(completion)
    report.expect("the completion void retransmitted after its reversal: 12",
                  t1.exchange("0201", completion_void), "12")
    report.expect("the completion stands again: completing its hold again is 12",
                  t1.exchange("0200", t1.completion(preauth, APPROVED, 1_000)), "12")
    corrections = database_rows(run, "SELECT kind FROM corrections WHERE source = 'void_reversal' ORDER BY id")
    report.check("the issuer re-authorisations the void reversals owe are proposed as corrections (sale, hold)",
                 corrections == [("issuer_reauthorisation",), ("issuer_reauthorisation",)], f"{corrections}")


def database_rows(run, sql, *args):
    """Rows of the host's SQLite database, read-only (the host keeps running)."""
    path = os.path.join(run.host.data_dir, "kassa.db")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        return db.execute(sql, args).fetchall()


def retransmissions(run, t1, book):
    report = run.report
    fields = t1.sale(APPROVED, 777)
    frame = t1.frame("0200", fields)
    first = t1.exchange_raw(frame, "0200", fields)
    report.expect("sale to retransmit: 00", first, "00")
    if first.code == "00":
        book.debits.append(Txn(fields, first, t1.batch, APPROVED.pan))
    again = t1.exchange_raw(frame, "0200", fields)
    report.check("the same request again: a byte-identical answer", again.raw == first.raw,
                 f"\n  first {first.raw.hex()}\n  again {again.raw.hex()}")
    repeat = t1.exchange("0201", fields)
    report.expect("retransmission 0201: the original RRN, auth code and code", repeat, "00", f37=first.get("37"),
                  f38=first.get("38"))
    other = dict(fields, **{"4": "000000000778"})
    report.expect("same identity (TID, batch, STAN, class) with another amount: 94", t1.exchange("0201", other), "94")
    t1.sign_in()
    fields = dict(fields, **{"52": pin_block(t1.keys.pin_key, PIN, APPROVED.pan)})
    repeat = t1.exchange("0201", fields)
    report.expect("retransmission under new working keys after a new sign-in: the original answer", repeat, "00",
                  f37=first.get("37"), f38=first.get("38"))


def wrong_mac(run, t1, book):
    report = run.report
    fields = t1.sale(APPROVED, 300)
    frame = bytearray(t1.frame("0200", fields))
    frame[-1] ^= 0x01
    answer = t1.exchange_raw(bytes(frame), "0200", fields)
    report.expect("a request with a wrong MAC: A0, not processed, no MAC on the answer", answer, "A0", mac=False)
    report.check("a request with a wrong MAC gets no RRN (not processed)", "37" not in answer.fields, repr(answer))
    answer = t1.exchange("0200", t1.sale(APPROVED, 300), mac_key=bytes.fromhex("1" * 32))
    report.expect("a request MACed under a key the host never gave: A0", answer, "A0", mac=False)
    approved_capture(report, "after A0 the working keys stay valid: next sale 00", t1, book, t1.sale(APPROVED, 300))


def unbalanced_settlement(run, t1, book):
    report = run.report
    batch = t1.batch
    answer = t1.exchange("0500", t1.settlement(book.totals(skew_count=1)))
    host = book.totals()[:30]
    report.expect("settlement 0500/201 with totals that differ: 0510 approved, settle code 2, host totals",
                  answer, "00", f48=settled(host, "2"), f60=f"00{batch:06}201", f15=digits(4))
    items = book.debits + book.credits
    codes = [t1.exchange("0320", t1.batch_item(txn)).code for txn in items]
    report.check(f"batch upload 0320/201: one item per transaction ({len(items)}), each 0330 approved",
                 codes == ["00"] * len(items), f"{codes}")
    if items:
        report.expect("a batch item retransmitted: 00 again", t1.exchange("0320", t1.batch_item(items[0])), "00")
        other = dict(t1.batch_item(items[0]), **{"4": f"{items[0].amount + 1:012}"})
        report.expect("a batch item's STAN with another amount: 94", t1.exchange("0320", other), "94")
    # One the host never saw: the terminal's journal has a sale the host has no record of.
    phantom = Txn({"11": "999990", "60": "22", "4": "1500", "3": "000000", "22": "022"}, answer, batch, APPROVED.pan)
    phantom.rrn, phantom.auth_code = "000000999990", "999990"
    report.expect("batch upload of an item the host does not have: 0330 approved",
                  t1.exchange("0320", t1.batch_item(phantom)), "00")
    end = t1.batch_end(len(items) + 1)
    answer = t1.exchange("0320", end)
    report.expect("end of batch upload 0320/202: 0330 approved, 60.2 = the next batch", answer, "00",
                  f60=f"00{batch + 1:06}202")
    report.expect("the end retransmitted: the same next batch", t1.exchange("0320", end), "00",
                  f60=f"00{batch + 1:06}202")
    differences = database_rows(
        run, "SELECT kind, stan, terminal_amount_minor, host_amount_minor, status FROM corrections "
        "WHERE source = 'batch_upload' AND terminal_id = ? AND batch_no = ?", t1.terminal_id, batch)
    report.check("the difference is recorded once as a correction to review (on the terminal only, 15.00)",
                 differences == [("on_terminal_only", 999990, 1500, None, "proposed")], f"{differences}")
    t1.adopt_batch(answer)
    closed = t1.sale(APPROVED, 100)
    closed["60"] = f"22{batch:06}000"
    report.expect("a financial request for the closed batch: 77", t1.exchange("0200", closed), "77")
    return items


def next_batch(run, t1, old_book):
    report = run.report
    book = Book()
    batch = t1.batch
    old = [txn for txn in old_book.debits if txn.amount == 10_000 and txn.processing == "000000"][0]
    for amount, code, label, by_date in [(4_000, "00", "40.00 of a sale of the settled batch", False),
                                         (1_000, "00", "10.00 more, 61.1 and 61.2 zeros (RRN and date)", True),
                                         (6_000, "61", "60.00 more would exceed the sale", False)]:
        fields = t1.refund(old, amount, by_rrn_and_date_only=by_date)
        answer = t1.exchange("0220", fields)
        report.expect(f"refund across batches, {label}: {code}", answer, code)
        if answer.code == "00":
            book.credits.append(Txn(fields, answer, t1.batch, old.pan))
    report.expect("void of a sale of the settled batch: 12", t1.exchange("0200", t1.void(old)), "12")
    approved_capture(report, "sale in the new batch: 00", t1, book, t1.sale(APPROVED, 300))
    answer = t1.exchange("0500", t1.settlement(book.totals()))
    report.expect("balanced settlement: 0510 approved, settle code 1, 60.2 = the next batch", answer, "00",
                  f48=settled(book.totals(), "1"), f60=f"00{batch + 1:06}201")
    t1.adopt_batch(answer)
    closed = t1.sale(APPROVED, 100)
    closed["60"] = f"22{batch:06}000"
    report.expect("a sale for the batch the settlement closed: 77", t1.exchange("0200", closed), "77")
    approved_capture(report, "sale in the batch the settlement opened: 00", t1, Book(), t1.sale(APPROVED, 100))


def sign_out(run):
    report = run.report
    t2 = run.terminal("10000002")
    t2.batch = 1
    answer = t2.exchange("0200", _unsigned_sale(t2))
    report.expect("a sale before any sign-in: 77 without MAC", answer, "77", mac=False)
    report.expect("sign-in of 10000002: 00", t2.sign_in(), "00", mac=False)
    approved_capture(report, "10000002 sale after sign-in: 00", t2, None, t2.sale(APPROVED, 100))
    answer = t2.sign_out()
    report.expect("sign-out 0820/002: 0830 approved", answer, "00", mac=False, f60=lambda v: v.endswith("002"))
    answer = t2.exchange("0200", t2.sale(APPROVED, 100))
    report.expect("a sale after sign-out under the old keys: 77, no MAC", answer, "77", mac=False)
    report.expect("echo after sign-out: 00", t2.echo(), "00", mac=False)
    report.expect("sign-in again after sign-out: 00", t2.sign_in(), "00", mac=False)
    approved_capture(report, "sale after signing in again: 00", t2, None, t2.sale(APPROVED, 100))
    t2.conn.close()


def _unsigned_sale(t):
    """A sale from a terminal with no working keys: track 2 without PIN, a MAC under zeros."""
    fields = t.financial("22", "000000", 100)
    fields["35"] = APPROVED.track2()
    fields["22"] = "022"
    return fields


def refund_approvals(run):
    report = run.report
    t3 = run.terminal("10000003", operator=SUPERVISOR)
    tms = Tms(run.host.http, "10000003", run.terminals["10000003"]["tms_credential"])
    status, body = tms.call("/tms/v1/login", body={"operator": SUPERVISOR, "password": SUPERVISOR_INITIAL})
    report.check("TMS: supervisor login on 10000003 (signed request)", status == 200, f"{status} {body}")
    session = body["session"]
    status, body = tms.call("/tms/v1/password", session, {"old": SUPERVISOR_INITIAL, "new": SUPERVISOR_NEW})
    report.check("TMS: the initial password changed", status == 200, f"{status} {body}")

    def approval(kind, rrn, amount):
        status, body = tms.call("/tms/v1/refund-approvals", session,
                                {"refund_password": REFUND_PASSWORD, "kind": kind, "original_rrn": rrn,
                                 "amount": amount})
        report.check(f"TMS issues a {kind} approval", status == 200 and isinstance(body, dict)
                     and 0 < len(body.get("approval", "")) <= 40, f"{status} {body}")
        return body.get("approval", "") if isinstance(body, dict) else ""

    report.expect("sign-in of host-enforced 10000003: 00", t3.sign_in(), "00", mac=False)
    sale, _ = approved_capture(report, "10000003 sale: 00", t3, None, t3.sale(APPROVED, 3_000))
    report.expect("void on 10000003 without an approval in 63: 58",
                  t3.exchange("0200", t3.void(sale, "00 ")), "58")
    report.expect("void on 10000003 with a made-up approval: 58",
                  t3.exchange("0200", t3.void(sale, "00 0123456789abcdef0123456789abcdef")), "58")
    token = approval("void", sale.rrn, 3_000)
    fields = t3.void(sale, f"00 {token}")
    answer = t3.exchange("0200", fields)
    report.expect("void on 10000003 with the TMS approval: 00", answer, "00")
    report.expect("its retransmission: the same answer", t3.exchange("0201", fields), "00", f37=answer.get("37"))
    other, _ = approved_capture(report, "10000003 second sale: 00", t3, None, t3.sale(APPROVED, 2_500))
    report.expect("void with an approval already used (for another sale): 58",
                  t3.exchange("0200", t3.void(other, f"00 {token}")), "58")
    sale, _ = approved_capture(report, "10000003 sale to refund: 00", t3, None, t3.sale(APPROVED, 5_000))
    token = approval("refund", sale.rrn, 1_000)
    report.expect("refund on 10000003 without an approval: 58", t3.exchange("0220", t3.refund(sale, 1_000, "00 ")),
                  "58")
    report.expect("refund with an approval for another amount: 58",
                  t3.exchange("0220", t3.refund(sale, 2_000, f"00 {token}")), "58")
    report.expect("refund on 10000003 with the TMS approval: 00",
                  t3.exchange("0220", t3.refund(sale, 1_000, f"00 {token}")), "00")
    report.expect("the same approval reused for another refund: 58",
                  t3.exchange("0220", t3.refund(sale, 1_000, f"00 {token}")), "58")
    t3.conn.close()


def hostile(run, t1):
    report = run.report
    rng = random.Random(8583)
    iso = run.host.iso

    def fresh_echo(label):
        t = run.terminal("10000001")
        t.batch = t1.batch
        try:
            report.expect(f"after {label}: a new connection still gets answers (echo 00)", t.echo(), "00", mac=False)
        finally:
            t.conn.close()

    conn = Connection(iso)
    conn.send(b"\x00\x40" + bytes(rng.randrange(256) for _ in range(64)))
    raw = None
    try:
        raw = conn.read_frame()
    except ProtocolError:
        pass
    answer = decode_plain(raw)
    report.check("64 random bytes in a frame: closed without an answer, or answered 30",
                 raw is None or (answer is not None and answer.code == "30"), f"{answer!r}")
    conn.close()
    fresh_echo("random bytes")

    conn = Connection(iso)
    conn.send(bytes(rng.randrange(256) for _ in range(300)))
    half_close(conn)
    report.check("300 random bytes then end of stream: the connection is closed", conn.closed_by_host(15),
                 "still open")
    conn.close()

    fields = t1.sale(APPROVED, 100)
    frame = t1.frame("0200", fields)
    conn = Connection(iso)
    conn.send(frame[:-20])
    half_close(conn)
    report.check("a truncated frame (fewer bytes than its length prefix), then end of stream: closed, nothing "
                 "half-processed", conn.closed_by_host(15), "still open")
    conn.close()

    body = frame[2:-12]
    conn = Connection(iso)
    conn.send(len(body).to_bytes(2, "big") + body)
    raw = conn.read_frame()
    answer = None
    if raw is not None:
        answer = decode(raw, None)
    report.check("a frame whose message is cut short (fields 63, 64 missing): 30 with field 41",
                 answer is not None and answer.code == "30" and answer.get("41") == "10000001"
                 and answer.mti == "0210", f"{answer!r}")
    conn.close()

    conn = Connection(iso)
    conn.send(b"\x10\x01" + frame[2:])
    report.check("a length prefix over 4096 (4097): closed", conn.closed_by_host(15), "still open")
    conn.close()
    conn = Connection(iso)
    conn.send(b"\xff\xff" + b"\x60" * 100)
    report.check("length prefix 65535: closed without waiting for the bytes", conn.closed_by_host(5), "still open")
    conn.close()

    fields = t1.sale(APPROVED, 100)
    frame = bytearray(t1.frame("0200", fields))
    frame[2 + 11 + 2] |= 0x80
    conn = Connection(iso)
    conn.send(bytes(frame))
    raw = conn.read_frame()
    answer = decode_plain(raw)
    report.check("bit 1 (secondary bitmap) set: answered 30 or closed",
                 raw is None or (answer is not None and answer.code == "30"), f"{answer!r}")
    conn.close()

    t = Terminal(iso, "99999999", MERCHANT, "00" * 16)
    t.batch = 1
    answer = t.exchange("0200", _unsigned_sale(t))
    report.expect("an unknown terminal: 97 without MAC", answer, "97", mac=False)
    t.conn.close()

    fresh_echo("the hostile inputs")
    t1.reconnect()
    approved_capture(report, "after the hostile inputs: a sale with MAC and PIN on a new connection: 00", t1,
                     None, t1.sale(APPROVED, 100))
    report.check("the host process is still running", run.host.alive(), "kassa exited")


def half_close(conn):
    """Ends our side of the stream; the host may have closed the connection already."""
    try:
        conn.sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def settled(totals, settle_code):
    """Field 48 of a 0510: the host's domestic totals with `settle_code`, then the foreign part,
    all zeros but its settle code, which the spec leaves open ("the same 31 digits for foreign
    cards (zeros)"): zero or the domestic code are both accepted."""
    return lambda value: value[:31] == totals[:30] + settle_code and value[31:61] == "0" * 30 and value[61] in (
        "0", settle_code)


def decode_plain(raw):
    if raw is None:
        return None
    try:
        return decode(raw, None)
    except (ProtocolError, ValueError, KeyError) as error:
        print(f"      (unreadable answer: {error})")
        return None


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    report = Report()
    data_dir = tempfile.mkdtemp(prefix="kassa-gateway-interop-")
    host = KassaHost(sys.argv[1], data_dir)
    started = time.monotonic()
    keep = False
    try:
        host.start()
        print(f"kassa up: iso {host.iso[0]}:{host.iso[1]}, http {host.http[0]}:{host.http[1]}, data {data_dir}")
        run = Run(host, report)
        t1 = run.terminal("10000001")
        book = Book()
        run.section("sign-in, keys, echo", sign_in_and_echo, run, t1)
        run.section("balance inquiry", balance, run, t1)
        run.section("sales and the test cards", sales, run, t1, book)
        run.section("issuer timeout", issuer_timeout, run, t1)
        run.section("void", voids, run, t1, book)
        run.section("refund", refunds, run, t1, book)
        run.section("pre-authorisation", preauths, run, t1, book)
        run.section("offline upload", offline, run, t1, book)
        run.section("reversal", reversals, run, t1, book)
        run.section("reversal of voids", void_reversals, run, t1, book)
        run.section("retransmission", retransmissions, run, t1, book)
        run.section("MAC", wrong_mac, run, t1, book)
        run.section("unbalanced settlement and batch upload", unbalanced_settlement, run, t1, book)
        run.section("refunds across batches, balanced settlement", next_batch, run, t1, book)
        run.section("sign-out", sign_out, run)
        run.section("refund approvals (field 63) on 10000003", refund_approvals, run)
        run.section("hostile inputs", hostile, run, t1)
        t1.conn.close()
        status = host.stop()
        report.check("kassa shuts down cleanly on SIGTERM", status == 0, f"exit status {status}")
    except Exception:  # noqa: BLE001 - the report must say why the run stopped
        report.check("the run completes", False, traceback.format_exc())
    finally:
        host.stop()
        keep = bool(report.failed or report.known)
        if report.failed:
            print(f"--- last lines of the host's log ({host.log_path}):\n{host.log_tail()}")
        if not keep or os.environ.get("CI"):
            shutil.rmtree(data_dir, ignore_errors=True)
    print(f"({time.monotonic() - started:.0f} s)")
    if report.known:
        print(f"known failures (not counted as passed): {len(report.known)}: " + ", ".join(report.known))
    print(f"gateway: {report.passed} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
