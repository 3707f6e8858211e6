// Transactions (交易查询) and the dashboard (概览), in English and Chinese: the owner makes a QR
// test payment of 0.05 (so there is a payment to find whatever ran before), sees the dashboard,
// searches for the payment with filters, opens its detail (facts, balanced journal entries,
// refunds, audit trail) and downloads the CSV export of the search.
const { test, expect } = require("@playwright/test");
const fs = require("fs");
const { signIn, screenshot } = require("./helpers.cjs");

const HEADER =
  "created_at_utc,merchant_id,source,id,kind,channel,status,amount,refunded,currency,terminal_id,reference,trade_no,pan_masked,business_date";

const words = {
  en: {
    run: "Run test transaction",
    dashboard: "Dashboard",
    paidToday: "Paid today",
    pending: "Waiting for someone",
    title: "Transactions",
    search: "Search",
    alipay: "Alipay",
    export: "Export CSV",
    facts: "Facts",
    entries: "Journal entries",
    balanced: "Balanced",
    audit: "Audit trail",
  },
  zh: {
    run: "发起模拟交易",
    dashboard: "概览",
    paidToday: "今日收款",
    pending: "待处理事项",
    title: "交易查询",
    search: "查询",
    alipay: "支付宝",
    export: "导出 CSV",
    facts: "交易信息",
    entries: "会计分录",
    balanced: "借贷平衡",
    audit: "审计记录",
  },
};

for (const lang of ["en", "zh"]) {
  const w = words[lang];

  test(`the owner searches, opens a detail and exports the search (${lang})`, async ({ page }) => {
    await signIn(page, "owner", lang);
    await page.goto(`/test-transaction?lang=${lang}`);
    await page.locator("#terminal_id").selectOption("10000002");
    await page.locator("#kind").selectOption("qr");
    await page.locator("#code").selectOption("281234567890123401");
    await page.locator("#amount").fill("0.05");
    await page.getByRole("button", { name: w.run }).click();
    await expect(page.locator("section.card").first()).toBeVisible();

    await page.goto(`/?lang=${lang}`);
    await expect(page.locator("h1")).toHaveText(w.dashboard);
    await expect(page.locator("a.tile", { hasText: w.paidToday })).toBeVisible();
    await expect(page.locator("h2", { hasText: w.pending })).toBeVisible();
    await expect(page.locator("svg[role=img]").first()).toBeVisible();
    await screenshot(page, `dashboard-${lang}`);

    await page.goto(`/transactions?lang=${lang}`);
    await expect(page.locator("h1")).toHaveText(w.title);
    await page.locator("#channel").selectOption("alipay");
    await page.locator("#amount_min").fill("0.05");
    await page.locator("#amount_max").fill("0.05");
    await page.getByRole("button", { name: w.search, exact: true }).click();
    await expect(page).toHaveURL(/channel=alipay/);
    const row = page.locator("tbody tr", { hasText: "0.05 CNY" }).first();
    await expect(row).toContainText(w.alipay);
    await screenshot(page, `transactions-${lang}`);

    // The export of the same search: a file with the header line and the payment.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("link", { name: w.export }).click(),
    ]);
    const text = fs.readFileSync(await download.path(), "utf8");
    const lines = text.split("\r\n").filter((line) => line.length > 0);
    expect(lines[0]).toBe(HEADER);
    expect(lines.length).toBeGreaterThan(1);
    expect(lines.slice(1).every((line) => line.includes(",alipay,") && line.includes(",0.05,"))).toBeTruthy();

    await row.locator("a").first().click();
    await expect(page).toHaveURL(/\/transactions\/qr\/\d+/);
    await expect(page.locator("h2", { hasText: w.facts })).toBeVisible();
    await expect(page.locator("dl.facts")).toContainText("0.05 CNY");
    await expect(page.locator("h2", { hasText: w.entries })).toBeVisible();
    await expect(page.locator(".badge.good", { hasText: w.balanced }).first()).toBeVisible();
    await expect(page.locator("h2", { hasText: w.audit })).toBeVisible();
    await screenshot(page, `transaction-detail-${lang}`);
  });
}
