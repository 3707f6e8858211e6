"""The wallet simulator (`kassa sim`) driven by wallet SDKs we did not write: the official Alipay
Python SDK (`alipay-sdk-python`, module `alipay.aop.api`) for the Alipay-style OpenAPI gateway,
and `wechatpy` for the WeChat-Pay-style v2 XML API. Their notifications are received by a small
HTTP server here and verified with the SDKs' own signature helpers.

Usage: python wallet_interop.py PATH_TO_kassa

Prints one line per check and `wallet: N passed, M failed`; exits 1 on any failure. Checks
listed in KNOWN_FAILURES are printed as such and counted neither as passed nor as failed (one
that passes while listed is a failure: the list must be kept true).

What the SDKs need adapting to here, and nothing else (signing, verification, request building
and answer parsing stay the SDKs' own):
- alipay-sdk-python's transport (`WebUtils.get_http_connection`) always connects to port 80 (and
  fails building the URL when it has a port); it is replaced by one that keeps the URL's port.
- wechatpy 1.8.18's API methods send no `sign_type` (MD5 then) and never check an answer's
  signature: `sign_type=HMAC-SHA256` is added to each request's fields before wechatpy signs
  them (wechatpy signs HMAC-SHA256 itself when it sees that field), and every signed answer's
  signature is checked here by code of our own, cross-checked with wechatpy's HMAC helper.
"""

import datetime
import hashlib
import hmac
import http.client
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import urllib.parse
import uuid

import xmltodict
from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.domain.AlipayDataDataserviceBillDownloadurlQueryModel import (
    AlipayDataDataserviceBillDownloadurlQueryModel,
)
from alipay.aop.api.domain.AlipayTradeCancelModel import AlipayTradeCancelModel
from alipay.aop.api.domain.AlipayTradeCloseModel import AlipayTradeCloseModel
from alipay.aop.api.domain.AlipayTradeFastpayRefundQueryModel import AlipayTradeFastpayRefundQueryModel
from alipay.aop.api.domain.AlipayTradePayModel import AlipayTradePayModel
from alipay.aop.api.domain.AlipayTradePrecreateModel import AlipayTradePrecreateModel
from alipay.aop.api.domain.AlipayTradeQueryModel import AlipayTradeQueryModel
from alipay.aop.api.domain.AlipayTradeRefundModel import AlipayTradeRefundModel
from alipay.aop.api.exception.Exception import ResponseException
from alipay.aop.api.request.AlipayDataDataserviceBillDownloadurlQueryRequest import (
    AlipayDataDataserviceBillDownloadurlQueryRequest,
)
from alipay.aop.api.request.AlipayTradeCancelRequest import AlipayTradeCancelRequest
from alipay.aop.api.request.AlipayTradeCloseRequest import AlipayTradeCloseRequest
from alipay.aop.api.request.AlipayTradeFastpayRefundQueryRequest import AlipayTradeFastpayRefundQueryRequest
from alipay.aop.api.request.AlipayTradePayRequest import AlipayTradePayRequest
from alipay.aop.api.request.AlipayTradePrecreateRequest import AlipayTradePrecreateRequest
from alipay.aop.api.request.AlipayTradeQueryRequest import AlipayTradeQueryRequest
from alipay.aop.api.request.AlipayTradeRefundRequest import AlipayTradeRefundRequest
from alipay.aop.api.response.AlipayDataDataserviceBillDownloadurlQueryResponse import (
    AlipayDataDataserviceBillDownloadurlQueryResponse,
)
from alipay.aop.api.response.AlipayTradeCancelResponse import AlipayTradeCancelResponse
from alipay.aop.api.response.AlipayTradeCloseResponse import AlipayTradeCloseResponse
from alipay.aop.api.response.AlipayTradeFastpayRefundQueryResponse import AlipayTradeFastpayRefundQueryResponse
from alipay.aop.api.response.AlipayTradePayResponse import AlipayTradePayResponse
from alipay.aop.api.response.AlipayTradePrecreateResponse import AlipayTradePrecreateResponse
from alipay.aop.api.response.AlipayTradeQueryResponse import AlipayTradeQueryResponse
from alipay.aop.api.response.AlipayTradeRefundResponse import AlipayTradeRefundResponse
from alipay.aop.api.util import WebUtils as alipay_web
from alipay.aop.api.util.SignatureUtils import get_sign_content, verify_with_rsa
from Crypto.PublicKey import RSA
from wechatpy.exceptions import WeChatPayException
from wechatpy.pay import WeChatPay
from wechatpy.pay.utils import calculate_signature_hmac

from simhost import Receiver, SimHost

# Payment codes (crates/kassa-wallet-sim/src/lib.rs): 18 digits, the prefix picks the wallet
# (25–30 Alipay-style, 10–15 WeChat-style), the last two digits the payer: 01 paid at once,
# 03 balance too low, 04 never confirms.
ALIPAY_PAID, ALIPAY_POOR, ALIPAY_NEVER = "286912345678901201", "286912345678901203", "286912345678901204"
ALIPAY_INVALID = "286912345678901299"
WECHAT_PAID, WECHAT_POOR, WECHAT_NEVER = "134567890123456701", "134567890123456703", "134567890123456704"
WECHAT_INVALID = "134567890123456799"
# A business day before any trade of the run (the simulator's books start empty).
NO_TRADE_DAY = "2020-01-02"
NOTIFY_DEADLINE_S = 15.0
# How long an acknowledged notification must stay quiet: twice the simulator's first retry delay.
ACK_QUIET_S = 2.5
WECHAT_SUCCESS_XML = b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"

# Check name -> why it fails. Printed as known failures, never counted as passed.
KNOWN_FAILURES = {}


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

    def equal(self, name, actual, expected):
        return self.check(name, actual == expected, f"got {actual!r}, expected {expected!r}")

    def section(self, name, function, *args):
        """Runs a group of checks; an exception is one failed check and the run goes on."""
        print(f"--- {name}")
        try:
            function(*args)
        except Exception as error:  # noqa: BLE001 - the report must say why the section stopped
            self.check(f"{name}: runs to its end", False, f"{type(error).__name__}: {error}")
            traceback.print_exc(file=sys.stdout)


