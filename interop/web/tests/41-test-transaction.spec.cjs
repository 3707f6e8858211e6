// The test transaction (模拟交易), in English and Chinese, against `kassa up` with the wallet and
// card issuer simulators: a QR payment with a simulator payment code (paid, then refunded at
// once), and card sales with the simulator's test cards through the host's own ISO 8583 gateway
// as the terminal (signed in, sold, voided at once; a declined card). Each run answers with its
// own page, which a reload shows again without running it again.
const { test, expect } = require("@playwright/test");
const { signIn, screenshot } = require("./helpers.cjs");

test.describe.configure({ mode: "serial" });

const words = {
  en: {
    run: "Run test transaction",
    settings: "Payment-code settings checked",
    wallet: "Wallet called",
    journal: "Journal entry posted",
    refunded: "Refunded at once",
    paid: "Paid",
    keys: "Terminal master key unsealed",
    signIn: "Signed in (0800)",
    sale: "Sale (0200)",
    voided: "Voided at once (0200)",
    approved: "Approved 1.00 CNY and cancelled at once",
    declined: "Declined 54",
    expired: "54 expired card",
    entries: "Journal entries read back",
    balanced: "Balanced",
  },
  zh: {
    run: "发起模拟交易",
    settings: "检查付款码设置",
    wallet: "调用钱包",
    journal: "记账分录",
    refunded: "立即退款",
    paid: "已支付",
    keys: "解封终端主密钥",
    signIn: "签到（0800）",
    sale: "消费（0200）",
    voided: "立即撤销（0200）",
    approved: "交易成功 1.00 CNY，已立即撤销",
    declined: "交易被拒 54",
    expired: "54 过期卡",
    entries: "读回的记账分录",
    balanced: "借贷平衡",
  },
};

for (const lang of ["en", "zh"]) {
  const w = words[lang];

  test(`a QR test transaction shows its steps (${lang})`, async ({ page }) => {
    await signIn(page, "owner", lang);
    await page.goto(`/test-transaction?lang=${lang}`);
    await page.locator("#terminal_id").selectOption("10000002");
    await page.locator("#kind").selectOption("qr");
    await page.locator("#code").selectOption("281234567890123401");
    await page.locator("#amount").fill("0.05");
    await page.getByRole("button", { name: w.run }).click();
    await expect(page).toHaveURL(/\/test-transaction\/runs\/TEST10000002\d+/);
    const result = page.locator("section.card").first();
    await expect(result).toContainText(w.paid);
    for (const step of [w.settings, w.wallet, w.journal, w.refunded]) {
      await expect(result.locator("tr", { hasText: step }).locator(".badge.good")).toBeVisible();
    }
    await expect(result).toContainText(" ms");
    await screenshot(page, `test-transaction-qr-${lang}`);
  });

  test(`a card test signs in, sells and voids as the terminal (${lang})`, async ({ page }) => {
    await signIn(page, "owner", lang);
    await page.goto(`/test-transaction?lang=${lang}`);
    await page.locator("#terminal_id").selectOption("10000002");
    await page.locator("#kind").selectOption("card");
    await page.locator("#card").selectOption("approved");
    await page.locator("#amount").fill("1.00");
    await page.getByRole("button", { name: w.run }).click();
    await expect(page).toHaveURL(/\/test-transaction\/runs\/TEST10000002\d+/);
    const result = page.locator("section.card").first();
    await expect(result.locator("h2 .badge.good")).toHaveText(w.approved);
    for (const step of [w.keys, w.signIn, w.sale, w.voided]) {
      await expect(result.locator("tr", { hasText: step }).locator(".badge.good")).toBeVisible();
    }
    const sale = result.locator("tr", { hasText: w.sale });
    await expect(sale).toContainText("622202*********0128");
    await expect(sale).toContainText(/\d{12}/);
    await expect(page.locator("h2", { hasText: w.entries })).toBeVisible();
    await expect(page.locator(".badge.good", { hasText: w.balanced }).first()).toBeVisible();
    await screenshot(page, `test-transaction-card-${lang}`);
    // A reload shows the same run: the same sale, not a new one.
    const url = page.url();
    const rrn = (await sale.locator("td").nth(4).innerText()).trim();
    await page.reload();
    await expect(page).toHaveURL(url);
    await expect(page.locator("section.card").first().locator("tr", { hasText: w.sale })).toContainText(rrn);
  });

  test(`a declined card is the card's answer (${lang})`, async ({ page }) => {
    await signIn(page, "owner", lang);
    await page.goto(`/test-transaction?lang=${lang}`);
    await page.locator("#terminal_id").selectOption("10000002");
    await page.locator("#kind").selectOption("card");
    await page.locator("#card").selectOption("expired");
    await page.locator("#amount").fill("1.00");
    await page.getByRole("button", { name: w.run }).click();
    const result = page.locator("section.card").first();
    await expect(result.locator("h2 .badge")).toHaveText(w.declined);
    await expect(result.locator("tr", { hasText: w.sale })).toContainText(w.expired);
    await expect(result.locator("tr", { hasText: w.voided })).toHaveCount(0);
  });
}
