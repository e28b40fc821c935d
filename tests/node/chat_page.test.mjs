// The chat page at GET / driven by headless Chromium (Debian's /usr/bin/chromium through
// playwright-core). DOM contract: textarea#prompt, button#send (Enter sends too), #messages holding
// div.message.user / div.message.assistant / div.message.error; the assistant message being streamed
// has class `streaming`, and data-finish-reason once done ("stopped" after button#stop);
// span#model-name (from /v1/models), div#auth-needed shown when the server wants a key; optional
// input#api-key, input#max-tokens, button#reset. No screenshots are written.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { WHOLE_FILE_SKIP, skipReason, startServer, stopAndCheck } from './server.mjs';

const CHROMIUM = process.env.BAICHUAN_CHROMIUM || '/usr/bin/chromium';
const skip = skipReason() ||
  (existsSync(CHROMIUM) ? false : `${WHOLE_FILE_SKIP} ${CHROMIUM} is absent (Debian package chromium)`);
// Long enough that the answer spans many frames even on a loaded machine (the tiny model makes a
// token in a few milliseconds): with 8 tokens the whole stream could land in one read.
const MAX_TOKENS = 160;
const TEST_TIMEOUT = 60_000;
const WAIT = 30_000;  // for one answer (an AddressSanitizer build is ~3x slower)

async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// Opens the page and records what the tests look at: every POST to the chat endpoint, requests that
// leave the server (the page must work offline), uncaught page errors, and — through a
// MutationObserver installed before the first message — how the last assistant message grew.
async function openPage(browser, server) {
  const page = await browser.newPage();
  const record = { chatRequests: [], foreign: [], pageErrors: [] };
  page.on('request', (req) => {
    const url = new URL(req.url());
    if (!['data:', 'blob:', 'about:'].includes(url.protocol) && url.origin !== server.url) record.foreign.push(req.url());
    if (req.method() === 'POST' && url.pathname.endsWith('/chat/completions')) {
      record.chatRequests.push({ body: req.postDataJSON(), headers: req.headers() });
    }
  });
  page.on('pageerror', (e) => record.pageErrors.push(String(e)));
  const response = await page.goto(`${server.url}/`, { waitUntil: 'load' });
  assert.equal(response.status(), 200, 'GET /');
  assert.match(response.headers()['content-type'] ?? '', /text\/html/, 'GET / content type');
  for (const sel of ['textarea#prompt', 'button#send', '#messages']) {
    assert.equal(await page.locator(sel).count(), 1, `the page has no ${sel}`);
  }
  if (await page.locator('input#max-tokens').count()) {
    assert.equal(await page.inputValue('input#max-tokens'), '256', 'default of input#max-tokens');
    await page.fill('input#max-tokens', String(MAX_TOKENS));
  }
  await page.evaluate(() => {
    window.__growth = [];         // text length of the newest assistant message, per DOM change
    window.__sawStreaming = 0;    // assistant messages seen with class `streaming`
    const seen = new WeakSet();
    const messages = document.querySelector('#messages');
    new MutationObserver(() => {
      const all = messages.querySelectorAll('div.message.assistant');
      const last = all[all.length - 1];
      if (!last) return;
      if (last.classList.contains('streaming') && !seen.has(last)) {
        seen.add(last);
        window.__sawStreaming += 1;
      }
      const n = last.textContent.length;
      const g = window.__growth;
      if (g.length === 0 || g[g.length - 1].n !== n || g[g.length - 1].el !== all.length) g.push({ el: all.length, n });
    }).observe(messages, { childList: true, subtree: true, characterData: true, attributes: true });
  });
  return { page, record };
}

// Waits until `count` assistant messages are finished (no `streaming`, a data-finish-reason), or an
// error message shows up.
async function waitForAnswers(page, count) {
  await page.waitForFunction((n) => {
    if (document.querySelector('#messages div.message.error')) return true;
    const done = document.querySelectorAll('#messages div.message.assistant[data-finish-reason]:not(.streaming)');
    return done.length >= n;
  }, count, { timeout: WAIT });
  const error = await page.locator('#messages div.message.error').allTextContents();
  assert.deepEqual(error, [], 'the page shows an error message');
}

const counts = (page) => page.evaluate(() => ({
  user: document.querySelectorAll('#messages div.message.user').length,
  assistant: document.querySelectorAll('#messages div.message.assistant').length,
  error: document.querySelectorAll('#messages div.message.error').length,
  all: document.querySelectorAll('#messages .message').length,
}));

