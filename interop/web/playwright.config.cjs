// The browser suite's configuration: Debian's chromium, one worker (the specs share one
// `kassa up` and its demo users), a phone-sized and a desktop-sized page where a spec asks.
const { defineConfig } = require("@playwright/test");

module.exports = defineConfig({
  testDir: "./tests",
  testMatch: /.*\.spec\.cjs$/,
  workers: 1,
  fullyParallel: false,
  timeout: 60_000,
  expect: { timeout: 10_000 },
  reporter: [["list"]],
  // Traces and failure artefacts stay outside the clone.
  outputDir: process.env.KASSA_WEB_RESULTS || "/tmp/kassa-web-results",
  use: {
    baseURL: process.env.KASSA_URL,
    headless: true,
    launchOptions: {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
    },
    viewport: { width: 1280, height: 900 },
  },
});
