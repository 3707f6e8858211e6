"""One request and one response of every message kind of docs/reference/iso8583.md's transaction table, as
logical values: `n`/`z` as digits (track separator `=`), text as str, `b` as uppercase hex.

Shared by interop.py (live cross-check), bench.py and gen_vectors.py (the Rust test vectors).
"""

REQUEST_ENVELOPE = "6000010002" + "603100000000"  # TPDU 0x60, dest 0001, src 0002; header
RESPONSE_ENVELOPE = "6000020001" + "603100000000"  # TPDU swapped, header echoed

TID = "10000001"
MID = "898100000000001"
PAN = "6222021234567890128"
TRACK2 = PAN + "=30121010000000000"
TRACK3 = "996222021234567890128=1561560000000000000003000000114000049=000000000000=000000000000=000000000000000"
PIN_BLOCK = "0123456789ABCDEF"
SECURITY = "2600000000000000"
MAC = "1A2B3C4D5E6F7081"
ICC = "9F2608A1B2C3D4E5F607189F2701809F101307010103A0A000010A010000000000AABBCCDD9F3704123456789F36020001950500000000009A032604309C01009F02060000000001005F2A0201568202580084000950"  # noqa: E501
ICC_RESPONSE = "910A0102030405060708303072089F180400000001860A84DA00000400000000"
WORKING_KEYS = "00112233445566778899AABBCCDDEEFF" + "82E13665" + "FFEEDDCCBBAA99887766554433221100" + "0A1B2C3D"
SETTLE_REQUEST = "000000012345003000000000100001" + "0" + "0" * 31
SETTLE_RESPONSE = "000000012345003000000000100001" + "1" + "0" * 31


def request(name, mti, fields):
    return {"name": name, "mti": mti, "envelope": REQUEST_ENVELOPE, "fields": fields}


def response(name, mti, fields):
    return {"name": name, "mti": mti, "envelope": RESPONSE_ENVELOPE, "fields": fields}


def f60(kind, batch, network):
    return kind + batch + network


def approved(request_fields, extra):
    """Response fields: the echoed ones plus 12, 13, 37, 39 and whatever the kind adds."""
    echoed = {k: v for k, v in request_fields.items() if k in ("3", "4", "11", "41", "42", "49", "60")}
    echoed.update({"12": "142530", "13": "0430", "37": "260430000123", "39": "00"})
    echoed.update(extra)
    return dict(sorted(echoed.items(), key=lambda item: int(item[0])))


SIGN_IN = {"11": "000001", "41": TID, "42": MID, "60": f60("00", "000001", "003"), "63": "01 "}
SIGN_OUT = {"11": "000002", "41": TID, "42": MID, "60": f60("00", "000001", "002")}
ECHO = {"11": "000003", "41": TID, "42": MID, "60": f60("00", "000001", "301")}
BALANCE = {
    "3": "310000", "11": "000004", "22": "021", "25": "00", "26": "12", "35": TRACK2, "36": TRACK3,
    "41": TID, "42": MID, "49": "156", "52": PIN_BLOCK, "53": SECURITY,
    "60": f60("01", "000001", "000"), "64": MAC,
}
SALE = {
    "2": PAN, "3": "000000", "4": "000000000100", "11": "000005", "14": "3012", "22": "021",
    "25": "00", "26": "12", "35": TRACK2, "41": TID, "42": MID, "49": "156", "52": PIN_BLOCK,
    "53": SECURITY, "60": f60("22", "000001", "000"), "63": "01 ", "64": MAC,
}
CHIP_SALE = {
    "2": "6222021234567890177", "3": "000000", "4": "000000000100", "11": "000006", "14": "3012",
    "22": "052", "23": "001", "25": "00", "41": TID, "42": MID, "49": "156", "55": ICC,
    "60": f60("22", "000001", "000"), "64": MAC,
}
VOID = {
    "3": "200000", "4": "000000000100", "11": "000007", "25": "00", "37": "260430000123",
    "38": "A1B2C3", "41": TID, "42": MID, "49": "156", "60": f60("23", "000001", "000"),
    "61": "000001000005", "63": "01 ", "64": MAC,
}
REFUND = {
    "3": "200000", "4": "000000000050", "11": "000008", "25": "00", "37": "260430000123",
    "41": "10000003", "42": MID, "49": "156", "60": f60("25", "000001", "000"),
    "61": "0000000000000430", "63": "01 TMS-REFUND-APPROVAL-7F3A9C", "64": MAC,
}
PREAUTH = {
    "2": PAN, "3": "030000", "4": "000000010000", "11": "000009", "14": "3012", "22": "011",
    "25": "06", "26": "12", "41": TID, "42": MID, "49": "156", "52": PIN_BLOCK, "53": SECURITY,
    "60": f60("10", "000001", "000"), "64": MAC,
}
PREAUTH_VOID = {
    "2": PAN, "3": "200000", "4": "000000010000", "11": "000010", "14": "3012", "22": "012",
    "25": "06", "38": "P00001", "41": TID, "42": MID, "49": "156", "60": f60("11", "000001", "000"),
    "61": "0000010000090430", "64": MAC,
}
COMPLETION = {
    "2": PAN, "3": "000000", "4": "000000009000", "11": "000011", "14": "3012", "22": "012",
    "25": "06", "38": "P00001", "41": TID, "42": MID, "49": "156", "60": f60("20", "000001", "000"),
    "61": "0000010000090430", "64": MAC,
}
COMPLETION_VOID = {
    "3": "200000", "4": "000000009000", "11": "000012", "25": "06", "37": "260430000124",
    "38": "P00001", "41": TID, "42": MID, "49": "156", "60": f60("21", "000001", "000"),
    "61": "000001000011", "64": MAC,
}
OFFLINE = {
    "2": PAN, "3": "000000", "4": "000000004500", "11": "000013", "14": "3012", "22": "072",
    "25": "00", "38": "OFF001", "41": TID, "42": MID, "49": "156", "60": f60("30", "000001", "000"),
    "64": MAC,
}
REVERSAL = {
    "2": PAN, "3": "000000", "4": "000000000100", "11": "000005", "14": "3012", "22": "021",
    "25": "00", "39": "98", "41": TID, "42": MID, "49": "156", "60": f60("22", "000001", "000"),
    "64": MAC,
}
SETTLEMENT = {
    "11": "000014", "41": TID, "42": MID, "48": SETTLE_REQUEST, "49": "156",
    "60": f60("00", "000001", "201"), "63": "01 ", "64": MAC,
}
BATCH_ITEM = {
    "2": PAN, "3": "000000", "4": "000000000100", "11": "000015", "22": "021",
    "37": "260430000123", "38": "A1B2C3", "41": TID, "42": MID, "60": f60("22", "000001", "201"),
    "61": "000001000005", "64": MAC,
}
BATCH_END = {
    "11": "000016", "41": TID, "42": MID, "48": "0012", "60": f60("00", "000001", "202"), "64": MAC,
}