class References:
    """Unique merchant references for this run (≤ 32 characters, WeChat's limit)."""

    def __init__(self):
        self.run = uuid.uuid4().hex[:10]
        self.count = 0

    def __call__(self, prefix):
        self.count += 1
        return f"{prefix}{self.run}{self.count:04d}"


# --- Alipay: the official SDK ------------------------------------------------------------------


def _get_http_connection(url, query_string, timeout):
    """alipay-sdk-python's `get_http_connection`, keeping the URL's port (the SDK's own always
    connects to 80 or 443, and adds an int port to a str)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "https":
        connection = http.client.HTTPSConnection(parsed.hostname, parsed.port or 443, timeout=timeout)
    else:
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=timeout)
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path}?{query_string}", connection


alipay_web.get_http_connection = _get_http_connection
ALIPAY_CLIENT_MODULE = sys.modules[DefaultAlipayClient.__module__]


def pem_body(pem):
    """The base64 body of a PEM key, as Alipay's console shows keys and the SDK takes them."""
    return "".join(line.strip() for line in pem.splitlines() if line.strip() and not line.startswith("-----"))


def alipay_client(credentials, public_key=None, private_key=None):
    config = AlipayClientConfig()
    config.server_url = credentials["gateway_url"]
    config.app_id = credentials["app_id"]
    config.app_private_key = private_key or pem_body(credentials["app_private_key_pem"])
    config.alipay_public_key = public_key or pem_body(credentials["wallet_public_key_pem"])
    config.sign_type = "RSA2"
    config.charset = "utf-8"
    config.timeout = 15
    return DefaultAlipayClient(alipay_client_config=config)


def model(model_class, **fields):
    value = model_class()
    for name, field in fields.items():
        if not isinstance(getattr(model_class, name, None), property):
            raise AttributeError(f"{model_class.__name__} has no field {name}")
        setattr(value, name, field)
    return value


class Alipay:
    """The SDK's calls, answered as (the SDK's response object, the answer as a dict)."""

    def __init__(self, client):
        self.client = client

    def call(self, request_class, response_class, biz_model, notify_url=None):
        request = request_class(biz_model=biz_model)
        if notify_url:
            request.notify_url = notify_url
        content = self.client.execute(request)
        response = response_class()
        response.parse_response_content(content)
        return response, json.loads(content)

    def pay(self, out_trade_no, code, amount, subject="interop 收款 & co", notify_url=None):
        fields = model(
            AlipayTradePayModel, out_trade_no=out_trade_no, scene="bar_code", auth_code=code,
            total_amount=amount, subject=subject,
        )
        return self.call(AlipayTradePayRequest, AlipayTradePayResponse, fields, notify_url)

    def precreate(self, out_trade_no, amount, notify_url=None, subject="interop 扫码"):
        fields = model(AlipayTradePrecreateModel, out_trade_no=out_trade_no, total_amount=amount, subject=subject)
        return self.call(AlipayTradePrecreateRequest, AlipayTradePrecreateResponse, fields, notify_url)

    def query(self, out_trade_no):
        fields = model(AlipayTradeQueryModel, out_trade_no=out_trade_no)
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

    def bill_url(self, day):
        fields = model(AlipayDataDataserviceBillDownloadurlQueryModel, bill_type="trade", bill_date=day)
        return self.call(
            AlipayDataDataserviceBillDownloadurlQueryRequest, AlipayDataDataserviceBillDownloadurlQueryResponse, fields,
        )


def future_day():
    """The day after tomorrow in Shanghai (UTC+8): still to come whatever the hour."""
    shanghai = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=8)
    return (shanghai + datetime.timedelta(days=2)).strftime("%Y-%m-%d")


def alipay_day(text):
    """`yyyy-MM-dd HH:mm:ss` (Shanghai) -> `yyyy-MM-dd`."""
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").strftime("%Y-%m-%d")


def refused(report, name, response, code, sub_code):
    return report.check(
        name, response.code == code and response.sub_code == sub_code,
        f"code {response.code!r} sub_code {response.sub_code!r} ({response.sub_msg!r}), expected {code} {sub_code}",
    )


