// Reconciliation, corrections (补登) and payouts, in English and Chinese, against `kassa up` with
// the wallet simulator: a merchant QR is paid at the wallet after Kassa cancelled it (the wallet
// forgot the cancel and dropped its notification: 支付遗漏), the admin's reconciliation run finds
// it paid-but-not-credited and proposes a correction, the reviewer approves it, and the merchant's payout then pays it.
const { test, expect } = require("@playwright/test");
const { signIn, signOut, screenshot, credentials } = require("./helpers.cjs");

test.describe.configure({ mode: "serial" });

const MERCHANT = "898100000000001";
/** The corrections approved by the walks below, paid by the payout run after them. */
const approvedCorrections = [];

const words = {
  en: {
    start: "Start reconciliation",
    missed: "Paid at the channel, not credited",
    approve: "Approve and post",
    approved: "The correction was approved and its journal entry posted.",
    entry: "Journal entry posted",
    run: "Run payouts",
    ran: "The payouts of the business day were run.",
    ledger: "Ledger agrees",
    csv: "Download settlement report (CSV)",
    chain: "Chain intact",
  },
  zh: {
    start: "开始对账",
    missed: "渠道已付、本系统未入账",
    approve: "通过并记账",
    approved: "补登已通过，分录已记账。",
    entry: "已记分录",
    run: "执行结算",
    ran: "该营业日的结算已执行。",
    ledger: "与账务一致",
    csv: "下载结算报表（CSV）",
    chain: "哈希链完整",
  },
};

/** Today at the wallets (their calendar day, Asia/Shanghai), which is also the business day. */
function walletToday() {
  return new Date(Date.now() + 8 * 3600 * 1000).toISOString().slice(0, 10);
}

async function sim(request, method, path, data) {
  const answer = await request.fetch(`${process.env.KASSA_SIM}${path}`, { method, data });
  expect(answer.ok(), `${method} ${path}: ${await answer.text()}`).toBeTruthy();
  return answer.json();
}

/** A merchant QR of `amount` fen, cancelled at Kassa, paid at the wallet anyway (支付遗漏). */
async function paidAfterAForgottenCancel(request, outTradeNo, amount) {
  const key = credentials().api_key;
  const api = (path, idem, data) =>
    request.post(`/api/v1${path}`, {
      headers: { Authorization: `Bearer ${key}`, "Idempotency-Key": idem },
      data,
    });
  const order = await api("/qr/orders", `${outTradeNo}-order`, { out_trade_no: outTradeNo, amount, currency: "CNY" });
  expect(order.status(), await order.text()).toBe(200);
  const qrCode = (await order.json()).qr_code;
  const token = qrCode.split("/qr/v1/")[1];
  const scanned = await request.get(`/qr/v1/${token}?wallet=alipay`, { headers: { Accept: "application/json" } });
  expect(scanned.status(), await scanned.text()).toBe(200);
  const walletCode = (await scanned.json()).wallet_qr_code;
  await sim(request, "POST", "/sim/v1/faults", { wallet: "alipay", fault: "forget_close", count: 1 });
  await sim(request, "POST", "/sim/v1/faults", { wallet: "alipay", fault: "drop_notification", count: 1 });
  const cancel = await api(`/qr/trades/${outTradeNo}/cancel`, `${outTradeNo}-cancel`, {});
  expect(cancel.status(), await cancel.text()).toBe(200);
  expect((await cancel.json()).status).toBe("closed");
  const paid = await sim(request, "POST", "/sim/v1/qr/pay", { qr_code: walletCode, wallet: "alipay" });
  expect(paid.paid).toBe(true);
}

test("the demo merchant is paid D0, so today's payout takes today's correction", async ({ page }) => {
  await signIn(page, "admin");
  await page.goto("/payouts");
  const csrf = await page.locator("input[name=csrf]").first().inputValue();
  const answer = await page.request.put(`/backoffice/v1/merchants/${MERCHANT}/payout-schedule`, {
    headers: { "X-Kassa-CSRF": csrf },
    data: { schedule: "d0", reason: "browser test: pay the day's corrections today" },
  });
  expect(answer.status(), await answer.text()).toBe(200);
  await signOut(page);
});

