"""Kassa's `/gateway.do` driven by the official Alipay Python SDK (`alipay-sdk-python`, module
`alipay.aop.api`): every method, the SDK building and signing each request with the demo app's
key and verifying each answer's signature with the gateway's public key
(`gateway_public_key_pem` of `<data-dir>/demo/credentials.json`).

Usage: python gateway_python.py GATEWAY_URL SIM_URL CREDENTIALS_JSON

Prints one line per check and `aggregator (python): N passed, M failed`; exits 1 on a failure.
The one adaptation (as in interop/wallet): the SDK's transport always connects to port 80 or 443,
so it is replaced by one that keeps the URL's port. Signing, verification, request building and
answer parsing stay the SDK's own.
"""

import http.client
import json
import sys
import time
import traceback
import urllib.parse
import urllib.request
import uuid

from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.domain.AlipayTradeCancelModel import AlipayTradeCancelModel
from alipay.aop.api.domain.AlipayTradeCloseModel import AlipayTradeCloseModel
from alipay.aop.api.domain.AlipayTradeFastpayRefundQueryModel import AlipayTradeFastpayRefundQueryModel
from alipay.aop.api.domain.AlipayTradePayModel import AlipayTradePayModel
from alipay.aop.api.domain.AlipayTradePrecreateModel import AlipayTradePrecreateModel
from alipay.aop.api.domain.AlipayTradeQueryModel import AlipayTradeQueryModel
from alipay.aop.api.domain.AlipayTradeRefundModel import AlipayTradeRefundModel
from alipay.aop.api.exception.Exception import ResponseException
from alipay.aop.api.request.AlipayTradeCancelRequest import AlipayTradeCancelRequest
from alipay.aop.api.request.AlipayTradeCloseRequest import AlipayTradeCloseRequest
from alipay.aop.api.request.AlipayTradeFastpayRefundQueryRequest import AlipayTradeFastpayRefundQueryRequest
from alipay.aop.api.request.AlipayTradePayRequest import AlipayTradePayRequest
from alipay.aop.api.request.AlipayTradePrecreateRequest import AlipayTradePrecreateRequest
from alipay.aop.api.request.AlipayTradeQueryRequest import AlipayTradeQueryRequest
from alipay.aop.api.request.AlipayTradeRefundRequest import AlipayTradeRefundRequest
from alipay.aop.api.response.AlipayTradeCancelResponse import AlipayTradeCancelResponse
from alipay.aop.api.response.AlipayTradeCloseResponse import AlipayTradeCloseResponse
from alipay.aop.api.response.AlipayTradeFastpayRefundQueryResponse import AlipayTradeFastpayRefundQueryResponse
from alipay.aop.api.response.AlipayTradePayResponse import AlipayTradePayResponse
from alipay.aop.api.response.AlipayTradePrecreateResponse import AlipayTradePrecreateResponse
from alipay.aop.api.response.AlipayTradeQueryResponse import AlipayTradeQueryResponse
from alipay.aop.api.response.AlipayTradeRefundResponse import AlipayTradeRefundResponse
from alipay.aop.api.util import WebUtils as alipay_web

# Payment codes of the wallet simulator (docs/reference/wallet-simulator.md): the prefix picks the wallet (25–30
# Alipay-style, 10–15 WeChat-style), the last two digits the payer.
ALIPAY_PAID, ALIPAY_CONFIRMS, ALIPAY_POOR, ALIPAY_NEVER = (
    "286912345678901201", "286912345678901202", "286912345678901203", "286912345678901204",
)
ALIPAY_INVALID = "286912345678901299"
WECHAT_PAID = "134567890123456701"
DEADLINE_S = 20.0


def _get_http_connection(url, query_string, timeout):
    """alipay-sdk-python's `get_http_connection`, keeping the URL's port."""
    parsed = urllib.parse.urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=timeout)
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path}?{query_string}", connection


alipay_web.get_http_connection = _get_http_connection


class Report:
    def __init__(self):
        self.passed, self.failed = 0, []

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok    {name}")
        else:
            self.failed.append(name)
            print(f"FAIL  {name}: {detail}")
        sys.stdout.flush()
        return ok

    def answer(self, name, response, code, sub_code=None, **fields):
        """The SDK's parsed answer has `code` (and `sub_code`) and the given fields."""
        got = {"code": response.code, "sub_code": response.sub_code}
        want = {"code": code, "sub_code": sub_code}
        for field, value in fields.items():
            got[field] = getattr(response, field)
            want[field] = value
        return self.check(name, got == want, f"got {got}, expected {want} ({response.sub_msg!r})")

    def section(self, name, function, *args):
        print(f"--- {name}")
        try:
            function(*args)
        except Exception as error:  # noqa: BLE001 - the report says why the section stopped
            self.check(f"{name}: runs to its end", False, f"{type(error).__name__}: {error}")
            traceback.print_exc(file=sys.stdout)


def pem_body(pem):
    """The base64 body of a PEM key, as the SDK takes keys."""
    return "".join(line.strip() for line in pem.splitlines() if line.strip() and not line.startswith("-----"))