def alipay_payments(report, run):
    ali, refs = run.alipay, run.refs
    out = refs("PYA")
    response, answer = ali.pay(out, ALIPAY_PAID, "12.34")
    report.check(
        "alipay.trade.pay …01: 10000, signature verified by the SDK",
        response.code == "10000" and response.is_success(), f"{answer}",
    )
    report.equal("alipay.trade.pay …01: out_trade_no", response.out_trade_no, out)
    report.equal("alipay.trade.pay …01: total_amount", response.total_amount, "12.34")
    report.equal("alipay.trade.pay …01: receipt_amount", response.receipt_amount, "12.34")
    report.check("alipay.trade.pay …01: trade_no", bool(response.trade_no), f"{answer}")
    report.check("alipay.trade.pay …01: gmt_payment", bool(response.gmt_payment), f"{answer}")
    run.alipay_paid[out] = alipay_day(response.gmt_payment)
    run.alipay_trade = (out, response.trade_no)

    response, answer = ali.query(out)
    report.equal("alipay.trade.query of it: TRADE_SUCCESS", response.trade_status, "TRADE_SUCCESS")
    report.check(
        "alipay.trade.query of it: trade_no, total_amount, send_pay_date",
        response.trade_no == run.alipay_trade[1] and response.total_amount == "12.34" and bool(response.send_pay_date),
        f"{answer}",
    )

    response, _ = ali.pay(out, ALIPAY_PAID, "12.34")
    report.check(
        "alipay.trade.pay again, same out_trade_no: not paid twice",
        response.code == "10000" and response.trade_no == run.alipay_trade[1]
        or response.sub_code == "ACQ.TRADE_HAS_SUCCESS",
        f"code {response.code} sub_code {response.sub_code} trade_no {response.trade_no}",
    )

    response, _ = ali.pay(refs("PYA"), ALIPAY_POOR, "5.00")
    refused(report, "alipay.trade.pay …03: 40004 ACQ.BUYER_BALANCE_NOT_ENOUGH", response, "40004",
            "ACQ.BUYER_BALANCE_NOT_ENOUGH")
    response, _ = ali.pay(refs("PYA"), ALIPAY_INVALID, "5.00")
    refused(report, "alipay.trade.pay, invalid code: 40004 ACQ.PAYMENT_AUTH_CODE_INVALID", response, "40004",
            "ACQ.PAYMENT_AUTH_CODE_INVALID")
    response, _ = ali.pay(refs("PYA"), WECHAT_PAID, "5.00")
    refused(report, "alipay.trade.pay, a WeChat code: 40004 ACQ.PAYMENT_AUTH_CODE_INVALID", response, "40004",
            "ACQ.PAYMENT_AUTH_CODE_INVALID")
    response, _ = ali.query(refs("PYA"))
    refused(report, "alipay.trade.query, unknown trade: 40004 ACQ.TRADE_NOT_EXIST", response, "40004",
            "ACQ.TRADE_NOT_EXIST")

    # SDK users often give amounts as JSON numbers; the gateway takes 0.5 and 7 as yuan.
    number_out = refs("PYA")
    response, answer = ali.pay(number_out, ALIPAY_PAID, 7.5)
    report.check(
        "alipay.trade.pay with total_amount as a JSON number 7.5: paid 7.50",
        response.code == "10000" and response.total_amount == "7.50", f"{answer}",
    )
    if response.code == "10000":
        run.alipay_paid[number_out] = alipay_day(response.gmt_payment)

    response, answer = ali.pay(refs("PYA"), ALIPAY_PAID, "0.001")
    report.check(
        "alipay.trade.pay with total_amount 0.001: 40002 invalid parameter, signed",
        response.code == "40002", f"{answer}",
    )