describe('chat page in headless Chromium', { skip, timeout: 4 * TEST_TIMEOUT }, () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer({ args: ['--parallel', '2', '--ctx', '1024'] });
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await stopAndCheck(server, assert);
  });

  test('a conversation: streamed answers, history sent with the second message', { timeout: TEST_TIMEOUT }, async () => {
    const { page, record } = await openPage(browser, server);

    // First message, sent with the button.
    const first = 'Hello! What is the tallest mountain?';
    await page.fill('textarea#prompt', first);
    await page.click('button#send');
    await waitForAnswers(page, 1);
    assert.deepEqual(await counts(page), { user: 1, assistant: 1, error: 0, all: 2 });
    const answer1 = page.locator('#messages div.message.assistant').first();
    assert.equal(await page.locator('#messages div.message.user').first().textContent().then((t) => t.trim()), first);
    const text1 = (await answer1.textContent()).trim();
    assert.ok(text1.length > 0, 'the first answer is empty');
    assert.ok(['stop', 'length'].includes(await answer1.getAttribute('data-finish-reason')),
      `data-finish-reason ${await answer1.getAttribute('data-finish-reason')}`);

    let growth = await page.evaluate(() => window.__growth);
    const lengths1 = growth.filter((g) => g.el === 1 && g.n > 0).map((g) => g.n);
    assert.ok(lengths1.length > 1, `the first answer arrived in one piece (lengths seen: ${JSON.stringify(lengths1)})`);
    assert.ok(await page.evaluate(() => window.__sawStreaming) >= 1, 'no assistant message had class "streaming"');

    assert.equal(record.chatRequests.length, 1);
    const req1 = record.chatRequests[0].body;
    assert.equal(req1.stream, true, 'the page streams');
    const dialog1 = req1.messages.filter((m) => m.role !== 'system');
    assert.deepEqual(dialog1, [{ role: 'user', content: first }]);
    if (req1.max_tokens !== undefined) assert.equal(req1.max_tokens, MAX_TOKENS, 'max_tokens from input#max-tokens');

    // Second message, sent with Enter: the request carries the whole conversation.
    const second = 'And the longest river?';
    await page.fill('textarea#prompt', second);
    await page.press('textarea#prompt', 'Enter');
    await waitForAnswers(page, 2);
    assert.deepEqual(await counts(page), { user: 2, assistant: 2, error: 0, all: 4 });
    const roles = await page.evaluate(() => [...document.querySelectorAll('#messages .message')]
      .map((m) => (m.classList.contains('user') ? 'user' : m.classList.contains('assistant') ? 'assistant' : 'other')));
    assert.deepEqual(roles, ['user', 'assistant', 'user', 'assistant'], 'message order');
    const text2 = (await page.locator('#messages div.message.assistant').nth(1).textContent()).trim();
    assert.ok(text2.length > 0, 'the second answer is empty');
    growth = await page.evaluate(() => window.__growth);
    const lengths2 = growth.filter((g) => g.el === 2 && g.n > 0).map((g) => g.n);
    assert.ok(lengths2.length > 1, `the second answer arrived in one piece (lengths seen: ${JSON.stringify(lengths2)})`);

    assert.equal(record.chatRequests.length, 2, 'Enter sent exactly one request');
    const dialog2 = record.chatRequests[1].body.messages.filter((m) => m.role !== 'system');
    assert.deepEqual(dialog2.map((m) => m.role), ['user', 'assistant', 'user'], JSON.stringify(dialog2));
    assert.equal(dialog2[0].content, first);
    assert.equal(dialog2[1].content.trim(), text1, 'the history carries the first answer as shown');
    assert.equal(dialog2[2].content, second);

    // Reset (when the page has it) starts a new conversation.
    if (await page.locator('button#reset').count()) {
      await page.click('button#reset');
      assert.equal((await counts(page)).all, 0, 'messages left after reset');
      await page.fill('textarea#prompt', 'A new start.');
      await page.click('button#send');
      await waitForAnswers(page, 1);
      assert.deepEqual(await counts(page), { user: 1, assistant: 1, error: 0, all: 2 });
      const dialog3 = record.chatRequests[2].body.messages.filter((m) => m.role !== 'system');
      assert.deepEqual(dialog3, [{ role: 'user', content: 'A new start.' }], 'history after reset');
    }

    assert.deepEqual(record.foreign, [], 'the page loads nothing from other origins');
    assert.deepEqual(record.pageErrors, [], 'uncaught errors in the page');
    await page.close();
  });
});

// A value from /metrics (Prometheus text), as a number.
async function metric(server, name) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`baichuan_${name} `));
  return Number(line?.split(' ')[1]);
}

