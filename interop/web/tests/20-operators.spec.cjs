// Operators (操作员管理), in English and Chinese: the demo merchant's owner resets a cashier's
// forgotten password to a new initial one (the cashier must change it at the first sign-in on
// the terminal), and sees the default-password risks; the institution admin lists the
// back-office users (role, state, last sign-in).
const { test, expect } = require("@playwright/test");
const { signIn, signOut, screenshot } = require("./helpers.cjs");

test.describe.configure({ mode: "serial" });

const MERCHANT = "898100000000001";

const words = {
  en: {
    title: "Operators",
    of: `Terminal operators of ${MERCHANT}`,
    reset: "Reset forgotten password",
    submit: "Reset password of 01",
    done: "The password was reset; the operator must change it at the first sign-in.",
    mustChange: "Must change password",
    mismatch: "The two passwords differ.",
    risks: "Default-password risks",
    lastSignIn: "Last sign-in",
    ownerRole: "Merchant owner",
  },
  zh: {
    title: "操作员管理",
    of: `商户 ${MERCHANT} 的终端操作员`,
    reset: "重置忘记的密码",
    submit: "重置 01 的密码",
    done: "密码已重置；操作员首次签到时必须修改。",
    mustChange: "须修改密码",
    mismatch: "两次输入的密码不一致。",
    risks: "默认密码风险",
    lastSignIn: "最近登录",
    ownerRole: "商户负责人",
  },
};

for (const lang of ["en", "zh"]) {
  const w = words[lang];

  test(`an owner resets an operator's forgotten password (${lang})`, async ({ page }) => {
    await signIn(page, "owner", lang);
    await page.goto(`/operators?lang=${lang}`);
    await expect(page.locator("h1")).toHaveText(w.title);
    await expect(page.locator("main")).toContainText(w.of);
    await expect(page.locator("main")).toContainText(w.risks);
    const row = page.locator("#operator-01");
    await row.locator("summary", { hasText: w.reset }).click();
    // Typed twice; a slip is caught before anything changes.
    await row.locator("#reset-01-password").fill("2580");
    await row.locator("#reset-01-confirm").fill("2581");
    await row.getByRole("button", { name: w.submit }).click();
    await expect(page.locator(".error")).toContainText(w.mismatch);
    const again = page.locator("#operator-01");
    await again.locator("summary", { hasText: w.reset }).click();
    await again.locator("#reset-01-password").fill(lang === "en" ? "2580" : "3691");
    await again.locator("#reset-01-confirm").fill(lang === "en" ? "2580" : "3691");
    await again.locator("#reset-01-reason").fill(lang === "en" ? "forgot it" : "忘记密码");
    await again.getByRole("button", { name: w.submit }).click();
    await expect(page.locator(".notice")).toContainText(w.done);
    await expect(page.locator("#operator-01")).toContainText(w.mustChange);
    await screenshot(page, `operators-${lang}`);
    await signOut(page);
  });

  test(`the admin lists the back-office users (${lang})`, async ({ page }) => {
    await signIn(page, "admin", lang);
    await page.goto(`/operators?lang=${lang}`);
    const list = page.locator("#users-list");
    await expect(list).toContainText(w.lastSignIn);
    const owner = list.locator("tr", { has: page.getByRole("link", { name: "owner", exact: true }) });
    await expect(owner).toContainText(w.ownerRole);
    await expect(owner).toContainText(MERCHANT);
    // The owner signed in above: a time, not "never".
    await expect(owner).toContainText("UTC");
    await owner.getByRole("link", { name: "owner", exact: true }).click();
    await expect(page).toHaveURL(/user=owner/);
    await screenshot(page, `operators-users-${lang}`);
    await signOut(page);
  });
}
