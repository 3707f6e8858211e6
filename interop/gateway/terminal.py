"""A UnionPay-style POS terminal written from docs/reference/iso8583.md with pyiso8583 and psec only.

It shares no code with the Rust client (crates/kassa-bench/src/client.rs): the wire format is
the pyiso8583 spec dictionary of interop/iso8583/kassa_spec.py, the crypto is psec's (3DES,
key check values, ISO 9564 format 0 PIN blocks, ANSI X9.19 retail MAC).

A request is a dict of logical field values (``n``/``z`` as digits, track separator ``=``, text
as str, ``b`` as uppercase hex), as in interop/iso8583/messages.py.
"""

import os
import socket
import sys
import warnings

# psec uses TripleDES from `cryptography`'s hazmat module, which warns that it is deprecated.
warnings.filterwarnings("ignore", message=".*TripleDES.*")

import iso8583  # noqa: E402
import psec  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "iso8583"))

from kassa_spec import SPEC, from_pyiso, to_pyiso  # noqa: E402

# TPDU 0x60 to NII 0001 from 0002, a UnionPay-style header; the answer swaps the TPDU addresses.
REQUEST_ENVELOPE = "6000010002" + "603100000000"
RESPONSE_ENVELOPE = "6000020001" + "603100000000"
ENVELOPE_BYTES = 11
MAC_BYTES = 8
SECURITY_CONTROL = "2600000000000000"
CURRENCY = "156"
IO_TIMEOUT_S = 30.0


class ProtocolError(Exception):
    """The host answered something a terminal cannot accept (not a decline: those are answers)."""


def retail_mac(key, data):
    """ANSI X9.19: DES-CBC under the left half, the last block through the right half, zero
    padding (psec's ISO 9797-1 method 1)."""
    return psec.mac.generate_retail_mac(key[:8], key[8:], data, padding=1)


def pin_block(pin_key, pin, pan):
    """ISO 9564 format 0 under the PIN key, as uppercase hex for field 52."""
    clear = psec.pinblock.encode_pinblock_iso_0(pin, pan)
    return psec.des.encrypt_tdes_ecb(pin_key, clear).hex().upper()


def carries_mac(mti):
    """0100, 0200, 0220, 0320, 0400 and 0500 requests carry field 64; 0800/0820 do not."""
    return not mti.startswith("08")


def response_mti(mti):
    """0200 and its repeat 0201 are both answered 0210."""
    return mti[:2] + str(int(mti[2]) + 1) + "0"


def encode(mti, fields, mac_key=None, envelope=REQUEST_ENVELOPE):
    """The frame (length prefix included). With `mac_key`, field 64 is the X9.19 MAC over the
    MAB: the packed bytes from the MTI up to field 64, the bitmap already showing bit 64."""
    fields = dict(fields)
    if mac_key is not None:
        fields["64"] = "00" * MAC_BYTES
    body, _ = iso8583.encode(to_pyiso({"mti": mti, "envelope": envelope, "fields": fields}), SPEC)
    body = bytes(body)
    if mac_key is not None:
        body = body[:-MAC_BYTES] + retail_mac(mac_key, body[ENVELOPE_BYTES:-MAC_BYTES])
    return len(body).to_bytes(2, "big") + body


class Answer:
    """A decoded response: `fields` as logical values, `raw` the frame as received."""

    def __init__(self, raw, envelope, mti, fields, mac_verified):
        self.raw = raw
        self.envelope = envelope
        self.mti = mti
        self.fields = fields
        self.mac_verified = mac_verified

    @property
    def code(self):
        return self.fields.get("39", "")

    def get(self, field, default=""):
        return self.fields.get(field, default)

    def __repr__(self):
        shown = {k: v for k, v in self.fields.items() if k not in ("35", "52", "62", "64")}
        return f"<{self.mti} {shown} mac={'ok' if self.mac_verified else 'none'}>"


class Keys:
    """Working keys unwrapped from field 62."""

    def __init__(self, pin_key, mac_key):
        self.pin_key = pin_key
        self.mac_key = mac_key


def unwrap_field_62(tmk, field_62_hex):
    """PIN key under TMK (16) + KCV (4) + MAC key under TMK (16) + KCV (4). Raises on a bad
    length or a check value that does not match."""
    data = bytes.fromhex(field_62_hex)
    if len(data) != 40:
        raise ProtocolError(f"field 62 is {len(data)} bytes, not 40")
    pin_key = psec.des.decrypt_tdes_ecb(tmk, data[0:16])
    mac_key = psec.des.decrypt_tdes_ecb(tmk, data[20:36])
    if psec.des.generate_kcv(pin_key, 4) != data[16:20]:
        raise ProtocolError("PIN key check value does not match")
    if psec.des.generate_kcv(mac_key, 4) != data[36:40]:
        raise ProtocolError("MAC key check value does not match")
    return Keys(pin_key, mac_key)