def model(model_class, **fields):
    value = model_class()
    for name, field in fields.items():
        if not isinstance(getattr(model_class, name, None), property):
            raise AttributeError(f"{model_class.__name__} has no field {name}")
        setattr(value, name, field)
    return value


class Gateway:
    """The SDK pointed at Kassa: every call verified by the SDK with the gateway's key."""

    def __init__(self, url, credentials, public_key=None):
        config = AlipayClientConfig()
        config.server_url = url
        config.app_id = credentials["app_id"]
        config.app_private_key = pem_body(credentials["app_private_key_pem"])
        config.alipay_public_key = public_key or pem_body(credentials["gateway_public_key_pem"])
        config.sign_type = "RSA2"
        config.charset = "utf-8"
        config.timeout = 30
        self.client = DefaultAlipayClient(alipay_client_config=config)

    def call(self, request_class, response_class, biz_model, notify_url=None):
        request = request_class(biz_model=biz_model)
        if notify_url:
            request.notify_url = notify_url
        response = response_class()
        response.parse_response_content(self.client.execute(request))
        return response

    def pay(self, out_trade_no, code, amount, notify_url=None):
        fields = model(
            AlipayTradePayModel, out_trade_no=out_trade_no, scene="bar_code", auth_code=code,
            total_amount=amount, subject="interop 收款 {brace} & co",
        )
        return self.call(AlipayTradePayRequest, AlipayTradePayResponse, fields, notify_url)

    def precreate(self, out_trade_no, amount, timeout_express=None):
        fields = model(AlipayTradePrecreateModel, out_trade_no=out_trade_no, total_amount=amount, subject="interop 扫码")
        if timeout_express:
            fields.timeout_express = timeout_express
        return self.call(AlipayTradePrecreateRequest, AlipayTradePrecreateResponse, fields)

    def query(self, out_trade_no=None, trade_no=None):
        fields = model(AlipayTradeQueryModel)
        if out_trade_no:
            fields.out_trade_no = out_trade_no
        if trade_no:
            fields.trade_no = trade_no
        return self.call(AlipayTradeQueryRequest, AlipayTradeQueryResponse, fields)

    def refund(self, out_trade_no, amount, out_request_no):
        fields = model(
            AlipayTradeRefundModel, out_trade_no=out_trade_no, refund_amount=amount, out_request_no=out_request_no,
            refund_reason="interop 退款",
        )
        return self.call(AlipayTradeRefundRequest, AlipayTradeRefundResponse, fields)

    def refund_query(self, out_trade_no, out_request_no):
        fields = model(AlipayTradeFastpayRefundQueryModel, out_trade_no=out_trade_no, out_request_no=out_request_no)
        return self.call(AlipayTradeFastpayRefundQueryRequest, AlipayTradeFastpayRefundQueryResponse, fields)

    def cancel(self, out_trade_no):
        fields = model(AlipayTradeCancelModel, out_trade_no=out_trade_no)
        return self.call(AlipayTradeCancelRequest, AlipayTradeCancelResponse, fields)

    def close(self, out_trade_no):
        fields = model(AlipayTradeCloseModel, out_trade_no=out_trade_no)
        return self.call(AlipayTradeCloseRequest, AlipayTradeCloseResponse, fields)

    def query_until(self, out_trade_no, status):
        deadline = time.monotonic() + DEADLINE_S
        while True:
            response = self.query(out_trade_no)
            if response.trade_status == status or time.monotonic() > deadline:
                return response
            time.sleep(0.2)