def alipay_refunds(report, run):
    ali, refs = run.alipay, run.refs
    out, trade_no = run.alipay_trade
    first, second, third = refs("PYR"), refs("PYR"), refs("PYR")
    response, answer = ali.refund(out, "5.00", first)
    report.check("alipay.trade.refund 5.00 of 12.34: 10000, fund_change Y, refund_fee 5.00",
                 response.code == "10000" and response.fund_change == "Y" and response.refund_fee == "5.00",
                 f"{answer}")
    report.equal("alipay.trade.refund: trade_no", response.trade_no, trade_no)
    response, answer = ali.refund(out, "5.00", first)
    report.check("alipay.trade.refund retried (same out_request_no): 10000, fund_change N, refund_fee 5.00",
                 response.code == "10000" and response.fund_change == "N" and response.refund_fee == "5.00",
                 f"{answer}")
    response, answer = ali.refund(out, "7.35", second)
    refused(report, "alipay.trade.refund 7.35 more (0.01 over the total): 40004 ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
            response, "40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
    response, answer = ali.refund(out, "7.34", third)
    report.check("alipay.trade.refund the remaining 7.34: 10000, refund_fee 12.34",
                 response.code == "10000" and response.refund_fee == "12.34", f"{answer}")

    response, answer = ali.refund_query(out, first)
    report.check(
        "alipay.trade.fastpay.refund.query: refund_amount 5.00, total_amount 12.34, REFUND_SUCCESS",
        response.code == "10000" and response.refund_amount == "5.00" and response.total_amount == "12.34"
        and response.refund_status == "REFUND_SUCCESS",
        f"{answer}",
    )
    report.equal("alipay.trade.fastpay.refund.query: out_request_no", response.out_request_no, first)
    response, answer = ali.refund_query(out, refs("PYR"))
    report.check("alipay.trade.fastpay.refund.query, no such refund: 10000 without refund_amount",
                 response.code == "10000" and not response.refund_amount, f"{answer}")
    response, answer = ali.query(out)
    report.check("alipay.trade.query after the full refund: TRADE_SUCCESS or TRADE_CLOSED",
                 response.trade_status in ("TRADE_SUCCESS", "TRADE_CLOSED"), f"{answer}")


def alipay_cancel_close(report, run):
    ali, refs = run.alipay, run.refs
    out = refs("PYC")
    response, answer = ali.pay(out, ALIPAY_NEVER, "3.00")
    report.check("alipay.trade.pay …04: 10003 waiting for the payer",
                 response.code == "10003", f"{answer}")
    response, answer = ali.query(out)
    report.equal("alipay.trade.query of it: WAIT_BUYER_PAY", response.trade_status, "WAIT_BUYER_PAY")
    response, answer = ali.cancel(out)
    report.check("alipay.trade.cancel: 10000, action close, retry_flag N",
                 response.code == "10000" and response.action == "close" and response.retry_flag == "N",
                 f"{answer}")
    response, answer = ali.query(out)
    report.equal("alipay.trade.query after the cancel: TRADE_CLOSED", response.trade_status, "TRADE_CLOSED")
    paid_out = refs("PYC")
    ali.pay(paid_out, ALIPAY_PAID, "2.50")
    response, answer = ali.cancel(paid_out)
    report.check("alipay.trade.cancel of a paid trade: 10000, action refund",
                 response.code == "10000" and response.action == "refund", f"{answer}")
    response, answer = ali.query(paid_out)
    report.equal("alipay.trade.query after it: TRADE_CLOSED", response.trade_status, "TRADE_CLOSED")
    response, _ = ali.cancel(refs("PYC"))
    refused(report, "alipay.trade.cancel, unknown trade: 40004 ACQ.TRADE_NOT_EXIST", response, "40004",
            "ACQ.TRADE_NOT_EXIST")

    out = refs("PYK")
    response, answer = ali.precreate(out, "4.56")
    report.check("alipay.trade.precreate: 10000 with qr_code", response.code == "10000" and bool(response.qr_code),
                 f"{answer}")
    qr_code = response.qr_code
    response, answer = ali.close(out)
    report.check("alipay.trade.close: 10000", response.code == "10000", f"{answer}")
    response, answer = ali.query(out)
    report.equal("alipay.trade.query after the close: TRADE_CLOSED", response.trade_status, "TRADE_CLOSED")
    status, paid = run.sim.post_json("/sim/v1/qr/pay", {"qr_code": qr_code, "wallet": "alipay"})
    report.check("a payer cannot pay the closed order's qr_code",
                 status == 200 and isinstance(paid, dict) and paid.get("paid") is False, f"{status} {paid}")
    paid_out = next(iter(run.alipay_paid))
    response, _ = ali.close(paid_out)
    report.check("alipay.trade.close of a paid trade: 40004 refused", response.code == "40004",
                 f"code {response.code} sub_code {response.sub_code}")


def alipay_signatures(report, run):
    credentials = run.credentials["alipay"]
    other = run.credentials["alipay"]["app_public_key_pem"]  # a valid RSA key, but not the wallet's
    wrong = Alipay(alipay_client(credentials, public_key=pem_body(other)))
    try:
        wrong.query(run.alipay_trade[0])
        report.check("the SDK refuses an answer under another alipay_public_key", False, "no exception")
    except ResponseException as error:
        report.check("the SDK refuses an answer under another alipay_public_key",
                     "sign verify failed" in str(error), str(error)[:200])

    original = ALIPAY_CLIENT_MODULE.do_post

    def tampered(*args, **kwargs):
        return original(*args, **kwargs).replace(b'"12.34"', b'"12.35"', 1)

    ALIPAY_CLIENT_MODULE.do_post = tampered
    try:
        run.alipay.query(run.alipay_trade[0])
        report.check("the SDK refuses an answer whose total_amount was altered in transit", False, "no exception")
    except ResponseException as error:
        report.check("the SDK refuses an answer whose total_amount was altered in transit",
                     "sign verify failed" in str(error), str(error)[:200])
    finally:
        ALIPAY_CLIENT_MODULE.do_post = original

    # The simulator checks the SDK's request signature: a request signed with another key is
    # refused (40002 isv.invalid-signature, an answer the SDK still verifies).
    foreign = pem_body(run.foreign_private_key_pem)
    response, answer = Alipay(alipay_client(credentials, private_key=foreign)).query(run.alipay_trade[0])
    refused(report, "a request signed with another app key: 40002 isv.invalid-signature", response, "40002",
            "isv.invalid-signature")


def alipay_bill(report, run):
    day = next(iter(run.alipay_paid.values()))
    response, answer = run.alipay.bill_url(day)
    url = response.bill_download_url
    report.check("alipay.data.dataservice.bill.downloadurl.query: 10000 with bill_download_url",
                 response.code == "10000" and bool(url), f"{answer}")
    parsed = urllib.parse.urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=15)
    connection.request("GET", parsed.path + ("?" + parsed.query if parsed.query else ""))
    answer = connection.getresponse()
    bill = answer.read().decode("utf-8", errors="replace")
    connection.close()
    report.check("GET bill_download_url: 200", answer.status == 200, f"{answer.status} {bill[:200]}")
    for out, paid_day in run.alipay_paid.items():
        if paid_day == day:
            report.check(f"the bill of {day} has {out}", out in bill, bill[:300])
    for name, empty_day in (("a day without trades", NO_TRADE_DAY), ("a day still to come", future_day())):
        response, answer = run.alipay.bill_url(empty_day)
        refused(report, f"alipay.data.dataservice.bill.downloadurl.query, {name}: 40004 isp.bill_not_exist",
                response, "40004", "isp.bill_not_exist")


def alipay_notification(report, run, receiver):
    ali, refs = run.alipay, run.refs
    path = "/notify/alipay"
    # The first attempt is answered `fail`: the simulator must retry until it reads `success`.
    receiver.answer(path, (200, "text/plain", b"fail"), (200, "text/plain", b"success"))
    out = refs("PYN")
    response, answer = ali.precreate(out, "8.88", notify_url=receiver.url(path))
    report.check("alipay.trade.precreate with notify_url: qr_code", response.code == "10000" and bool(response.qr_code),
                 f"{answer}")
    status, paid = run.sim.post_json("/sim/v1/qr/pay", {"qr_code": response.qr_code, "wallet": "alipay"})
    report.check("POST /sim/v1/qr/pay of the wallet's qr_code: paid",
                 status == 200 and isinstance(paid, dict) and paid.get("paid") is True
                 and paid.get("out_trade_no") == out, f"{status} {paid}")
    received = receiver.next(path, NOTIFY_DEADLINE_S)
    if not report.check("an Alipay notification arrives", received is not None, "none within the deadline"):
        return
    content_type, body = received
    report.check("it is a form post", content_type.startswith("application/x-www-form-urlencoded"), content_type)
    params = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    sign = params.pop("sign", "")
    sign_type = params.pop("sign_type", "")
    public_key = pem_body(run.credentials["alipay"]["wallet_public_key_pem"])
    content = get_sign_content(params).encode("utf-8")
    report.check("its signature verifies with the SDK (sign and sign_type left out, sorted, RSA2)",
                 sign_type == "RSA2" and verify_rsa(public_key, content, sign), f"sign_type {sign_type!r}")
    altered = dict(params, total_amount="8.89")
    report.check("an altered notification does not verify",
                 not verify_rsa(public_key, get_sign_content(altered).encode("utf-8"), sign))
    report.check(
        "it says TRADE_SUCCESS for the order, 8.88, this app",
        params.get("trade_status") == "TRADE_SUCCESS" and params.get("out_trade_no") == out
        and params.get("total_amount") == "8.88" and params.get("app_id") == run.credentials["alipay"]["app_id"]
        and params.get("notify_type") == "trade_status_sync" and bool(params.get("trade_no")),
        f"{params}",
    )
    retried = receiver.next(path, NOTIFY_DEADLINE_S)
    report.check("answered `fail`, it is sent again", retried is not None, "no retry within the deadline")
    if retried is not None:
        again = dict(urllib.parse.parse_qsl(retried[1].decode("utf-8")))
        report.equal("the retry is the same notification (notify_id)", again.get("notify_id"), params.get("notify_id"))
        run.acknowledged[path] = time.monotonic()
    response, _ = ali.query(out)
    report.equal("alipay.trade.query of the scanned order: TRADE_SUCCESS", response.trade_status, "TRADE_SUCCESS")
    if params.get("gmt_payment"):
        run.alipay_paid[out] = alipay_day(params["gmt_payment"])


