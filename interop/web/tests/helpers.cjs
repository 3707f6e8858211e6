// What every spec shares: signing in the demo users (changing the initial password once, at
// the first sign-in of the run), the language switch, and screenshots of the main pages.
const { expect } = require("@playwright/test");
const fs = require("fs");
const path = require("path");

/** The demo users' initial password (interfaces: demo data), and the one this run sets. */
const INITIAL = "Kassa-Demo-2026!";
const CHANGED = "Kassa-Web-Run-2027";

/** Signs `username` in; at the first sign-in of the run, changes the initial password. */
async function signIn(page, username, lang = "en") {
  await page.goto(`/login?lang=${lang}`);
  await page.locator("#username").fill(username);
  await page.locator("#password").fill(CHANGED);
  await page.locator("form[action='/login'] button[type=submit]").click();
  if (await page.locator("#login-error").count()) {
    await page.locator("#username").fill(username);
    await page.locator("#password").fill(INITIAL);
    await page.locator("form[action='/login'] button[type=submit]").click();
    await expect(page).toHaveURL(/\/password/);
    await page.locator("#old").fill(INITIAL);
    await page.locator("#new").fill(CHANGED);
    await page.locator("#confirm").fill(CHANGED);
    await page.locator("form[action='/password'] button[type=submit]").click();
    await expect(page).toHaveURL(/done=done-password-changed/);
  }
  await expect(page.locator("header .who")).toContainText(username);
}

/** Signs out. */
async function signOut(page) {
  await page.locator("form[action='/logout'] button").click();
  await expect(page).toHaveURL(/\/login/);
}

/** Saves a full-page screenshot when KASSA_SCREENSHOTS names a directory. */
async function screenshot(page, name) {
  const dir = process.env.KASSA_SCREENSHOTS;
  if (!dir) return;
  fs.mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true });
}

/** The demo data written by `kassa up`. */
function credentials() {
  return JSON.parse(fs.readFileSync(path.join(process.env.KASSA_DATA, "demo", "credentials.json"), "utf8"));
}

module.exports = { signIn, signOut, screenshot, credentials, INITIAL, CHANGED };