class Connection:
    """One TCP connection to the gateway: frames out, frames in."""

    def __init__(self, addr, timeout=IO_TIMEOUT_S):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _read_exact(self, count):
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def read_frame(self):
        """The next frame (length prefix included), or None when the host closed the connection."""
        prefix = self._read_exact(2)
        if prefix is None:
            return None
        body = self._read_exact(int.from_bytes(prefix, "big"))
        if body is None:
            raise ProtocolError("the host closed the connection mid-frame")
        return prefix + body

    def closed_by_host(self, timeout):
        """Whether the host closes the connection (EOF or reset) within `timeout` seconds
        without sending anything."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def decode(raw, mac_key):
    """Decodes a frame; raises ProtocolError when its MAC is present and does not verify."""
    body = raw[2:]
    doc, _ = iso8583.decode(bytearray(body), SPEC)
    fields = from_pyiso(doc)
    verified = False
    if "64" in fields:
        if mac_key is None:
            raise ProtocolError("a MAC on an answer while the terminal has no MAC key")
        expected = retail_mac(mac_key, body[ENVELOPE_BYTES:-MAC_BYTES])
        if expected.hex().upper() != fields["64"]:
            raise ProtocolError("the answer's MAC does not verify")
        verified = True
    return Answer(raw, doc["h"], doc["t"], fields, verified)


class Terminal:
    """A terminal: identity, TMK, working keys, open batch and STAN counter."""

    def __init__(self, addr, terminal_id, merchant_id, tmk_hex, operator="01"):
        self.addr = addr
        self.terminal_id = terminal_id
        self.merchant_id = merchant_id
        self.tmk = bytes.fromhex(tmk_hex)
        self.operator = operator
        self.keys = None
        self.batch = 0
        self.stan = 0
        self.conn = Connection(addr)

    def reconnect(self):
        self.conn.close()
        self.conn = Connection(self.addr)

    def next_stan(self):
        self.stan = self.stan % 999_999 + 1
        return f"{self.stan:06}"

    def base(self, type_code, network_code="000", batch=None):
        """Fields every request carries: 11, 41, 42, 60."""
        return {
            "11": self.next_stan(),
            "41": self.terminal_id,
            "42": self.merchant_id,
            "60": type_code + f"{self.batch if batch is None else batch:06}" + network_code,
        }

    def operator_field(self):
        return f"{self.operator:<3}"

    # -- the exchange -----------------------------------------------------------------------

    def frame(self, mti, fields, mac=None, mac_key=None):
        """The request frame; `mac` defaults to what the MTI requires, under the current keys
        unless `mac_key` is given."""
        if mac is None:
            mac = carries_mac(mti)
        key = None
        if mac:
            key = mac_key if mac_key is not None else (self.keys.mac_key if self.keys else bytes(16))
        return encode(mti, fields, key)

    def exchange_raw(self, frame, mti, fields):
        """Sends a frame, reads and checks the answer's MTI, envelope, STAN and TID."""
        self.conn.send(frame)
        raw = self.conn.read_frame()
        if raw is None:
            raise ProtocolError("the host closed the connection instead of answering")
        answer = decode(raw, self.keys.mac_key if self.keys else None)
        if answer.mti != response_mti(mti):
            raise ProtocolError(f"{mti} answered by {answer.mti}")
        if answer.envelope != RESPONSE_ENVELOPE:
            raise ProtocolError(f"envelope {answer.envelope} is not the swapped {REQUEST_ENVELOPE}")
        for field in ("11", "41"):
            if answer.get(field) != fields.get(field):
                raise ProtocolError(f"field {field} {answer.get(field)!r} != {fields.get(field)!r}")
        return answer

    def exchange(self, mti, fields, mac=None, mac_key=None):
        return self.exchange_raw(self.frame(mti, fields, mac, mac_key), mti, fields)

    # -- network management ---------------------------------------------------------------

    def sign_in(self):
        """0800 / 003: adopts the working keys of field 62 (check values verified) and 60.2."""
        fields = self.base("00", "003")
        fields["63"] = self.operator_field()
        answer = self.exchange("0800", fields)
        if answer.code == "00":
            self.keys = unwrap_field_62(self.tmk, answer.get("62"))
            self.batch = int(answer.get("60")[2:8])
        return answer

    def sign_out(self):
        return self.exchange("0820", self.base("00", "002"))

    def echo(self):
        return self.exchange("0820", self.base("00", "301"))

    def adopt_batch(self, answer):
        self.batch = int(answer.get("60")[2:8])

    # -- requests (built, not sent) -------------------------------------------------------

    def swiped(self, fields, card, pin=None):
        """Track 2 (35), entry mode 02x, and the PIN block when a PIN was entered."""
        fields["35"] = card.track2()
        fields["22"] = "021" if pin else "022"
        if pin:
            self._pin(fields, card, pin)
        return fields

    def keyed(self, fields, card, entry_mode, pin=None):
        """PAN (2) and expiry (14) for keyed and chip entry."""
        fields["2"] = card.pan
        fields["14"] = card.expiry
        fields["22"] = entry_mode[:2] + ("1" if pin else "2")
        if pin:
            self._pin(fields, card, pin)
        return fields

    def _pin(self, fields, card, pin):
        fields["26"] = "12"
        fields["52"] = pin_block(self.keys.pin_key, pin, card.pan)
        fields["53"] = SECURITY_CONTROL

    def financial(self, type_code, processing, amount_minor, condition="00"):
        fields = self.base(type_code)
        fields["3"] = processing
        if amount_minor is not None:
            fields["4"] = f"{amount_minor:012}"
        fields["25"] = condition
        fields["49"] = CURRENCY
        return fields

    def sale(self, card, amount_minor, pin="123456"):
        fields = self.financial("22", "000000", amount_minor)
        fields["63"] = self.operator_field()
        return self.swiped(fields, card, pin)

    def chip_sale(self, card, amount_minor, icc_hex, pin="123456"):
        fields = self.financial("22", "000000", amount_minor)
        fields["23"] = "001"
        fields["55"] = icc_hex
        return self.keyed(fields, card, "05", pin)

    def balance_inquiry(self, card, pin="123456"):
        fields = self.financial("01", "310000", None)
        del fields["49"]
        return self.swiped(fields, card, pin)

    def void(self, original, field_63=None, amount_minor=None, kind="23", condition="00"):
        """Void of a sale (23) or completion (21, condition 06): 37, 38, 61 of the original."""
        fields = self.financial(kind, "200000", original.amount if amount_minor is None else amount_minor, condition)
        fields["37"] = original.rrn
        fields["38"] = original.auth_code
        fields["61"] = f"{original.batch:06}{original.stan:06}"
        fields["63"] = field_63 if field_63 is not None else self.operator_field()
        return fields

    def refund(self, original, amount_minor, field_63=None, by_rrn_and_date_only=False):
        fields = self.financial("25", "200000", amount_minor)
        fields["37"] = original.rrn
        if by_rrn_and_date_only:
            fields["61"] = "000000" + "000000" + original.date
        else:
            fields["61"] = f"{original.batch:06}{original.stan:06}{original.date}"
        fields["63"] = field_63 if field_63 is not None else self.operator_field()
        return fields

    def preauth(self, card, amount_minor, pin="123456"):
        fields = self.financial("10", "030000", amount_minor, "06")
        return self.keyed(fields, card, "01", pin)

    def preauth_void(self, preauth, card):
        fields = self.financial("11", "200000", preauth.amount, "06")
        fields["37"] = preauth.rrn
        fields["38"] = preauth.auth_code
        fields["61"] = f"{preauth.batch:06}{preauth.stan:06}{preauth.date}"
        return self.keyed(fields, card, "01")

    def completion(self, preauth, card, amount_minor):
        fields = self.financial("20", "000000", amount_minor, "06")
        fields["37"] = preauth.rrn
        fields["38"] = preauth.auth_code
        fields["61"] = f"{preauth.batch:06}{preauth.stan:06}{preauth.date}"
        return self.keyed(fields, card, "01")

    def offline_sale(self, card, amount_minor, offline_auth_code):
        fields = self.financial("30", "000000", amount_minor)
        fields["38"] = offline_auth_code
        return self.keyed(fields, card, "07")

    @staticmethod
    def reversal_of(fields, reason="98"):
        """The original's 2, 3, 4, 11, 14, 22, 25, 41, 42, 49, 60, 61 and the reason in 39;
        never track data or a PIN block."""
        kept = ("2", "3", "4", "11", "14", "22", "25", "41", "42", "49", "60", "61")
        reversal = {k: v for k, v in fields.items() if k in kept}
        if "2" not in reversal and "35" in fields:
            reversal["2"] = fields["35"].split("=")[0]
        reversal["39"] = reason
        return reversal

    def settlement(self, totals):
        fields = self.base("00", "201")
        fields["48"] = totals
        fields["49"] = CURRENCY
        fields["63"] = self.operator_field()
        return fields

    def batch_item(self, txn):
        fields = self.base(txn.type_code, "201")
        fields.update({
            "2": txn.pan, "3": txn.processing, "4": f"{txn.amount:012}", "22": txn.entry_mode,
            "37": txn.rrn, "38": txn.auth_code, "61": f"{txn.batch:06}{txn.stan:06}",
        })
        return fields

    def batch_end(self, count):
        fields = self.base("00", "202")
        fields["48"] = f"{count:04}"
        return fields


class Card:
    def __init__(self, pan, expiry, service_code="101"):
        self.pan = pan
        self.expiry = expiry
        self.service_code = service_code

    def track2(self):
        return f"{self.pan}={self.expiry}{self.service_code}0000000000"


class Txn:
    """What the terminal keeps of an approved transaction, for voids, refunds and batch upload."""

    def __init__(self, fields, answer, batch, pan=""):
        self.rrn = answer.get("37")
        self.auth_code = answer.get("38")
        self.date = answer.get("13")
        self.stan = int(fields["11"])
        self.batch = batch
        self.amount = int(fields.get("4", "0"))
        self.pan = pan
        self.processing = fields.get("3", "")
        self.type_code = fields["60"][:2]
        self.entry_mode = fields.get("22", "012")
