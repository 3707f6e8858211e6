// Merchants (商户管理), in English and Chinese: the institution admin adds a terminal to the demo
// merchant, copies its master key (TMK) and TMS credential from the page that shows them once,
// runs a card test as the new terminal, and disables and enables it again.
const { test, expect } = require("@playwright/test");
const { signIn, screenshot } = require("./helpers.cjs");

test.describe.configure({ mode: "serial" });

const MERCHANT = "898100000000001";

const words = {
  en: {
    add: "Add terminal",
    added: "The terminal was added.",
    once: "shown this once",
    disable: "Disable",
    enable: "Enable",
    disabled: "The terminal was disabled.",
    enabled: "The terminal was enabled.",
    run: "Run test transaction",
    approved: "Approved 0.10 CNY and cancelled at once",
  },
  zh: {
    add: "添加终端",
    added: "终端已添加。",
    once: "只显示这一次",
    disable: "停用",
    enable: "启用",
    disabled: "终端已停用。",
    enabled: "终端已启用。",
    run: "发起模拟交易",
    approved: "交易成功 0.10 CNY，已立即撤销",
  },
};

const TERMINALS = { en: "10000021", zh: "10000022" };

for (const lang of ["en", "zh"]) {
  const w = words[lang];
  const terminal = TERMINALS[lang];

  test(`the admin adds a terminal and sees its keys once (${lang})`, async ({ page }) => {
    await signIn(page, "admin", lang);
    await page.goto(`/merchants/${MERCHANT}?lang=${lang}`);
    await page.locator("#terminal_id").fill(terminal);
    await page.locator("#refund_password_mode").selectOption("device");
    await page.locator("#mac_algorithm").selectOption("x919");
    await page.getByRole("button", { name: w.add, exact: true }).click();
    await expect(page.locator(".notice")).toContainText(w.added);
    await expect(page.locator("#new-terminal-secrets .warning")).toContainText(w.once);
    const tmk = await page.locator("#new-tmk").inputValue();
    expect(tmk).toMatch(/^[0-9A-F]{32}$/);
    expect(await page.locator("#new-tms-credential").inputValue()).toMatch(/^[0-9a-f]{64}$/);
    await screenshot(page, `merchant-terminal-added-${lang}`);
    // Never again: the merchant's page lists the terminal, not its key.
    await page.goto(`/merchants/${MERCHANT}?lang=${lang}`);
    await expect(page.locator("tr", { hasText: terminal })).toBeVisible();
    expect(await page.content()).not.toContain(tmk);

    // The new terminal really signs in and sells: a card test as it.
    await page.goto(`/test-transaction?merchant=${MERCHANT}&lang=${lang}`);
    await page.locator("#terminal_id").selectOption(terminal);
    await page.locator("#kind").selectOption("card");
    await page.locator("#card").selectOption("approved");
    await page.locator("#amount").fill("0.10");
    await page.getByRole("button", { name: w.run }).click();
    await expect(page.locator("section.card").first().locator("h2 .badge.good")).toHaveText(w.approved);
  });

  test(`the admin disables and enables a terminal (${lang})`, async ({ page }) => {
    await signIn(page, "admin", lang);
    await page.goto(`/merchants/${MERCHANT}?lang=${lang}`);
    page.once("dialog", (dialog) => dialog.accept());
    await page.locator("tr", { hasText: terminal }).getByRole("button", { name: w.disable }).click();
    await expect(page.locator(".notice")).toContainText(w.disabled);
    await page.locator("tr", { hasText: terminal }).getByRole("button", { name: w.enable }).click();
    await expect(page.locator(".notice")).toContainText(w.enabled);
    await expect(page.locator("tr", { hasText: terminal }).getByRole("button", { name: w.disable })).toBeVisible();
  });
}
