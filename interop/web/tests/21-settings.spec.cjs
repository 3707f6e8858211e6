// Settings (设置), in English and Chinese: the demo merchant's owner changes the refund password
// (the default-password warning goes away) and the payment-code settings (付款码设置); the
// institution admin changes the back-office password policy (后台密码策略).
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
    savePolicy: "Save password policy",
    policySaved: "The password policy was saved; it applies from the next sign-in and password change.",
    lengthLabel: "Minimum length (8–128 characters)",
  },
  zh: {
    title: "设置",
    change: "修改退款密码",
    changed: "退款密码已修改。",
    wrong: "退款密码错误",
    save: "保存付款码设置",
    saved: "付款码设置已保存；终端下次联机时生效。",
    policy: "后台密码策略",
    savePolicy: "保存密码策略",
    policySaved: "密码策略已保存，从下一次登录和修改密码起生效。",
    lengthLabel: "最短长度（8–128 个字符）",
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

// The policy the admin sets in each language: a longer minimum than the default 12, still met by
// the password the suite's sign-ins set (helpers.cjs, 18 characters).
const lengths = { en: "14", zh: "16" };

for (const lang of ["en", "zh"]) {
  const w = words[lang];

  test(`the admin changes the back-office password policy (${lang})`, async ({ page }) => {
    await signIn(page, "admin", lang);
    await page.goto(`/settings?lang=${lang}`);
    await expect(page.locator("main")).toContainText(w.policy);
    await page.getByLabel(w.lengthLabel).fill(lengths[lang]);
    await page.locator("#policy-reason").fill(lang === "en" ? "longer passwords after the audit" : "审计后要求更长的密码");
    await page.getByRole("button", { name: w.savePolicy }).click();
    await expect(page.locator(".notice")).toContainText(w.policySaved);
    await expect(page.locator("#policy-length-min")).toHaveValue(lengths[lang]);
    await screenshot(page, `settings-policy-${lang}`);
    await signOut(page);
  });
}
