// The terminal fleet and deposits (押金与流水达标), in English and Chinese, against `kassa up`
// with the wallet simulator. The test transaction (模拟交易) has its own spec.
const { test, expect } = require("@playwright/test");
const { signIn, signOut, screenshot } = require("./helpers.cjs");

test.describe.configure({ mode: "serial" });

const words = {
  en: {
    fleet: "Terminal fleet",
    deposits: "Deposits",
    held: /Held|Target reached/,
  },
  zh: {
    fleet: "终端管理",
    deposits: "押金",
    held: /押金冻结中|流水已达标/,
  },
};

test("the admin sets a deposit on a terminal", async ({ page }) => {
  await signIn(page, "admin");
  await page.goto("/deposits?lang=en");
  if (!(await page.locator("td", { hasText: "10000001" }).count())) {
    await page.locator("#terminal_id").fill("10000001");
    await page.locator("#amount").fill("299.00");
    await page.locator("#target").fill("5000.00");
    await page.locator("#days").fill("90");
    await page.locator("form[action='/deposits'] button[type=submit]").click();
    await expect(page.locator(".notice")).toContainText("The deposit was set");
  }
  await expect(page.locator("tr", { hasText: "10000001" })).toContainText("299.00 CNY");
  await signOut(page);
});

for (const lang of ["en", "zh"]) {
  const w = words[lang];

  test(`the fleet page shows each terminal's health (${lang})`, async ({ page }) => {
    await signIn(page, "admin", lang);
    await page.goto(`/terminals?merchant=898100000000001&lang=${lang}`);
    await expect(page.locator("h1")).toHaveText(w.fleet);
    for (const tid of ["10000001", "10000002", "10000003"]) {
      await expect(page.locator("tr", { hasText: tid }).first().locator(".badge").first()).toBeVisible();
    }
    await screenshot(page, `terminals-${lang}`);
  });

  test(`the merchant follows its deposit's progress (${lang})`, async ({ page }) => {
    await signIn(page, "owner", lang);
    await page.goto(`/deposits?lang=${lang}`);
    await expect(page.locator("h1")).toHaveText(w.deposits);
    const row = page.locator("tr", { hasText: "10000001" });
    await expect(row).toContainText(/[0-9,.]+ CNY \/ 5,000\.00 CNY/);
    await expect(row.locator(".badge")).toHaveText(w.held);
    await expect(row.locator("progress")).toBeVisible();
    await screenshot(page, `deposits-${lang}`);
  });
}
