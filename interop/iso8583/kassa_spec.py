"""The Kassa terminal protocol (docs/reference/iso8583.md) as a pyiso8583 spec dictionary.

Written from the spec, not from the Rust table, so that pyiso8583 is an independent second
implementation. How the packed-BCD dialect maps onto pyiso8583:

- `n` fields: ``data_enc="b"`` (BCD is a subset of hex) with ``len_count="nibbles"`` so lengths
  count digits; an odd fixed `n` field gets ``left_pad="0"`` (right-aligned), except field 22
  which UnionPay terminals send left-aligned: ``right_pad="0"``. Variable `n`/`z` fields are
  left-aligned: ``right_pad="0"``.
- LL / LLL prefixes: ``len_enc="bcd"`` with ``len_type`` 1 / 2 (bytes of BCD length).
- `b` fields: ``data_enc="b"``, values are uppercase hex strings.
- MTI: ``data_enc="b"`` (2 bytes BCD); bitmap: binary, 8 bytes.
- TPDU + header (11 bytes) are carried as pyiso8583's header ``h``; the 2-byte big-endian
  length prefix is added by :func:`frame` since pyiso8583 does no framing.

What pyiso8583 cannot express natively, handled here openly:

- Track data (`z`, fields 35/36) uses the nibble ``D`` for ``=``. pyiso8583 treats the field as
  hex, so :func:`to_pyiso` / :func:`from_pyiso` translate ``=`` <-> ``D``. pyiso8583 also does
  not reject other hex letters in `n`/`z` fields (Kassa does).
- Kassa accepts ``F`` as well as ``0`` for the pad nibble of odd variable `n`/`z` data;
  pyiso8583 accepts only the configured pad (``0``). Kassa writes ``0``, so the two agree on
  everything Kassa emits.
- Field 63 may carry GBK; the spec below uses ``gbk`` for it, which is a superset of ASCII.
"""

import binascii

TRACK_FIELDS = ("35", "36")
BINARY_FIELDS = ("52", "55", "62", "64")


def _n(max_len, len_type=0, left_pad=None, right_pad=None):
    field = {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": len_type,
        "max_len": max_len,
        "len_count": "nibbles",
    }
    if left_pad is not None:
        field["left_pad"] = left_pad
    if right_pad is not None:
        field["right_pad"] = right_pad
    return field


def n_fixed(digits):
    """Fixed n: right-aligned, left-padded with 0 when odd."""
    return _n(digits, left_pad="0" if digits % 2 else None)


def n_fixed_left(digits):
    """Fixed n, left-aligned (field 22)."""
    return _n(digits, right_pad="0")


def n_var(len_type, max_digits):
    """LL (len_type 1) or LLL (len_type 2) n/z, left-aligned, right-padded with 0."""
    return _n(max_digits, len_type=len_type, right_pad="0")


def text_fixed(length, encoding="ascii"):
    return {"data_enc": encoding, "len_enc": "bcd", "len_type": 0, "max_len": length}


def text_var(len_type, max_len, encoding="ascii"):
    return {"data_enc": encoding, "len_enc": "bcd", "len_type": len_type, "max_len": max_len}


def binary_fixed(length):
    return {"data_enc": "b", "len_enc": "bcd", "len_type": 0, "max_len": length}


def binary_var(len_type, max_len):
    return {"data_enc": "b", "len_enc": "bcd", "len_type": len_type, "max_len": max_len}


LL, LLL = 1, 2

SPEC = {
    "h": binary_fixed(11),  # TPDU (5) + header (6)
    "t": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 2},
    "p": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8},
    "1": binary_fixed(8),
    "2": n_var(LL, 19),
    "3": n_fixed(6),
    "4": n_fixed(12),
    "11": n_fixed(6),
    "12": n_fixed(6),
    "13": n_fixed(4),
    "14": n_fixed(4),
    "15": n_fixed(4),
    "22": n_fixed_left(3),
    "23": n_fixed(3),
    "25": n_fixed(2),
    "26": n_fixed(2),
    "32": n_var(LL, 11),
    "35": n_var(LL, 37),
    "36": n_var(LLL, 104),
    "37": text_fixed(12),
    "38": text_fixed(6),
    "39": text_fixed(2),
    "41": text_fixed(8),
    "42": text_fixed(15),
    "44": text_var(LL, 25),
    "48": n_var(LLL, 322),
    "49": text_fixed(3),
    "52": binary_fixed(8),
    "53": n_fixed(16),
    "54": text_var(LLL, 20),
    "55": binary_var(LLL, 255),
    "60": n_var(LLL, 17),
    "61": n_var(LLL, 29),
    "62": binary_var(LLL, 60),
    "63": text_var(LLL, 163, encoding="gbk"),
    "64": binary_fixed(8),
}


def to_pyiso(message):
    """Kassa's logical message {mti, envelope, fields} -> pyiso8583 decoded dict."""
    doc = {"h": message["envelope"], "t": message["mti"]}
    for field, value in message["fields"].items():
        doc[field] = value.replace("=", "D") if field in TRACK_FIELDS else value
    return doc


def from_pyiso(doc):
    """pyiso8583 decoded dict -> Kassa's logical fields (bitmaps, MTI and header left out)."""
    fields = {}
    for key, value in doc.items():
        if key in ("h", "t", "p", "1"):
            continue
        fields[key] = value.replace("D", "=") if key in TRACK_FIELDS else value
    return fields


def frame(body):
    """Prefixes the 2-byte big-endian length."""
    return len(body).to_bytes(2, "big") + bytes(body)


def unframe(data):
    length = int.from_bytes(data[:2], "big")
    if length != len(data) - 2:
        raise ValueError(f"frame announces {length} bytes, holds {len(data) - 2}")
    return data[2:]


def hexstr(data):
    return binascii.hexlify(data).decode().upper()
