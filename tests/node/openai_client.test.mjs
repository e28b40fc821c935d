// `baichuan serve` through the official OpenAI Node.js client (the `openai` npm package).
// The tiny test model has random weights: its text is noise, so the tests compare the server with
// itself (streamed vs. not, same seed twice, stop strings cut a known answer) and check shapes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { skipReason, startServer, stopAndCheck } from './server.mjs';

const skip = skipReason();
const MAX_TOKENS = 12;
const TEST_TIMEOUT = 60_000;

function client(server, apiKey = 'no-key-needed') {
  return new OpenAI({ baseURL: server.baseURL, apiKey, maxRetries: 0, timeout: 30_000 });
}

// Asserts that `promise` rejects with an instance of `ErrorClass` and HTTP `status`.
async function rejectsWith(promise, ErrorClass, status, what) {
  let error;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  assert.ok(error, `${what}: the request succeeded, expected HTTP ${status}`);
  assert.ok(error instanceof ErrorClass,
    `${what}: expected ${ErrorClass.name}, got ${error?.constructor?.name}: ${error?.message}`);
  assert.equal(error.status, status, `${what}: HTTP status`);
  // The body is an OpenAI error object: {"error": {"message": ..., "type": ...}}.
  assert.equal(typeof error.error?.message, 'string', `${what}: error body ${JSON.stringify(error.error)}`);
  assert.ok(error.error.message.length > 0, `${what}: empty error message`);
  return error;
}

// Splits text into code points, so a stop string never cuts a surrogate pair.
const codePoints = (s) => Array.from(s);