def verify_rsa(public_key, content, sign):
    try:
        return verify_with_rsa(public_key, content, sign)
    except Exception:  # noqa: BLE001 - rsa.verify raises VerificationError on a mismatch
        return False


# --- WeChat Pay: wechatpy ----------------------------------------------------------------------


def wechat_sign(fields, api_key):
    """WeChat Pay v2 HMAC-SHA256: non-empty fields but `sign`, sorted, `k=v&…&key=<API key>`,
    uppercase hex. Our own code, independent of Kassa's and of wechatpy's."""
    text = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "sign" and v not in (None, ""))
    text += "&key=" + api_key
    return hmac.new(api_key.encode(), text.encode("utf-8"), hashlib.sha256).hexdigest().upper()


class AnswerSignatureError(Exception):
    pass


class SimWeChatPay(WeChatPay):
    """wechatpy's client, at the simulator's API base, signing HMAC-SHA256, every signed answer's
    signature checked (wechatpy 1.8.18 does neither)."""

    def __init__(self, api_base_url, appid, api_key, mch_id):
        super().__init__(appid, api_key, mch_id, timeout=15)
        self.API_BASE_URL = api_base_url
        self.answers_verified = 0
        self.last_answer = None

    def _request(self, method, url_or_endpoint, **kwargs):
        if isinstance(kwargs.get("data"), dict):
            kwargs["data"].setdefault("sign_type", "HMAC-SHA256")
        return super()._request(method, url_or_endpoint, **kwargs)

    def _handle_result(self, res):
        res.encoding = "utf-8"
        self.last_answer = res.text
        try:
            fields = dict(xmltodict.parse(res.text)["xml"])
        except Exception:  # noqa: BLE001 - not XML: the bill's CSV, handled by wechatpy
            fields = None
        if fields is not None and fields.get("return_code") == "SUCCESS":
            ours = wechat_sign(fields, self.api_key)
            theirs = calculate_signature_hmac({k: v for k, v in fields.items() if k != "sign"}, self.api_key)
            if ours != theirs:
                raise AnswerSignatureError(f"our HMAC {ours} differs from wechatpy's {theirs}")
            if fields.get("sign") != ours:
                raise AnswerSignatureError(f"answer sign {fields.get('sign')!r} is not {ours}: {res.text}")
            self.answers_verified += 1
        return super()._handle_result(res)


def wechat_refusal(call):
    """The err_code of a refused call (WeChatPayException), or the answer if it succeeded."""
    try:
        return call()
    except WeChatPayException as error:
        return error


def wechat_refused(report, name, outcome, err_code):
    return report.check(
        name, isinstance(outcome, WeChatPayException) and outcome.errcode == err_code,
        f"{outcome!r}",
    )


def wechat_day(time_end):
    return datetime.datetime.strptime(time_end, "%Y%m%d%H%M%S").strftime("%Y-%m-%d")


def wechat_payments(report, run):
    pay, refs = run.wechat, run.refs
    out = refs("PYW")
    answer = pay.micropay.create("interop 收款 & co", 1234, WECHAT_PAID, client_ip="127.0.0.1", out_trade_no=out)
    report.check("micropay …01: SUCCESS, answer signature verified",
                 answer.get("result_code") == "SUCCESS", f"{answer}")
    report.check("micropay …01: out_trade_no, total_fee 1234, transaction_id, time_end",
                 answer.get("out_trade_no") == out and answer.get("total_fee") == "1234"
                 and bool(answer.get("transaction_id")) and bool(answer.get("time_end")), f"{answer}")
    report.equal("micropay …01: trade_type MICROPAY", answer.get("trade_type"), "MICROPAY")
    run.wechat_paid[out] = wechat_day(answer["time_end"])
    run.wechat_trade = (out, answer.get("transaction_id"))

    answer = pay.order.query(out_trade_no=out)
    report.equal("orderquery of it: trade_state SUCCESS", answer.get("trade_state"), "SUCCESS")
    report.check("orderquery of it: transaction_id, total_fee, time_end",
                 answer.get("transaction_id") == run.wechat_trade[1] and answer.get("total_fee") == "1234"
                 and len(answer.get("time_end") or "") == 14, f"{answer}")
    answer = pay.order.query(transaction_id=run.wechat_trade[1])
    report.equal("orderquery by transaction_id: the same order", answer.get("out_trade_no"), out)

    outcome = wechat_refusal(lambda: pay.micropay.create("x", 500, WECHAT_POOR, client_ip="127.0.0.1",
                                                          out_trade_no=refs("PYW")))
    wechat_refused(report, "micropay …03: NOTENOUGH (signed answer)", outcome, "NOTENOUGH")
    outcome = wechat_refusal(lambda: pay.micropay.create("x", 500, WECHAT_INVALID, client_ip="127.0.0.1",
                                                          out_trade_no=refs("PYW")))
    wechat_refused(report, "micropay, invalid code: AUTH_CODE_INVALID", outcome, "AUTH_CODE_INVALID")
    outcome = wechat_refusal(lambda: pay.micropay.create("x", 500, ALIPAY_PAID, client_ip="127.0.0.1",
                                                          out_trade_no=refs("PYW")))
    wechat_refused(report, "micropay, an Alipay code: AUTH_CODE_INVALID", outcome, "AUTH_CODE_INVALID")
    outcome = wechat_refusal(lambda: pay.order.query(out_trade_no=refs("PYW")))
    wechat_refused(report, "orderquery, unknown order: ORDERNOTEXIST", outcome, "ORDERNOTEXIST")


