// Open a study in the OHIF viewer (headless Debian Chromium driven by playwright-core), load our SEG and
// save a screenshot. Prints {"before": n, "after": m, "changed": k}: coloured pixels in the viewport canvas
// before and after the SEG is shown, and pixels the SEG changed (the objective check: colour images are
// coloured anyway). Usage: node ohif_screenshot.cjs URL OUTPUT.png CHROMIUM
const { chromium } = require('playwright-core');

const [url, output, executablePath] = process.argv.slice(2);

async function canvasPixels(page, remember) {
  return page.evaluate(remember => {
    let coloured = 0, changed = 0;
    const canvases = [...document.querySelectorAll('canvas.cornerstone-canvas')];
    const previous = window.__medcamBefore || [];
    const snapshots = canvases.map((canvas, index) => {
      const context = canvas.getContext('2d');
      if (!context) return null;
      const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
      const before = previous[index];
      for (let i = 0; i < data.length; i += 4) {
        const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
        if (Math.max(Math.abs(r - g), Math.abs(r - b), Math.abs(g - b)) > 40) coloured += 1;
        if (before && before.length === data.length &&
            Math.max(Math.abs(r - before[i]), Math.abs(g - before[i + 1]), Math.abs(b - before[i + 2])) > 40) {
          changed += 1;
        }
      }
      return data;
    });
    if (remember) window.__medcamBefore = snapshots;
    return { coloured, changed };
  }, remember);
}

async function clickIfVisible(page, text) {
  const button = page.getByText(text, { exact: true });
  if (await button.count()) {
    await button.first().click({ timeout: 2000 }).catch(() => {});
  }
}

(async () => {
  const browser = await chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--enable-unsafe-swiftshader'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on('pageerror', error => console.error('page error:', error.message));
  page.on('console', message => { if (message.type() === 'error') console.error('console:', message.text()); });
  await page.goto(url, { waitUntil: 'load', timeout: 120000 });
  await page.waitForSelector('canvas.cornerstone-canvas', { timeout: 120000 });
  await page.waitForTimeout(4000);
  await clickIfVisible(page, 'Skip all');
  await page.waitForTimeout(1000);
  const before = (await canvasPixels(page, true)).coloured;
  if (process.env.OHIF_DEBUG) await page.screenshot({ path: output.replace('.png', '-before.png') });
  const thumbnail = page.getByText('SEG', { exact: true }).first();
  await thumbnail.dblclick({ timeout: 30000 });
  await page.waitForTimeout(1500);
  await clickIfVisible(page, 'Yes');
  await page.waitForTimeout(6000);
  await clickIfVisible(page, 'Skip all');
  const { coloured: after, changed } = await canvasPixels(page, false);
  await page.screenshot({ path: output });
  await browser.close();
  console.log(JSON.stringify({ before, after, changed }));
})().catch(error => { console.error(error); process.exit(1); });
