// Kassa's `/gateway.do` driven by the official Alipay Node SDK (npm `alipay-sdk`): every method
// through `AlipaySdk.exec`, the SDK signing each request with the demo app's key and verifying
// each answer's signature (`validateSign: true`) with the gateway's public key
// (`gateway_public_key_pem` of `<data-dir>/demo/credentials.json`). No adaptation: the SDK is used
// as shipped.
//
// Usage: node gateway_node.cjs SDK_DIR GATEWAY_URL SIM_URL CREDENTIALS_JSON
// Prints one line per check and `aggregator (node): N passed, M failed`; exits 1 on a failure.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

const [sdkDir, gatewayUrl, simUrl, credentialsPath] = process.argv.slice(2);
const { AlipaySdk } = require(path.join(sdkDir, 'node_modules', 'alipay-sdk'));

const ALIPAY_PAID = '286912345678901201';
const ALIPAY_CONFIRMS = '286912345678901202';
const ALIPAY_NEVER = '286912345678901204';
const ALIPAY_POOR = '286912345678901203';
const WECHAT_PAID = '134567890123456701';
const DEADLINE_MS = 20_000;

let passed = 0;
const failed = [];

function check(name, ok, detail = '') {
  if (ok) {
    passed += 1;
    console.log(`ok    ${name}`);
  } else {
    failed.push(name);
    console.log(`FAIL  ${name}: ${detail}`);
  }
  return ok;
}

/** The answer (camel-cased by the SDK) has `code`, `subCode` and the given fields. */
function answer(name, result, code, subCode, fields = {}) {
  const got = { code: result.code, subCode: result.subCode };
  const want = { code, subCode };
  for (const [field, value] of Object.entries(fields)) {
    got[field] = result[field];
    want[field] = value;
  }
  return check(name, JSON.stringify(got) === JSON.stringify(want), `got ${JSON.stringify(got)}, expected ${JSON.stringify(want)} (${result.subMsg})`);
}

async function section(name, body) {
  console.log(`--- ${name}`);
  try {
    await body();
  } catch (error) {
    check(`${name}: runs to its end`, false, `${error.name}: ${error.message}`);
    console.log(error.stack);
  }
}