describe('openai client against baichuan serve', { skip, timeout: 5 * TEST_TIMEOUT }, () => {
  let server;
  let openai;
  let model;
  const question = [{ role: 'user', content: 'Tell me about the Yangtze river.' }];

  before(async () => {
    server = await startServer({ args: ['--parallel', '2', '--ctx', '512'] });
    openai = client(server);
  });
  after(async () => {
    await stopAndCheck(server, assert);
  });

  test('models.list() names the served model', { timeout: TEST_TIMEOUT }, async () => {
    const page = await openai.models.list();
    assert.ok(Array.isArray(page.data) && page.data.length >= 1, `models: ${JSON.stringify(page.data)}`);
    for (const m of page.data) {
      assert.equal(typeof m.id, 'string');
      assert.ok(m.id.length > 0);
      assert.equal(m.object, 'model');
    }
    model = page.data[0].id;
    // The same listing through the iterator the client offers.
    const ids = [];
    for await (const m of openai.models.list()) ids.push(m.id);
    assert.deepEqual(ids, page.data.map((m) => m.id));
  });

  test('/health, /tokenize, /detokenize, /metrics', { timeout: TEST_TIMEOUT }, async () => {
    const health = await fetch(`${server.url}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok' });

    const text = 'Hello, 世界! 百川';
    const tok = await fetch(`${server.url}/tokenize`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ content: text }),
    });
    assert.equal(tok.status, 200);
    const { tokens } = await tok.json();
    assert.ok(Array.isArray(tokens) && tokens.length > 0 && tokens.every(Number.isInteger), JSON.stringify(tokens));
    const detok = await fetch(`${server.url}/detokenize`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tokens }),
    });
    assert.equal(detok.status, 200);
    assert.equal((await detok.json()).content, text);

    const metrics = await fetch(`${server.url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(await metrics.text(), /^# (HELP|TYPE) /m);
  });

  let greedy;  // the non-streamed greedy answer to `question`
  test('chat completion, not streamed', { timeout: TEST_TIMEOUT }, async () => {
    const r = await openai.chat.completions.create({
      model: model ?? 'baichuan', messages: question, max_tokens: MAX_TOKENS, temperature: 0,
    });
    assert.equal(r.object, 'chat.completion');
    assert.equal(typeof r.id, 'string');
    assert.equal(typeof r.created, 'number');
    assert.equal(r.choices.length, 1);
    const [choice] = r.choices;
    assert.equal(choice.index, 0);
    assert.equal(choice.message.role, 'assistant');
    assert.equal(typeof choice.message.content, 'string');
    assert.ok(['stop', 'length'].includes(choice.finish_reason), `finish_reason ${choice.finish_reason}`);
    const u = r.usage;
    assert.ok(Number.isInteger(u.prompt_tokens) && u.prompt_tokens > 0, `usage ${JSON.stringify(u)}`);
    assert.ok(Number.isInteger(u.completion_tokens) && u.completion_tokens >= 1 && u.completion_tokens <= MAX_TOKENS,
      `usage ${JSON.stringify(u)}`);
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    if (choice.finish_reason === 'length') assert.equal(u.completion_tokens, MAX_TOKENS);
    assert.ok(choice.message.content.length > 0, 'empty answer');
    greedy = choice.message;

    // Greedy decoding is deterministic.
    const again = await openai.chat.completions.create({
      model: model ?? 'baichuan', messages: question, max_tokens: MAX_TOKENS, temperature: 0,
    });
    assert.equal(again.choices[0].message.content, greedy.content);
  });

  test('chat completion, streamed: the deltas add up to the greedy answer', { timeout: TEST_TIMEOUT }, async () => {
    assert.ok(greedy, 'needs the non-streamed answer');
    const stream = await openai.chat.completions.create({
      model: model ?? 'baichuan', messages: question, max_tokens: MAX_TOKENS, temperature: 0, stream: true,
    });
    let text = '';
    let pieces = 0;
    let finish = null;
    let id = null;
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      id ??= chunk.id;
      assert.equal(chunk.id, id, 'every chunk of one stream carries the same id');
      for (const choice of chunk.choices) {
        assert.equal(choice.index, 0);
        assert.equal(finish, null, 'a chunk after the one with finish_reason');
        const delta = choice.delta ?? {};
        if (delta.role !== undefined) assert.equal(delta.role, 'assistant');
        if (typeof delta.content === 'string' && delta.content.length > 0) {
          text += delta.content;
          pieces += 1;
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
    assert.equal(text, greedy.content, 'streamed text differs from the non-streamed greedy answer');
    assert.ok(pieces > 1, `the answer came in ${pieces} piece(s): not streamed`);
    assert.ok(['stop', 'length'].includes(finish), `finish_reason ${finish}`);
  });

  test('completions, not streamed and streamed', { timeout: TEST_TIMEOUT }, async () => {
    const params = { model: model ?? 'baichuan', prompt: 'The capital of China is', max_tokens: 8, temperature: 0 };
    const r = await openai.completions.create(params);
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices.length, 1);
    const [choice] = r.choices;
    assert.equal(typeof choice.text, 'string');
    assert.ok(choice.text.length > 0, 'empty completion');
    assert.ok(['stop', 'length'].includes(choice.finish_reason), `finish_reason ${choice.finish_reason}`);
    assert.ok(r.usage.prompt_tokens > 0, `usage ${JSON.stringify(r.usage)}`);
    assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 8, `usage ${JSON.stringify(r.usage)}`);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);

    const stream = await openai.completions.create({ ...params, stream: true });
    let text = '';
    let finish = null;
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'text_completion');
      for (const c of chunk.choices) {
        text += c.text ?? '';
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    assert.equal(text, choice.text, 'streamed completion differs from the non-streamed one');
    assert.equal(finish, choice.finish_reason);
  });

  test('stop strings cut the answer before the stop string', { timeout: TEST_TIMEOUT }, async () => {
    const params = { model: model ?? 'baichuan', prompt: 'Once upon a time', max_tokens: 16, temperature: 0 };
    const full = (await openai.completions.create(params)).choices[0].text;
    // A stop string from the middle of the known answer: two visible code points.
    const cps = codePoints(full);
    let stop = null;
    for (let i = Math.floor(cps.length / 2); i + 1 < cps.length && !stop; i++) {
      const s = cps[i] + cps[i + 1];
      if (!/[\s\uFFFD]/u.test(s) && full.indexOf(s) > 0) stop = s;
    }
    assert.ok(stop, `found no usable stop string in ${JSON.stringify(full)}`);
    const expected = full.slice(0, full.indexOf(stop));

    const cut = await openai.completions.create({ ...params, stop: [stop] });
    assert.equal(cut.choices[0].text, expected, `stop ${JSON.stringify(stop)} in ${JSON.stringify(full)}`);
    assert.equal(cut.choices[0].finish_reason, 'stop');
    // A single string works as well as a list.
    const single = await openai.completions.create({ ...params, stop });
    assert.equal(single.choices[0].text, expected);

    // Streamed: the text held back while it might start the stop string is never sent.
    const stream = await openai.completions.create({ ...params, stop: [stop], stream: true });
    let text = '';
    let finish = null;
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        text += c.text ?? '';
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    assert.equal(text, expected, 'streamed text with a stop string');
    assert.equal(finish, 'stop');

    // The same through the chat endpoint.
    const chatFull = (await openai.chat.completions.create({
      model: model ?? 'baichuan', messages: question, max_tokens: 16, temperature: 0,
    })).choices[0].message.content;
    const ccps = codePoints(chatFull);
    let chatStop = null;
    for (let i = Math.floor(ccps.length / 2); i + 1 < ccps.length && !chatStop; i++) {
      const s = ccps[i] + ccps[i + 1];
      if (!/[\s\uFFFD]/u.test(s) && chatFull.indexOf(s) > 0) chatStop = s;
    }
    assert.ok(chatStop, `found no usable stop string in ${JSON.stringify(chatFull)}`);
    const chatCut = await openai.chat.completions.create({
      model: model ?? 'baichuan', messages: question, max_tokens: 16, temperature: 0, stop: [chatStop],
    });
    assert.equal(chatCut.choices[0].message.content, chatFull.slice(0, chatFull.indexOf(chatStop)));
    assert.equal(chatCut.choices[0].finish_reason, 'stop');
  });

  test('a seeded sampled request gives the same text twice', { timeout: TEST_TIMEOUT }, async () => {
    const sample = (seed) => openai.chat.completions.create({
      model: model ?? 'baichuan',
      messages: [{ role: 'user', content: 'Write a short poem.' }],
      max_tokens: MAX_TOKENS,
      temperature: 1.0,
      top_p: 0.95,
      top_k: 50,
      repetition_penalty: 1.05,
      seed,
    }).then((r) => r.choices[0].message.content);
    const first = await sample(1234);
    const second = await sample(1234);
    assert.equal(second, first, 'same seed, different text');
    // Another seed draws differently (the random model spreads its probability widely; three tries
    // make a coincidence negligible).
    const others = [await sample(1), await sample(2), await sample(3)];
    assert.ok(others.some((t) => t !== first), `seeds 1, 2, 3 and 1234 all gave ${JSON.stringify(first)}`);
  });

  test('malformed requests surface as openai.BadRequestError (400)', { timeout: TEST_TIMEOUT }, async () => {
    const base = { model: model ?? 'baichuan', messages: question, max_tokens: 4 };
    await rejectsWith(openai.chat.completions.create({ ...base, max_tokens: -1 }),
      OpenAI.BadRequestError, 400, 'max_tokens: -1');
    await rejectsWith(openai.chat.completions.create({ ...base, messages: [{ role: 'wizard', content: 'hi' }] }),
      OpenAI.BadRequestError, 400, 'unknown role');
    await rejectsWith(openai.chat.completions.create({ ...base, messages: [] }),
      OpenAI.BadRequestError, 400, 'no messages');
    await rejectsWith(openai.chat.completions.create({ ...base, messages: 'hello' }),
      OpenAI.BadRequestError, 400, 'messages is a string');
    await rejectsWith(openai.chat.completions.create({ ...base, temperature: 'hot' }),
      OpenAI.BadRequestError, 400, 'temperature is a string');
    await rejectsWith(openai.chat.completions.create({ ...base, temperature: -1 }),
      OpenAI.BadRequestError, 400, 'temperature: -1');
    await rejectsWith(openai.chat.completions.create({ ...base, top_p: 1.5 }),
      OpenAI.BadRequestError, 400, 'top_p: 1.5');
    await rejectsWith(openai.completions.create({ model: base.model, prompt: 'x', max_tokens: 'many' }),
      OpenAI.BadRequestError, 400, 'completions max_tokens is a string');
    await rejectsWith(openai.completions.create({ model: base.model, max_tokens: 4 }),
      OpenAI.BadRequestError, 400, 'completions without prompt');
    // A streamed request with bad parameters fails before any event is sent.
    await rejectsWith(openai.chat.completions.create({ ...base, max_tokens: -1, stream: true }),
      OpenAI.BadRequestError, 400, 'streamed max_tokens: -1');
    // What the server does not implement is refused by name.
    for (const [field, value] of [['tools', [{ type: 'function', function: { name: 'f' } }]], ['n', 2],
      ['response_format', { type: 'json_schema', json_schema: { name: 's', schema: {} } }]]) {
      const e = await rejectsWith(openai.chat.completions.create({ ...base, [field]: value }),
        OpenAI.BadRequestError, 400, field);
      assert.equal(e.error.param, field, `param of the ${field} error`);
    }
    // The server still answers after all that.
    const ok = await openai.chat.completions.create({ ...base, temperature: 0 });
    assert.equal(typeof ok.choices[0].message.content, 'string');
  });

  test('logprobs, echo, logit_bias and json_object through the client', { timeout: TEST_TIMEOUT }, async () => {
    const base = { model: model ?? 'baichuan', messages: question, max_tokens: 5, temperature: 0, ignore_eos: true };
    const chat = await openai.chat.completions.create({ ...base, logprobs: true, top_logprobs: 2 });
    const content = chat.choices[0].logprobs?.content;
    assert.ok(Array.isArray(content), `logprobs.content: ${JSON.stringify(chat.choices[0].logprobs)}`);
    assert.equal(content.length, chat.usage.completion_tokens);
    for (const t of content) {
      assert.equal(typeof t.token, 'string');
      assert.ok(t.logprob <= 0, `logprob ${t.logprob}`);
      assert.ok(Array.isArray(t.bytes));
      assert.equal(t.top_logprobs.length, 2);
      assert.equal(t.top_logprobs[0].token, t.token, 'greedy: the chosen token is the likeliest');
    }
    const bytes = Buffer.from(content.flatMap((t) => t.bytes)).toString('utf8');
    assert.equal(bytes, chat.choices[0].message.content, 'the tokens\' bytes make the answer');

    // Streamed, the client sees the same tokens chunk by chunk.
    const stream = await openai.chat.completions.create({ ...base, logprobs: true, top_logprobs: 2, stream: true });
    const streamed = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    assert.deepEqual(streamed.map((t) => t.token), content.map((t) => t.token));

    // completions: echo + logprobs score the prompt too (its first token has none).
    const prompt = 'The capital of France is';
    const c = await openai.completions.create({ model: base.model, prompt, max_tokens: 3, temperature: 0,
      ignore_eos: true, logprobs: 1, echo: true });
    const lp = c.choices[0].logprobs;
    assert.ok(c.choices[0].text.startsWith(prompt), c.choices[0].text);
    assert.equal(lp.tokens.length, c.usage.prompt_tokens + c.usage.completion_tokens);
    assert.equal(lp.token_logprobs[0], null);
    assert.ok(lp.token_logprobs.slice(1).every((x) => typeof x === 'number' && x <= 0));
    assert.equal(lp.tokens.join(''), c.choices[0].text);
    assert.deepEqual(lp.text_offset.slice(0, 2), [0, lp.tokens[0].length]);

    // logit_bias +100 forces a token under greedy decoding.
    const forced = (await (await fetch(`${server.url}/tokenize`, { method: 'POST',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ content: '好' }) })).json()).tokens[0];
    const biased = await openai.completions.create({ model: base.model, prompt: 'Once', max_tokens: 3,
      temperature: 0, ignore_eos: true, logit_bias: { [forced]: 100 } });
    assert.equal(biased.choices[0].text, '好好好');

    // json_object: the answer parses as a JSON object.
    const j = await openai.chat.completions.create({ model: base.model, messages: question, max_tokens: 16,
      temperature: 1.2, seed: 7, response_format: { type: 'json_object' } });
    const parsed = JSON.parse(j.choices[0].message.content);
    assert.equal(typeof parsed, 'object');
    assert.ok(parsed !== null && !Array.isArray(parsed), j.choices[0].message.content);
  });
});