MESSAGES = [
    request("sign-in", "0800", SIGN_IN),
    response("sign-in response", "0810", approved(SIGN_IN, {"32": "01020000", "62": WORKING_KEYS})),
    request("sign-out", "0820", SIGN_OUT),
    response("sign-out response", "0830", approved(SIGN_OUT, {})),
    request("echo test", "0820", ECHO),
    response("echo test response", "0830", approved(ECHO, {})),
    request("balance inquiry", "0200", BALANCE),
    response("balance inquiry response", "0210",
             approved(BALANCE, {"54": "1002156C000000012345", "63": "CUP", "64": MAC})),
    request("sale", "0200", SALE),
    response("sale response", "0210", approved(SALE, {
        "2": PAN, "14": "3012", "15": "0430", "25": "00", "38": "A1B2C3",
        "44": "0102000001020000", "63": "CUP", "64": MAC})),
    request("chip sale", "0200", CHIP_SALE),
    response("chip sale response", "0210", approved(CHIP_SALE, {
        "15": "0430", "23": "001", "38": "A1B2C4", "55": ICC_RESPONSE, "63": "CUP", "64": MAC})),
    response("sale declined", "0210", approved(SALE, {"39": "51", "64": MAC})),
    request("void", "0200", VOID),
    response("void response", "0210", approved(VOID, {"38": "A1B2C3", "63": "CUP", "64": MAC})),
    request("refund", "0220", REFUND),
    response("refund response", "0230", approved(REFUND, {"38": "R00001", "63": "CUP", "64": MAC})),
    request("pre-authorisation", "0100", PREAUTH),
    response("pre-authorisation response", "0110",
             approved(PREAUTH, {"15": "0430", "38": "P00001", "63": "CUP", "64": MAC})),
    request("pre-auth void", "0100", PREAUTH_VOID),
    response("pre-auth void response", "0110", approved(PREAUTH_VOID, {"38": "P00001", "64": MAC})),
    request("pre-auth completion", "0200", COMPLETION),
    response("pre-auth completion response", "0210",
             approved(COMPLETION, {"38": "P00001", "63": "CUP", "64": MAC})),
    request("completion void", "0200", COMPLETION_VOID),
    response("completion void response", "0210", approved(COMPLETION_VOID, {"64": MAC})),
    request("offline sale upload", "0220", OFFLINE),
    response("offline sale upload response", "0230", approved(OFFLINE, {"64": MAC})),
    request("reversal", "0400", REVERSAL),
    response("reversal response", "0410", approved(REVERSAL, {"64": MAC})),
    request("settlement", "0500", SETTLEMENT),
    response("settlement response", "0510",
             approved(SETTLEMENT, {"15": "0430", "48": SETTLE_RESPONSE, "60": f60("00", "000002", "201"),
                                   "64": MAC})),
    request("batch upload item", "0320", BATCH_ITEM),
    response("batch upload item response", "0330", approved(BATCH_ITEM, {"64": MAC})),
    request("batch upload end", "0320", BATCH_END),
    response("batch upload end response", "0330",
             approved(BATCH_END, {"60": f60("00", "000002", "202"), "64": MAC})),
]

# The benchmark message: a typical swiped 0200 sale with PIN.
BENCH_SALE = MESSAGES[8]