def wechat_refunds(report, run):
    pay, refs = run.wechat, run.refs
    out, transaction_id = run.wechat_trade
    first, second = refs("PYF"), refs("PYF")
    answer = pay.refund.apply(1234, 500, first, out_trade_no=out, refund_desc="interop 退款")
    report.check("refund 500 of 1234: SUCCESS, refund_fee 500, refund_id",
                 answer.get("result_code") == "SUCCESS" and answer.get("refund_fee") == "500"
                 and bool(answer.get("refund_id")), f"{answer}")
    report.equal("refund: transaction_id", answer.get("transaction_id"), transaction_id)
    run.wechat_refund_id = answer.get("refund_id")
    outcome = wechat_refusal(lambda: pay.refund.apply(1234, 735, second, out_trade_no=out))
    wechat_refused(report, "refund 735 more (1 fen over the total): REFUND_FEE_INVALID", outcome,
                   "REFUND_FEE_INVALID")
    answer = pay.refund.apply(1234, 500, first, out_trade_no=out)
    report.check("refund retried (same out_refund_no): SUCCESS, the same refund_id, nothing more refunded",
                 answer.get("result_code") == "SUCCESS" and answer.get("refund_id") == run.wechat_refund_id,
                 f"{answer}")
    answer = pay.refund.apply(1234, 734, refs("PYF"), out_trade_no=out)
    report.equal("refund the remaining 734: SUCCESS", answer.get("result_code"), "SUCCESS")
    answer = pay.refund.query(out_refund_no=first, out_trade_no=out)
    report.check(
        "refundquery: refund_fee_0 500, refund_status_0 SUCCESS, out_refund_no_0, refund_fee 1234 (order total)",
        answer.get("refund_fee_0") == "500" and answer.get("refund_status_0") == "SUCCESS"
        and answer.get("out_refund_no_0") == first and answer.get("total_fee") == "1234"
        and answer.get("refund_fee") == "1234", f"{answer}",
    )
    answer = pay.order.query(out_trade_no=out)
    report.equal("orderquery after a refund: trade_state REFUND", answer.get("trade_state"), "REFUND")
    outcome = wechat_refusal(lambda: pay.refund.query(out_refund_no=refs("PYF"), out_trade_no=out))
    wechat_refused(report, "refundquery, no such refund: REFUNDNOTEXIST", outcome, "REFUNDNOTEXIST")
    outcome = wechat_refusal(lambda: pay.refund.query(out_refund_no=first))
    report.check("refundquery by out_refund_no alone: SUCCESS",
                 isinstance(outcome, dict) and outcome.get("refund_fee_0") == "500", f"{outcome!r}")
    outcome = wechat_refusal(lambda: pay.refund.query(refund_id=run.wechat_refund_id))
    report.check("refundquery by refund_id alone: that refund",
                 isinstance(outcome, dict) and outcome.get("refund_count") == "1"
                 and outcome.get("out_refund_no_0") == first and outcome.get("refund_fee_0") == "500",
                 f"{outcome!r}")
    outcome = wechat_refusal(lambda: pay.refund.query(out_trade_no=out))
    report.check("refundquery by out_trade_no alone: every refund of the order",
                 isinstance(outcome, dict) and outcome.get("refund_count") == "2", f"{outcome!r}")
    if isinstance(outcome, dict):
        report.check(
            "refundquery by out_trade_no alone: oldest first (500, 734), refund_fee 1234",
            outcome.get("out_refund_no_0") == first and outcome.get("refund_fee_0") == "500"
            and outcome.get("refund_fee_1") == "734" and outcome.get("refund_status_1") == "SUCCESS"
            and outcome.get("refund_fee") == "1234", f"{outcome!r}",
        )
    outcome = wechat_refusal(lambda: pay.refund.query(transaction_id=transaction_id))
    report.check("refundquery by transaction_id alone: every refund of the order",
                 isinstance(outcome, dict) and outcome.get("refund_count") == "2"
                 and outcome.get("out_trade_no") == out, f"{outcome!r}")

    out = refs("PYW")
    answer = pay.micropay.create("interop", 250, WECHAT_PAID, client_ip="127.0.0.1", out_trade_no=out)
    answer = pay.refund.apply(250, 100, refs("PYF"), transaction_id=answer.get("transaction_id"))
    report.check("refund named by transaction_id alone: SUCCESS for the order",
                 answer.get("result_code") == "SUCCESS" and answer.get("out_trade_no") == out, f"{answer}")