describe('chat page: model name and Stop', { skip, timeout: 2 * TEST_TIMEOUT }, () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer({ args: ['--parallel', '1', '--ctx', '1024'] });
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await stopAndCheck(server, assert);
  });

  test('the model name shows; Stop ends the answer, keeps it, and the server stops generating',
    { timeout: TEST_TIMEOUT }, async () => {
      const { page, record } = await openPage(browser, server);
      const models = await (await fetch(`${server.url}/v1/models`)).json();
      await page.waitForFunction((id) => document.querySelector('#model-name')?.textContent === id,
        models.data[0].id, { timeout: WAIT });
      assert.equal(await page.locator('#auth-needed').isVisible(), false, 'no key is needed here');
      assert.ok(await page.locator('button#stop').isDisabled(), 'Stop is enabled with nothing to stop');

      await page.fill('input#max-tokens', '1000');  // far longer than the test waits
      await page.fill('textarea#prompt', 'Tell me a very long story.');
      await page.click('button#send');
      await page.waitForFunction(() => {
        const m = document.querySelector('#messages div.message.assistant.streaming');
        return m && m.textContent.length > 0;
      }, null, { timeout: WAIT });
      assert.ok(await page.locator('button#stop').isEnabled(), 'Stop is disabled while streaming');
      await page.click('button#stop');
      await page.waitForSelector('#messages div.message.assistant[data-finish-reason="stopped"]:not(.streaming)',
        { timeout: WAIT });
      const partial = (await page.locator('#messages div.message.assistant').first().textContent()).trim();
      assert.ok(partial.length > 0, 'the stopped answer was removed');
      assert.equal((await counts(page)).error, 0, 'Stop shows an error');
      assert.ok(await page.locator('button#send').isEnabled(), 'Send stays disabled after Stop');

      // The server noticed the client leaving: the slot is free and no more tokens are made.
      const deadline = Date.now() + 10_000;
      while (await metric(server, 'requests_active') !== 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(await metric(server, 'requests_active'), 0, 'the generation went on after Stop');
      const generated = await metric(server, 'generated_tokens_total');
      assert.ok(generated < 1000, `generated ${generated} tokens: the answer ran to its end`);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await metric(server, 'generated_tokens_total'), generated, 'tokens still being generated');

      // The conversation goes on, with the stopped answer in its history.
      await page.fill('input#max-tokens', '8');
      await page.fill('textarea#prompt', 'Go on.');
      await page.click('button#send');
      await waitForAnswers(page, 2);
      const dialog = record.chatRequests[1].body.messages.filter((m) => m.role !== 'system');
      assert.deepEqual(dialog.map((m) => m.role), ['user', 'assistant', 'user']);
      assert.equal(dialog[1].content.trim(), partial);
      assert.deepEqual(record.pageErrors, [], 'uncaught errors in the page');
      await page.close();
    });
});

describe('chat page against baichuan serve --api-key', { skip, timeout: 3 * TEST_TIMEOUT }, () => {
  const KEY = 'page-key-42';
  let server;
  let browser;

  before(async () => {
    server = await startServer({ args: ['--api-key', KEY, '--parallel', '1', '--ctx', '512'] });
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await stopAndCheck(server, assert);
  });

  test('a refused request shows as div.message.error; with the key it works', { timeout: TEST_TIMEOUT }, async () => {
    const { page, record } = await openPage(browser, server);
    // Before any message, the page says a key is needed (from its /v1/models request).
    await page.waitForSelector('#auth-needed', { state: 'visible', timeout: WAIT });
    assert.match(await page.locator('#auth-needed').textContent(), /API key/);
    assert.equal(await page.locator('#model-name').textContent(), '(API key needed)');
    await page.fill('textarea#prompt', 'Hello?');
    await page.click('button#send');
    await page.waitForSelector('#messages div.message.error', { timeout: WAIT });
    assert.ok((await page.locator('#messages div.message.error').first().textContent()).trim().length > 0,
      'the error message is empty');
    assert.equal(await page.locator('#messages .streaming').count(), 0, 'a message still streaming after the error');
    assert.match(await page.locator('#messages div.message.error').first().textContent(), /API key.*401/);

    if (await page.locator('input#api-key').count()) {
      await page.fill('input#api-key', KEY);
      // With the key the model name shows and the notice goes.
      const models = await (await fetch(`${server.url}/v1/models`, { headers: { Authorization: `Bearer ${KEY}` } })).json();
      await page.waitForFunction((id) => document.querySelector('#model-name')?.textContent === id,
        models.data[0].id, { timeout: WAIT });
      assert.equal(await page.locator('#auth-needed').isVisible(), false, 'the key notice stays with the right key');
      if (await page.locator('button#reset').count()) await page.click('button#reset');
      await page.fill('textarea#prompt', 'Hello again?');
      await page.click('button#send');
      await page.waitForFunction(
        () => [...document.querySelectorAll('#messages div.message.assistant[data-finish-reason]:not(.streaming)')]
          .some((m) => ['stop', 'length'].includes(m.dataset.finishReason)),
        null, { timeout: WAIT });
      const last = record.chatRequests[record.chatRequests.length - 1];
      assert.equal(last.headers.authorization, `Bearer ${KEY}`);
      const text = (await page.locator('#messages div.message.assistant').last().textContent()).trim();
      assert.ok(text.length > 0, 'empty answer with the right key');
    }
    assert.deepEqual(record.pageErrors, [], 'uncaught errors in the page');
    await page.close();
  });
});