async function main() {
  const credentials = JSON.parse(fs.readFileSync(credentialsPath, 'utf8'));
  const sdk = new AlipaySdk({
    appId: credentials.app_id,
    privateKey: credentials.app_private_key_pem,
    alipayPublicKey: credentials.gateway_public_key_pem,
    gateway: gatewayUrl,
    signType: 'RSA2',
    keyType: 'PKCS1',
    timeout: 30_000,
  });
  const exec = (method, bizContent, extra = {}) => sdk.exec(method, { bizContent, ...extra }, { validateSign: true });
  const run = crypto.randomBytes(4).toString('hex');
  let count = 0;
  const ref = (prefix) => `JS${prefix}${run}${String(++count).padStart(4, '0')}`;
  const queryUntil = async (outTradeNo, status) => {
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      const result = await exec('alipay.trade.query', { out_trade_no: outTradeNo });
      if (result.tradeStatus === status || Date.now() > deadline) return result;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };
  const pay = (outTradeNo, code, amount, extra) =>
    exec('alipay.trade.pay', { out_trade_no: outTradeNo, scene: 'bar_code', auth_code: code, subject: 'interop 收款 {x}', total_amount: amount }, extra);

  await section('customer codes (alipay.trade.pay and what follows)', async () => {
    const paidNo = ref('P');
    const paid = await pay(paidNo, ALIPAY_PAID, '12.34', { notifyUrl: 'http://127.0.0.1:9/notify' });
    answer('pay: an Alipay-style code is paid', paid, '10000', undefined, { totalAmount: '12.34', buyerPayAmount: '12.34' });
    const again = await pay(paidNo, ALIPAY_PAID, '12.34');
    answer('pay: the same request again answers the same trade', again, '10000', undefined, { tradeNo: paid.tradeNo });
    const other = await pay(paidNo, WECHAT_PAID, '12.34');
    answer('pay: the same out_trade_no with another code', other, '40004', 'ACQ.TRADE_HAS_SUCCESS');
    const wechat = await pay(ref('P'), WECHAT_PAID, '8.00');
    answer('pay: a WeChat-style code through the same integration', wechat, '10000', undefined, { totalAmount: '8.00' });
    const poor = await pay(ref('P'), ALIPAY_POOR, '1.00');
    answer('pay: a payer without balance', poor, '40004', 'ACQ.BUYER_BALANCE_NOT_ENOUGH');
    const zero = await pay(ref('P'), ALIPAY_PAID, '0.00');
    answer('pay: a zero amount', zero, '40002', 'isv.invalid-parameter');
    const confirmingNo = ref('P');
    const confirming = await pay(confirmingNo, ALIPAY_CONFIRMS, '3.00');
    answer('pay: a payer confirming on the phone answers 10003 at once', confirming, '10003', undefined);
    const success = await queryUntil(confirmingNo, 'TRADE_SUCCESS');
    answer('query: then the trade succeeds', success, '10000', undefined, { tradeStatus: 'TRADE_SUCCESS', totalAmount: '3.00' });
    const byTradeNo = await exec('alipay.trade.query', { trade_no: paid.tradeNo });
    answer('query: by trade_no', byTradeNo, '10000', undefined, { outTradeNo: paidNo, tradeStatus: 'TRADE_SUCCESS' });
    const missing = await exec('alipay.trade.query', { out_trade_no: ref('X') });
    answer('query: an unknown trade', missing, '40004', 'ACQ.TRADE_NOT_EXIST');

    const refund = await exec('alipay.trade.refund', { out_trade_no: paidNo, refund_amount: '2.34', out_request_no: 'R1' });
    answer('refund: part of a paid trade', refund, '10000', undefined, { refundFee: '2.34' });
    const twice = await exec('alipay.trade.refund', { out_trade_no: paidNo, refund_amount: '2.34', out_request_no: 'R1' });
    answer('refund: the same out_request_no refunds once', twice, '10000', undefined, { refundFee: '2.34' });
    const tooMuch = await exec('alipay.trade.refund', { out_trade_no: paidNo, refund_amount: '10.01', out_request_no: 'R2' });
    answer('refund: more than is left', tooMuch, '40004', 'ACQ.REFUND_AMT_NOT_EQUAL_TOTAL');
    const found = await exec('alipay.trade.fastpay.refund.query', { out_trade_no: paidNo, out_request_no: 'R1' });
    answer('fastpay.refund.query: the refund', found, '10000', undefined, { refundAmount: '2.34', totalAmount: '12.34', refundStatus: 'REFUND_SUCCESS' });

    const waitingNo = ref('P');
    const waiting = await pay(waitingNo, ALIPAY_NEVER, '1.00');
    answer('pay: a payer who never confirms answers 10003', waiting, '10003', undefined);
    const cancel = await exec('alipay.trade.cancel', { out_trade_no: waitingNo });
    answer('cancel: a waiting trade is closed', cancel, '10000', undefined, { action: 'close', retryFlag: 'N' });
    const closed = await queryUntil(waitingNo, 'TRADE_CLOSED');
    answer('query: the cancelled trade is closed', closed, '10000', undefined, { tradeStatus: 'TRADE_CLOSED' });
    const refunded = await exec('alipay.trade.cancel', { out_trade_no: wechat.outTradeNo });
    answer('cancel: a paid trade is refunded', refunded, '10000', undefined, { action: 'refund', retryFlag: 'N' });
  });

  await section('merchant QR (alipay.trade.precreate)', async () => {
    const paidNo = ref('Q');
    const created = await exec('alipay.trade.precreate', { out_trade_no: paidNo, total_amount: '5.00', subject: 'interop 扫码', timeout_express: '5m' });
    answer('precreate: an aggregated code', created, '10000', undefined, { outTradeNo: paidNo });
    const pay = await fetch(`${simUrl}/sim/v1/qr/pay`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ qr_code: created.qrCode, wallet: 'alipay' }),
    });
    const paid = await pay.json();
    check('precreate: an Alipay-style payer pays the code', paid.paid === true, JSON.stringify(paid));
    const success = await queryUntil(paidNo, 'TRADE_SUCCESS');
    answer('query: the merchant QR is paid', success, '10000', undefined, { tradeStatus: 'TRADE_SUCCESS', buyerPayAmount: '5.00' });
    const openNo = ref('Q');
    await exec('alipay.trade.precreate', { out_trade_no: openNo, total_amount: '2.00', subject: 'interop 扫码' });
    const closed = await exec('alipay.trade.close', { out_trade_no: openNo });
    answer('close: an unpaid merchant QR', closed, '10000', undefined, { outTradeNo: openNo });
  });

  await section('answer signatures', async () => {
    const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' });
    const stranger = new AlipaySdk({
      appId: credentials.app_id, privateKey: credentials.app_private_key_pem, alipayPublicKey: other,
      gateway: gatewayUrl, signType: 'RSA2', keyType: 'PKCS1',
    });
    let refused = false;
    try {
      await stranger.exec('alipay.trade.query', { bizContent: { out_trade_no: ref('X') } }, { validateSign: true });
    } catch (error) {
      refused = /验签失败/.test(error.message);
    }
    check('verification: an answer checked with another key is refused by the SDK', refused);
  });

  console.log(`aggregator (node): ${passed} passed, ${failed.length} failed`);
  process.exit(failed.length ? 1 : 0);
}

main().catch((error) => {
  console.log(error.stack);
  process.exit(1);
});