def payer_pays(sim_url, qr_code, wallet):
    body = json.dumps({"qr_code": qr_code, "wallet": wallet}).encode()
    request = urllib.request.Request(f"{sim_url}/sim/v1/qr/pay", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def customer_codes(report, gateway, ref):
    paid_no = ref("P")
    paid = gateway.pay(paid_no, ALIPAY_PAID, "12.34", notify_url="http://127.0.0.1:9/notify")
    report.answer("pay: an Alipay-style code is paid", paid, "10000", None, total_amount="12.34", buyer_pay_amount="12.34")
    again = gateway.pay(paid_no, ALIPAY_PAID, "12.34")
    report.answer("pay: the same request again answers the same trade", again, "10000", None, trade_no=paid.trade_no)
    other = gateway.pay(paid_no, ALIPAY_PAID, "12.35")
    report.answer("pay: the same out_trade_no for another amount", other, "40004", "ACQ.TRADE_HAS_SUCCESS")
    wechat = gateway.pay(ref("P"), WECHAT_PAID, "8.00")
    report.answer("pay: a WeChat-style code through the same integration", wechat, "10000", None, total_amount="8.00")
    poor = gateway.pay(ref("P"), ALIPAY_POOR, "1.00")
    report.answer("pay: a payer without balance", poor, "40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH")
    invalid = gateway.pay(ref("P"), ALIPAY_INVALID, "1.00")
    report.answer("pay: an invalid code", invalid, "40004", "ACQ.PAYMENT_AUTH_CODE_INVALID")
    bad_amount = gateway.pay(ref("P"), ALIPAY_PAID, "1.001")
    report.answer("pay: an amount with three decimals", bad_amount, "40002", "isv.invalid-parameter")
    confirming_no = ref("P")
    confirming = gateway.pay(confirming_no, ALIPAY_CONFIRMS, "3.00")
    report.answer("pay: a payer confirming on the phone answers 10003 at once", confirming, "10003")
    success = gateway.query_until(confirming_no, "TRADE_SUCCESS")
    report.answer("query: then the trade succeeds", success, "10000", None, trade_status="TRADE_SUCCESS", total_amount="3.00")
    by_trade_no = gateway.query(trade_no=paid.trade_no)
    report.answer("query: by trade_no", by_trade_no, "10000", None, out_trade_no=paid_no, trade_status="TRADE_SUCCESS")
    missing = gateway.query(ref("X"))
    report.answer("query: an unknown trade", missing, "40004", "ACQ.TRADE_NOT_EXIST")

    refund = gateway.refund(paid_no, "2.34", "R1")
    report.answer("refund: part of a paid trade", refund, "10000", None, refund_fee="2.34")
    twice = gateway.refund(paid_no, "2.34", "R1")
    report.answer("refund: the same out_request_no refunds once", twice, "10000", None, refund_fee="2.34")
    too_much = gateway.refund(paid_no, "10.01", "R2")
    report.answer("refund: more than is left", too_much, "40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
    found = gateway.refund_query(paid_no, "R1")
    report.answer(
        "fastpay.refund.query: the refund", found, "10000", None,
        refund_amount="2.34", total_amount="12.34", refund_status="REFUND_SUCCESS",
    )

    waiting_no = ref("P")
    waiting = gateway.pay(waiting_no, ALIPAY_NEVER, "1.00")
    report.answer("pay: a payer who never confirms answers 10003", waiting, "10003")
    cancel = gateway.cancel(waiting_no)
    report.answer("cancel: a waiting trade is closed", cancel, "10000", None, action="close", retry_flag="N")
    closed = gateway.query_until(waiting_no, "TRADE_CLOSED")
    report.answer("query: the cancelled trade is closed", closed, "10000", None, trade_status="TRADE_CLOSED")
    refunded = gateway.cancel(wechat.out_trade_no)
    report.answer("cancel: a paid trade is refunded", refunded, "10000", None, action="refund", retry_flag="N")


def merchant_qr(report, gateway, sim_url, ref):
    paid_no = ref("Q")
    created = gateway.precreate(paid_no, "5.00", timeout_express="5m")
    report.answer("precreate: an aggregated code", created, "10000", None, out_trade_no=paid_no)
    report.check("precreate: the code is Kassa's", "/qr/v1/" in (created.qr_code or ""), created.qr_code)
    paid = payer_pays(sim_url, created.qr_code, "wechat")
    report.check("precreate: a WeChat-style payer pays the code", paid.get("paid") is True, paid)
    success = gateway.query_until(paid_no, "TRADE_SUCCESS")
    report.answer("query: the merchant QR is paid", success, "10000", None, trade_status="TRADE_SUCCESS", buyer_pay_amount="5.00")
    paid_close = gateway.close(paid_no)
    report.answer("close: a paid trade is not closed", paid_close, "40004", "ACQ.TRADE_STATUS_ERROR")

    open_no = ref("Q")
    gateway.precreate(open_no, "2.00")
    closed = gateway.close(open_no)
    report.answer("close: an unpaid merchant QR", closed, "10000", None, out_trade_no=open_no)
    status = gateway.query(open_no)
    report.answer("query: the closed trade", status, "10000", None, trade_status="TRADE_CLOSED")


def signatures(report, url, credentials, ref):
    stranger = Gateway(url, credentials, public_key=pem_body(credentials["app_private_key_pem"])[:64])
    try:
        stranger.query(ref("X"))
        report.check("verification: an answer checked with another key is refused by the SDK", False, "accepted")
    except (ResponseException, Exception):  # noqa: BLE001 - any refusal by the SDK is the point
        report.check("verification: an answer checked with another key is refused by the SDK", True)


def main():
    url, sim_url, credentials_path = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
    with open(credentials_path, encoding="utf-8") as file:
        credentials = json.load(file)
    run = uuid.uuid4().hex[:8]
    counter = iter(range(1, 10_000))

    def ref(prefix):
        return f"PY{prefix}{run}{next(counter):04d}"

    report = Report()
    gateway = Gateway(url, credentials)
    report.section("customer codes (alipay.trade.pay and what follows)", customer_codes, report, gateway, ref)
    report.section("merchant QR (alipay.trade.precreate)", merchant_qr, report, gateway, sim_url, ref)
    report.section("answer signatures", signatures, report, url, credentials, ref)
    print(f"aggregator (python): {report.passed} passed, {len(report.failed)} failed")
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
