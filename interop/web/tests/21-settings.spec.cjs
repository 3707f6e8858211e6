// Settings (设置), in English and Chinese: the demo merchant's owner changes the refund password
// (the default-password warning goes away) and the payment-code settings (付款码设置).
const { test, expect } = require("@playwright/test");
const { signIn, signOut, screenshot } = require("./helpers.cjs");

test.describe.configure({ mode: "serial" });

const words = {
  en: {
    title: "Settings",
    change: "Change refund password",
    changed: "The refund password was changed.",
    wrong: "Wrong refund password",
    save: "Save payment-code settings",
    saved: "The payment-code settings were saved; terminals pick them up at their next contact.",
    policy: "Back-office password policy",
  },
  zh: {
    title: "设置",
    change: "修改退款密码",
    changed: "退款密码已修改。",
    wrong: "退款密码错误",
    save: "保存付款码设置",
    saved: "付款码设置已保存；终端下次联机时生效。",
    policy: "后台密码策略",
  },
};

// The demo refund password, then the ones this run sets.
const passwords = { en: ["123456", "246810"], zh: ["246810", "135791"] };

for (const lang of ["en", "zh"]) {
  const w = words[lang];
  const [old, next] = passwords[lang];

  test(`the owner changes the refund password and the payment-code settings (${lang})`, async ({ page }) => {
    await signIn(page, "owner", lang);
    await page.goto(`/settings?lang=${lang}`);
    await expect(page.locator("h1")).toHaveText(w.title);
    await expect(page.locator("main")).toContainText(w.policy);
    if (lang === "en") {
      // The demo refund password is the default one: a risk, said so.
      await expect(page.locator("#refund-default")).toBeVisible();
    }
    // A wrong current password is refused and counted.
    await page.locator("#refund-old").fill("999999");
    await page.locator("#refund-new").fill(next);
    await page.locator("#refund-confirm").fill(next);
    await page.getByRole("button", { name: w.change }).click();
    await expect(page.locator(".error")).toContainText(w.wrong);
    await page.locator("#refund-old").fill(old);
    await page.locator("#refund-new").fill(next);
    await page.locator("#refund-confirm").fill(next);
    await page.getByRole("button", { name: w.change }).click();
    await expect(page.locator(".notice")).toContainText(w.changed);
    await expect(page.locator("#refund-default")).toHaveCount(0);

    // The payment-code settings: the QR validity changes; every terminal keeps taking QR.
    const minutes = lang === "en" ? "10" : "15";
    await page.locator("#qr-validity").fill(minutes);
    await page.locator("#paycode-reason").fill(lang === "en" ? "longer queues at lunch" : "午餐高峰排队较长");
    await page.getByRole("button", { name: w.save }).click();
    await expect(page.locator(".notice")).toContainText(w.saved);
    await expect(page.locator("#qr-validity")).toHaveValue(minutes);
    await screenshot(page, `settings-${lang}`);
    await signOut(page);
  });
}
