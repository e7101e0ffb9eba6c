// The page's copy of the real @sentry/browser: `npm run build` bundles it into
// build/sentry-browser.js (an IIFE that sets window.Sentry), served by the test's page server.
import * as Sentry from "@sentry/browser";

window.Sentry = Sentry;