describe('openai client against baichuan serve --api-key', { skip, timeout: 3 * TEST_TIMEOUT }, () => {
  const KEY = 'sk-test-0123456789';
  let server;

  before(async () => {
    server = await startServer({ args: ['--api-key', KEY, '--parallel', '1', '--ctx', '256'] });
  });
  after(async () => {
    await stopAndCheck(server, assert);
  });

  test('the right key works', { timeout: TEST_TIMEOUT }, async () => {
    const openai = client(server, KEY);
    const models = await openai.models.list();
    assert.ok(models.data.length >= 1);
    const r = await openai.chat.completions.create({
      model: models.data[0].id, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, temperature: 0,
    });
    assert.equal(typeof r.choices[0].message.content, 'string');
    const stream = await openai.completions.create({ model: models.data[0].id, prompt: 'hi', max_tokens: 4, stream: true });
    let chunks = 0;
    for await (const chunk of stream) chunks += chunk.choices.length;
    assert.ok(chunks >= 1);
  });

  test('a wrong key is openai.AuthenticationError (401)', { timeout: TEST_TIMEOUT }, async () => {
    const wrong = client(server, 'sk-wrong');
    await rejectsWith(wrong.models.list(), OpenAI.AuthenticationError, 401, 'models.list with a wrong key');
    await rejectsWith(wrong.chat.completions.create({
      model: 'baichuan', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4,
    }), OpenAI.AuthenticationError, 401, 'chat with a wrong key');
    await rejectsWith(wrong.completions.create({ model: 'baichuan', prompt: 'hi', max_tokens: 4, stream: true }),
      OpenAI.AuthenticationError, 401, 'streamed completion with a wrong key');
    // A key that only starts like the right one is wrong too.
    await rejectsWith(client(server, KEY.slice(0, -1)).models.list(), OpenAI.AuthenticationError, 401, 'a prefix of the key');
    await rejectsWith(client(server, `${KEY}x`).models.list(), OpenAI.AuthenticationError, 401, 'the key plus one character');
  });

  test('no Authorization header is 401 with an OpenAI error body', { timeout: TEST_TIMEOUT }, async () => {
    const res = await fetch(`${server.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }),
    });
    assert.equal(res.status, 401);
    const body = await res.json();
    assert.equal(typeof body.error?.message, 'string', JSON.stringify(body));
  });
});