def wechat_reverse_close(report, run, receiver):
    pay, refs = run.wechat, run.refs
    out = refs("PYV")
    outcome = wechat_refusal(lambda: pay.micropay.create("x", 300, WECHAT_NEVER, client_ip="127.0.0.1",
                                                          out_trade_no=out))
    wechat_refused(report, "micropay …04: USERPAYING", outcome, "USERPAYING")
    answer = pay.order.query(out_trade_no=out)
    report.equal("orderquery of it: USERPAYING", answer.get("trade_state"), "USERPAYING")
    answer = pay.order.reverse(out_trade_no=out)
    report.check("reverse: SUCCESS, recall N", answer.get("result_code") == "SUCCESS" and answer.get("recall") == "N",
                 f"{answer}")
    answer = pay.order.query(out_trade_no=out)
    report.equal("orderquery after the reverse: REVOKED", answer.get("trade_state"), "REVOKED")
    out = refs("PYV")
    pay.micropay.create("interop", 300, WECHAT_PAID, client_ip="127.0.0.1", out_trade_no=out)
    answer = pay.order.reverse(out_trade_no=out)
    report.equal("reverse of a paid micropay: SUCCESS", answer.get("result_code"), "SUCCESS")
    answer = pay.order.query(out_trade_no=out)
    report.equal("orderquery after reversing a paid micropay: REVOKED", answer.get("trade_state"), "REVOKED")

    out = refs("PYX")
    answer = pay.order.create("NATIVE", "interop 扫码", 456, receiver.url("/notify/wechat-unused"),
                              client_ip="127.0.0.1", out_trade_no=out, product_id="interop")
    code_url = answer.get("code_url") or ""
    report.check("unifiedorder NATIVE: SUCCESS, code_url weixin://…, prepay_id",
                 answer.get("result_code") == "SUCCESS" and code_url.startswith("weixin://")
                 and bool(answer.get("prepay_id")), f"{answer}")
    answer = pay.order.query(out_trade_no=out)
    report.equal("orderquery of the unpaid order: NOTPAY", answer.get("trade_state"), "NOTPAY")
    answer = pay.order.close(out)
    report.equal("closeorder: SUCCESS", answer.get("result_code"), "SUCCESS")
    answer = pay.order.query(out_trade_no=out)
    report.equal("orderquery after the close: CLOSED", answer.get("trade_state"), "CLOSED")
    status, paid = run.sim.post_json("/sim/v1/qr/pay", {"qr_code": code_url, "wallet": "wechat"})
    report.check("a payer cannot pay the closed order's code_url",
                 status == 200 and isinstance(paid, dict) and paid.get("paid") is False, f"{status} {paid}")
    outcome = wechat_refusal(lambda: pay.order.close(run.wechat_trade[0]))
    wechat_refused(report, "closeorder of a paid order: ORDERPAID", outcome, "ORDERPAID")


def wechat_signatures(report, run):
    credentials = run.credentials["wechat"]
    wrong = SimWeChatPay(run.wechat.API_BASE_URL, credentials["appid"], "k" * 32, credentials["mch_id"])
    outcome = wechat_refusal(lambda: wrong.order.query(out_trade_no=run.wechat_trade[0]))
    report.check("a request signed with another API key: return_code FAIL",
                 isinstance(outcome, WeChatPayException) and outcome.return_code == "FAIL", f"{outcome!r}")
    md5 = WeChatPay(credentials["appid"], credentials["api_key"], credentials["mch_id"], timeout=15)
    md5.API_BASE_URL = run.wechat.API_BASE_URL
    outcome = wechat_refusal(lambda: md5.order.query(out_trade_no=run.wechat_trade[0]))
    report.check("an MD5-signed request (wechatpy's default): return_code FAIL, HMAC-SHA256 only",
                 isinstance(outcome, WeChatPayException) and outcome.return_code == "FAIL", f"{outcome!r}")
    answer = run.wechat.order.query(out_trade_no=run.wechat_trade[0])
    fields = dict(answer)
    sign = fields.get("sign")
    fields["total_fee"] = "1235"
    report.check("an answer with an altered total_fee does not verify",
                 wechat_sign(fields, credentials["api_key"]) != sign)
    report.check("every signed answer so far verified (HMAC-SHA256)", run.wechat.answers_verified > 10,
                 f"{run.wechat.answers_verified} verified")


def wechat_bill(report, run):
    day = next(iter(run.wechat_paid.values()))
    bill = run.wechat.tools.download_bill(day.replace("-", ""))
    report.check("downloadbill: the CSV text itself", isinstance(bill, str) and "," in bill,
                 f"{type(bill).__name__}: {str(bill)[:200]}")
    for out, paid_day in run.wechat_paid.items():
        if paid_day == day:
            report.check(f"the bill of {day} has `{out}", f"`{out}" in str(bill), str(bill)[:300])
    for name, empty_day in (("a day without trades", NO_TRADE_DAY), ("a day still to come", future_day())):
        outcome = wechat_refusal(lambda: run.wechat.tools.download_bill(empty_day.replace("-", "")))
        report.check(f"downloadbill, {name}: return_code FAIL, No Bill Exist",
                     isinstance(outcome, WeChatPayException) and outcome.return_code == "FAIL"
                     and outcome.return_msg == "No Bill Exist", f"{outcome!r}")
        fields = dict(xmltodict.parse(run.wechat.last_answer)["xml"]) if run.wechat.last_answer else {}
        report.equal(f"downloadbill, {name}: error_code 20002", fields.get("error_code"), "20002")


