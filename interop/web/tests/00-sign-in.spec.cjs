// Sign-in, the forced first change, a wrong password, both languages, sign-out.
const { test, expect } = require("@playwright/test");
const { signIn, signOut, screenshot } = require("./helpers.cjs");

for (const lang of ["en", "zh"]) {
  test(`sign-in page and a wrong password (${lang})`, async ({ page }) => {
    await page.goto(`/login?lang=${lang}`);
    await expect(page.locator("html")).toHaveAttribute("lang", lang === "en" ? "en" : "zh-CN");
    await page.locator("#username").fill("reviewer");
    await page.locator("#password").fill("not-the-password-1");
    await page.locator("form[action='/login'] button[type=submit]").click();
    await expect(page.locator("#login-error")).toContainText(lang === "en" ? "Wrong username or password" : "用户名或密码错误");
    if (lang === "en") await screenshot(page, "login");
  });
}

test("each demo user signs in (changing the initial password) and out", async ({ page }) => {
  for (const user of ["admin", "reviewer", "owner"]) {
    await signIn(page, user);
    await expect(page.locator("nav a[aria-current=page]")).toHaveText("Dashboard");
    await signOut(page);
  }
});
