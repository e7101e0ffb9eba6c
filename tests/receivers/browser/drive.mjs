// Open one page in Debian's headless Chromium (playwright-core, no downloaded browser) and wait
// until the page sets window.__done; print one JSON line {ok, result, console, errors}.
//   node drive.mjs URL [timeout_ms]      CHROMIUM=/usr/bin/chromium by default
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [url, timeoutArg] = process.argv.slice(2);
const timeout = Number(timeoutArg || 30000);
const profile = mkdtempSync(join(tmpdir(), "widgettrace-chromium-"));
const consoleLines = [];
const pageErrors = [];
let context;
let out = { ok: false };
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => pageErrors.push(String(err && err.message)));
  await page.goto(url);
  await page.waitForFunction(() => window.__done === true, null, { timeout });
  out = { ok: true, result: await page.evaluate(() => window.__result ?? null) };
} catch (err) {
  out = { ok: false, error: String(err && err.message) };
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify({ ...out, console: consoleLines, errors: pageErrors }));
process.exit(out.ok ? 0 : 1);