def wechat_notification(report, run, receiver):
    pay, refs = run.wechat, run.refs
    path = "/notify/wechat"
    receiver.answer(path, (200, "text/xml", WECHAT_SUCCESS_XML))
    out = refs("PYQ")
    answer = pay.order.create("NATIVE", "interop 扫码", 888, receiver.url(path), client_ip="127.0.0.1",
                              out_trade_no=out, product_id="interop")
    code_url = answer.get("code_url")
    report.check("unifiedorder with notify_url: code_url", bool(code_url), f"{answer}")
    status, paid = run.sim.post_json("/sim/v1/qr/pay", {"qr_code": code_url, "wallet": "wechat"})
    report.check("POST /sim/v1/qr/pay of the code_url: paid",
                 status == 200 and isinstance(paid, dict) and paid.get("paid") is True
                 and paid.get("out_trade_no") == out, f"{status} {paid}")
    received = receiver.next(path, NOTIFY_DEADLINE_S)
    if not report.check("a WeChat notification arrives", received is not None, "none within the deadline"):
        return
    run.acknowledged[path] = time.monotonic()
    content_type, body = received
    report.check("it is XML", "xml" in content_type, content_type)
    fields = dict(xmltodict.parse(body.decode("utf-8"))["xml"])
    api_key = run.credentials["wechat"]["api_key"]
    theirs = calculate_signature_hmac({k: v for k, v in fields.items() if k != "sign"}, api_key)
    report.check("its signature verifies with wechatpy's HMAC-SHA256 helper", fields.get("sign") == theirs,
                 f"sign_type {fields.get('sign_type')!r}")
    report.check("and with our own HMAC-SHA256 code", fields.get("sign") == wechat_sign(fields, api_key))
    report.check(
        "it says SUCCESS for the order, 888 fen, NATIVE, this merchant",
        fields.get("return_code") == "SUCCESS" and fields.get("result_code") == "SUCCESS"
        and fields.get("out_trade_no") == out and fields.get("total_fee") == "888"
        and fields.get("trade_type") == "NATIVE" and fields.get("mch_id") == run.credentials["wechat"]["mch_id"]
        and fields.get("appid") == run.credentials["wechat"]["appid"] and bool(fields.get("transaction_id"))
        and len(fields.get("time_end") or "") == 14,
        f"{fields}",
    )
    answer = pay.order.query(out_trade_no=out)
    report.equal("orderquery of the scanned order: SUCCESS", answer.get("trade_state"), "SUCCESS")
    if fields.get("time_end"):
        run.wechat_paid[out] = wechat_day(fields["time_end"])


def no_repeats(report, run, receiver):
    """A notification acknowledged is not sent again: nothing more arrives within twice the
    simulator's first retry delay (1 s) after the acknowledgement."""
    for path, acknowledged in sorted(run.acknowledged.items()):
        wait_s = max(0.0, acknowledged + ACK_QUIET_S - time.monotonic())
        again = receiver.next(path, wait_s)
        report.check(f"{path}: not sent again once acknowledged", again is None, f"{again}")


# --- statements --------------------------------------------------------------------------------


def statements(report, run):
    for wallet, paid in (("alipay", run.alipay_paid), ("wechat", run.wechat_paid)):
        days = {}
        for out, day in paid.items():
            days.setdefault(day, []).append(out)
        for day, outs in sorted(days.items()):
            status, body = run.sim.get(f"/sim/v1/statements/{wallet}/{day}")
            text = body.decode("utf-8", errors="replace")
            report.check(f"GET /sim/v1/statements/{wallet}/{day}: 200", status == 200, f"{status} {text[:200]}")
            missing = [out for out in outs if out not in text]
            report.check(f"the {wallet} statement of {day} has the {len(outs)} trades paid", not missing,
                         f"missing {missing}")
        status, body = run.sim.get(f"/sim/v1/statements/{wallet}/{NO_TRADE_DAY}")
        lines = body.decode("utf-8", errors="replace").splitlines()
        report.check(f"GET /sim/v1/statements/{wallet}/{NO_TRADE_DAY} (no trades): 200, the header row alone",
                     status == 200 and len(lines) == 1 and "," in lines[0], f"{status} {lines[:3]}")


class Run:
    def __init__(self, sim, credentials):
        self.sim = sim
        self.credentials = credentials
        self.refs = References()
        self.alipay = Alipay(alipay_client(credentials["alipay"]))
        wechat = credentials["wechat"]
        self.wechat = SimWeChatPay(wechat["api_url"].rstrip("/") + "/", wechat["appid"], wechat["api_key"],
                                   wechat["mch_id"])
        self.alipay_paid = {}
        self.wechat_paid = {}
        self.alipay_trade = None
        self.wechat_trade = None
        self.wechat_refund_id = None
        self.acknowledged = {}
        # Another app's key (pycryptodome, a dependency of the Alipay SDK: fast key generation).
        self.foreign_private_key_pem = RSA.generate(2048).export_key(pkcs=1).decode()


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    report = Report()
    data_dir = tempfile.mkdtemp(prefix="kassa-wallet-interop-")
    sim = SimHost(sys.argv[1], data_dir)
    started = time.monotonic()
    try:
        sim.start()
        print(f"kassa sim: {sim.base_url}, data {data_dir}")
        run = Run(sim, sim.credentials())
        with Receiver() as receiver:
            report.section("alipay: pay and query", alipay_payments, report, run)
            report.section("alipay: refunds", alipay_refunds, report, run)
            report.section("alipay: cancel and close", alipay_cancel_close, report, run)
            report.section("alipay: signatures", alipay_signatures, report, run)
            report.section("alipay: notification of a scanned precreate", alipay_notification, report, run, receiver)
            report.section("alipay: bill download", alipay_bill, report, run)
            report.section("wechat: micropay and orderquery", wechat_payments, report, run)
            report.section("wechat: refund and refundquery", wechat_refunds, report, run)
            report.section("wechat: reverse, unifiedorder, closeorder", wechat_reverse_close, report, run, receiver)
            report.section("wechat: notification of a scanned unifiedorder", wechat_notification, report, run,
                           receiver)
            report.section("wechat: signatures", wechat_signatures, report, run)
            report.section("wechat: downloadbill", wechat_bill, report, run)
            report.section("statements", statements, report, run)
            report.section("notifications acknowledged", no_repeats, report, run, receiver)
        status = sim.stop()
        report.check("kassa sim shuts down cleanly on SIGTERM", status == 0, f"exit status {status}")
    except Exception:  # noqa: BLE001 - the report must say why the run stopped
        report.check("the run completes", False, traceback.format_exc())
    finally:
        sim.stop()
        if report.failed:
            print(f"--- last lines of the simulator's log ({sim.log_path}):\n{sim.log_tail()}")
        if not report.failed or os.environ.get("CI"):
            shutil.rmtree(data_dir, ignore_errors=True)
    print(f"({time.monotonic() - started:.0f} s)")
    if report.known:
        print(f"known failures (not counted as passed): {len(report.known)}: " + ", ".join(report.known))
    print(f"wallet: {report.passed} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
