// Refunds (退款), in English and Chinese, against `kassa up` with the wallet simulator: a real QR
// payment of 600.00 (above the demo's 500.00 review threshold) is made through /api/v1 and paid
// at the simulated wallet; the shop's register asks for a refund (/api/v1/refunds); the
// merchant's owner approves it in the back office, the institution reviewer approves it, the
// wallet refunds the payer, and the progress page shows every step with who and when.
const { test, expect } = require("@playwright/test");
const { signIn, signOut, screenshot, credentials } = require("./helpers.cjs");

test.describe.configure({ mode: "serial" });

const MERCHANT = "898100000000001";

const words = {
  en: {
    queueMerchant: "Waiting for your review",
    queueInstitution: "Waiting for institution review",
    approve: "Approve",
    approved: "You approved the refund.",
    awaiting: "Waiting for institution review",
    succeeded: "Succeeded",
    merchantStage: "Merchant review",
    institutionStage: "Institution review",
  },
  zh: {
    queueMerchant: "待您审核",
    queueInstitution: "待支付机构审核",
    approve: "通过",
    approved: "您已通过此退款。",
    awaiting: "待支付机构审核",
    succeeded: "退款成功",
    merchantStage: "商户审核",
    institutionStage: "支付机构审核",
  },
};

async function sim(request, method, path, data) {
  const answer = await request.fetch(`${process.env.KASSA_SIM}${path}`, { method, data });
  expect(answer.ok(), `${method} ${path}: ${await answer.text()}`).toBeTruthy();
  return answer.json();
}

/** A merchant QR of `amount` fen paid at the simulated wallet; then a refund request of it. */
async function paidAndRefundAsked(request, outTradeNo, outRequestNo, amount) {
  const key = credentials().api_key;
  const api = (path, idem, data) =>
    request.post(`/api/v1${path}`, {
      headers: { Authorization: `Bearer ${key}`, "Idempotency-Key": idem },
      data,
    });
  const order = await api("/qr/orders", `${outTradeNo}-order`, { out_trade_no: outTradeNo, amount, currency: "CNY" });
  expect(order.status(), await order.text()).toBe(200);
  const token = (await order.json()).qr_code.split("/qr/v1/")[1];
  // The scan asks the wallet for its order; "the wallet is unavailable" (503) is answered when a
  // pooled connection to the simulator closed under it, and the scan is safe to repeat.
  let scanned;
  await expect
    .poll(
      async () => {
        scanned = await request.get(`/qr/v1/${token}?wallet=alipay`, { headers: { Accept: "application/json" } });
        return scanned.status();
      },
      { timeout: 10_000 },
    )
    .not.toBe(503);
  expect(scanned.status(), await scanned.text()).toBe(200);
  const paid = await sim(request, "POST", "/sim/v1/qr/pay", {
    qr_code: (await scanned.json()).wallet_qr_code,
    wallet: "alipay",
  });
  expect(paid.paid).toBe(true);
  // Kassa learns of the payment from the wallet's notification or its own query: wait for it.
  await expect
    .poll(
      async () => {
        const trade = await request.get(`/api/v1/qr/trades/${outTradeNo}`, { headers: { Authorization: `Bearer ${key}` } });
        return (await trade.json()).status;
      },
      { timeout: 20_000 },
    )
    .toBe("paid");
  const asked = await api("/refunds", `${outRequestNo}-refund`, {
    out_request_no: outRequestNo,
    out_trade_no: outTradeNo,
    amount,
    currency: "CNY",
    reason: "return_of_goods",
    note: "customer returned the order",
  });
  expect(asked.status(), await asked.text()).toBeLessThan(300);
}

for (const lang of ["en", "zh"]) {
  const w = words[lang];

  test(`a refund goes request → owner review → institution review → succeeded (${lang})`, async ({ page, request }) => {
    const stamp = Date.now();
    const outTradeNo = `web-refund-${lang}-${stamp}`;
    const outRequestNo = `web-rr-${lang}-${stamp}`;
    await paidAndRefundAsked(request, outTradeNo, outRequestNo, 60000);

    // The merchant's owner finds it in the review queue and approves it.
    await signIn(page, "owner", lang);
    await page.goto(`/refunds?lang=${lang}`);
    const queue = page.locator("section[aria-labelledby=refunds-queue]");
    await expect(queue.locator("h2")).toHaveText(w.queueMerchant);
    await queue.getByRole("link", { name: outRequestNo }).click();
    await expect(page).toHaveURL(new RegExp(`/refunds/${MERCHANT}/${outRequestNo}`));
    const progressUrl = page.url().split("?")[0];
    await page.locator("#review-reason").fill(lang === "en" ? "the cups came back" : "杯子已退回");
    await page.getByRole("button", { name: w.approve, exact: true }).click();
    await expect(page.locator(".notice")).toContainText(w.approved);
    await expect(page.locator("#refund-state")).toHaveText(w.awaiting);
    await signOut(page);

    // The institution reviewer approves it; the wallet refunds the payer.
    await signIn(page, "reviewer", lang);
    await page.goto(`/refunds?lang=${lang}`);
    const institutionQueue = page.locator("section[aria-labelledby=refunds-queue]");
    await expect(institutionQueue.locator("h2")).toHaveText(w.queueInstitution);
    await screenshot(page, `refunds-queue-${lang}`);
    await institutionQueue.getByRole("link", { name: outRequestNo }).click();
    await page.getByRole("button", { name: w.approve, exact: true }).click();
    await expect(page.locator(".notice")).toContainText(w.approved);
    await signOut(page);

    // The owner sees the whole progress: who and when at each step.
    await signIn(page, "owner", lang);
    await expect
      .poll(
        async () => {
          await page.goto(`${progressUrl}?lang=${lang}`);
          return page.locator("#refund-state").innerText();
        },
        { timeout: 20_000 },
      )
      .toBe(w.succeeded);
    const steps = page.locator("#refund-steps");
    await expect(steps.locator("tr", { hasText: w.merchantStage })).toContainText("owner");
    await expect(steps.locator("tr", { hasText: w.institutionStage })).toContainText("reviewer");
    await screenshot(page, `refund-progress-${lang}`);
    await signOut(page);
  });
}