for (const lang of ["en", "zh"]) {
  const w = words[lang];

  test(`a paid-but-not-credited payment is found and corrected by a second person (${lang})`, async ({
    page,
    request,
  }) => {
    const outTradeNo = `web-missed-${lang}-${Date.now()}`;
    await paidAfterAForgottenCancel(request, outTradeNo, lang === "en" ? 880 : 990);

    // The admin reconciles today's Alipay statement.
    await signIn(page, "admin", lang);
    await page.goto(`/recon?lang=${lang}`);
    await page.locator("#recon-date").fill(walletToday());
    await page.locator("#recon-channel").selectOption("alipay");
    await page.getByRole("button", { name: w.start }).click();
    await expect(page).toHaveURL(/\/recon\/runs\/\d+/);
    const row = page.locator("tr", { hasText: outTradeNo });
    await expect(row).toContainText(w.missed);
    await screenshot(page, `recon-run-${lang}`);

    // The correction the run proposed: a second person (the reviewer) approves it.
    await row.getByRole("link", { name: /#\d+/ }).click();
    await expect(page).toHaveURL(/\/corrections\/\d+/);
    const correctionUrl = page.url();
    await screenshot(page, `correction-proposed-${lang}`);
    await signOut(page);

    await signIn(page, "reviewer", lang);
    await page.goto(correctionUrl);
    page.once("dialog", (dialog) => dialog.accept());
    await page.locator("#approve-reason").fill(lang === "en" ? "on the Alipay statement" : "支付宝对账单上有这笔");
    await page.getByRole("button", { name: w.approve }).click();
    await expect(page.locator(".notice")).toContainText(w.approved);
    await expect(page.locator("main")).toContainText(w.entry);
    await screenshot(page, `correction-approved-${lang}`);
    await signOut(page);

    approvedCorrections.push(correctionUrl.match(/\/corrections\/(\d+)/)[1]);
    await signIn(page, "admin", lang);
    await page.goto(`/audit?lang=${lang}`);
    await expect(page.locator("main")).toContainText(w.chain);
    await screenshot(page, `audit-${lang}`);
    await signOut(page);
  });

  test(`a manual correction of an unknown trade is refused with its reason (${lang})`, async ({ page }) => {
    await signIn(page, "admin", lang);
    await page.goto(`/corrections?lang=${lang}`);
    await page.locator("#c-kind").selectOption("paid_not_credited");
    await page.locator("#c-channel").selectOption("alipay");
    await page.locator("#c-reference").fill(`no-such-trade-${lang}`);
    await page.locator("#c-merchant").fill(MERCHANT);
    await page.locator("#c-amount").fill("100");
    await page.locator("#c-evidence").fill("browser test");
    await page.locator("form[action='/corrections'] button[type=submit]").click();
    // No such trade: refused with the reason, on the same page.
    await expect(page.locator(".error")).toBeVisible();
    await screenshot(page, `corrections-${lang}`);
    await signOut(page);
  });
}

for (const lang of ["en", "zh"]) {
  const w = words[lang];

  test(`the day's payout pays both approved corrections (${lang})`, async ({ page }) => {
    expect(approvedCorrections.length).toBe(2);
    await signIn(page, "admin", lang);
    await page.goto(`/payouts?lang=${lang}`);
    if (lang === "en") {
      // One run for the day, after both approvals (a day's payout is made once).
      await page.locator("#run-date").fill(walletToday());
      page.once("dialog", (dialog) => dialog.accept());
      await page.getByRole("button", { name: w.run }).click();
      await expect(page.locator(".notice")).toContainText(w.ran);
    }
    await page.locator("tr", { hasText: MERCHANT }).first().getByRole("link").click();
    await expect(page.locator("main")).toContainText(w.ledger);
    for (const id of approvedCorrections) {
      await expect(page.locator("td", { hasText: new RegExp(`^correction:${id}$`) })).toBeVisible();
    }
    await expect(page.getByRole("link", { name: w.csv })).toBeVisible();
    await screenshot(page, `payout-${lang}`);
    await signOut(page);
  });
}

test("backups: the admin takes and verifies one", async ({ page }) => {
  await signIn(page, "admin");
  await page.goto("/backups");
  await screenshot(page, "backups");
  if (await page.getByRole("button", { name: "Take a backup now" }).count()) {
    await page.getByRole("button", { name: "Take a backup now" }).click();
    await expect(page.locator(".notice")).toContainText("The backup was written.");
    await page.getByRole("button", { name: "Verify" }).first().click();
    await expect(page.locator(".notice")).toContainText("verified");
    await screenshot(page, "backups-verified");
  } else {
    await expect(page.locator(".warning")).toContainText("Backups are not configured");
  }
  await signOut(page);
});
