// A bounded load check of `baichuan serve --parallel 4 --queue 8`: rounds of concurrent streams (some
// dropped by the client after the first chunk) mixed with malformed requests (bad JSON, wrong types,
// invalid UTF-8, a body over the limit, truncated HTTP, garbage bytes). Every answer must be the
// expected one — 503 with Retry-After is accepted for any generation — and afterwards the server must
// be alive and idle (/health, /metrics), with resident memory flat from one round to the next.
// Optionally (when /usr/bin/wrk exists) wrk hammers /v1/completions for 3 s.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  isSanitized, parseMetrics, rssBytes, skipReason, sleep, startServer, stopAndCheck,
} from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const skip = skipReason();
const WRK = '/usr/bin/wrk';
const STREAMS = 40;        // generations per round
const CONCURRENCY = 12;    // client connections at a time
const MAX_TOKENS = 16;
const LONG_MAX_TOKENS = 400;  // for the streams the client drops: the server must stop them early
const CTX = 512;
const BODY_LIMIT = 4 << 20;   // at least the server's request body limit (serve --max-body default: 1 MiB)
const IDLE_WAIT_MS = 5_000;
const RSS_TOLERANCE = { bytes: 20 << 20, fraction: 0.10 };

let server;

// ---- requests ---------------------------------------------------------------------------------

const post = (pathname, body, headers = {}) => fetch(`${server.url}${pathname}`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', ...headers },
  body,
});

function checkRetryAfter(res, what) {
  const retry = res.headers.get('retry-after');
  assert.ok(retry !== null && /^\d+$/.test(retry.trim()), `${what}: 503 without a Retry-After seconds header (${retry})`);
}

// Reads a server-sent-event body; returns the data payloads. Throws on anything not SSE.
async function readEvents(res, onFirst) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  const events = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
      if (!data) continue;
      events.push(data);
      if (events.length === 1 && onFirst && onFirst()) return { events, dropped: true };
    }
  }
  assert.equal(buffer.trim(), '', 'bytes after the last event');
  return { events, dropped: false };
}

// One streamed generation. `drop`: abort the connection after the first chunk.
async function streamOnce(i, drop) {
  const chat = i % 2 === 0;
  const pathname = chat ? '/v1/chat/completions' : '/v1/completions';
  const body = {
    max_tokens: drop ? LONG_MAX_TOKENS : MAX_TOKENS,
    stream: true,
    temperature: i % 3 === 0 ? 0 : 0.8,
    seed: i,
    ...(chat ? { messages: [{ role: 'user', content: `Question number ${i}: why is the sky blue?` }] }
      : { prompt: `Story ${i}: once upon a time` }),
  };
  const controller = new AbortController();
  const res = await fetch(`${server.url}${pathname}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: controller.signal,
  });
  const what = `stream ${i} (${pathname}${drop ? ', dropped' : ''})`;
  if (res.status === 503) {
    checkRetryAfter(res, what);
    const text = await res.text();
    let error;
    try { error = JSON.parse(text).error; } catch { /* checked below */ }
    assert.equal(typeof error?.message, 'string', `${what}: 503 without an OpenAI error body: ${text.slice(0, 300)}`);
    return 'busy';
  }
  if (res.status !== 200) assert.fail(`${what}: HTTP ${res.status} ${await res.text()}`);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/, `${what}: content type`);
  let result;
  try {
    result = await readEvents(res, () => {
      if (drop) controller.abort();
      return drop;
    });
  } catch (e) {
    if (drop && e.name === 'AbortError') return 'dropped';
    throw e;
  }
  if (result.dropped) return 'dropped';
  const { events } = result;
  assert.equal(events[events.length - 1], '[DONE]', `${what}: the stream does not end with [DONE]`);
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  assert.ok(chunks.length >= 1, `${what}: no chunks`);
  const finishes = chunks.flatMap((c) => c.choices ?? []).map((c) => c.finish_reason).filter(Boolean);
  assert.equal(finishes.length, 1, `${what}: finish_reason in ${finishes.length} chunks`);
  assert.ok(['stop', 'length'].includes(finishes[0]), `${what}: finish_reason ${finishes[0]}`);
  return 'done';
}

// Raw HTTP over a socket: writes `parts` (Buffers/strings), then half-closes (`end`) or resets
// (`destroy`) or keeps writing `pump` until an answer arrives. Resolves to the status code of the
// first response line, or null when the server closed without answering.
function raw(parts, { finish = 'end', pump = null, timeoutMs = 15_000 } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(server.port, server.host);
    let data = '';
    let settled = false;
    const settle = (fn, v) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      fn(v);
    };
    const timer = setTimeout(() => settle(reject, new Error(`raw request: no answer and no close within ${timeoutMs} ms`)), timeoutMs);
    socket.setEncoding('latin1');
    socket.on('data', (chunk) => {
      data += chunk;
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
      if (m && /\r\n\r\n/.test(data)) settle(resolve, { status: Number(m[1]), head: data.split('\r\n\r\n')[0] });
    });
    socket.on('error', () => { /* a reset after the server answered or gave up is fine */ });
    socket.on('close', () => {
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
      settle(resolve, m ? { status: Number(m[1]), head: data.split('\r\n\r\n')[0] } : { status: null, head: data });
    });
    socket.on('connect', async () => {
      for (const p of parts) socket.write(p);
      if (pump) {
        // Keep sending body bytes until the server answers (it may answer 413 before reading them all).
        for (let sent = 0; sent < pump.total && !settled && !socket.destroyed;) {
          const piece = pump.chunk.subarray(0, Math.min(pump.chunk.length, pump.total - sent));
          sent += piece.length;
          if (!socket.write(piece)) await new Promise((r) => { socket.once('drain', r); socket.once('close', r); });
        }
        if (pump.trailer && !settled && !socket.destroyed) socket.write(pump.trailer);
      }
      if (finish === 'end') socket.end();
      else if (finish === 'destroy') socket.resetAndDestroy ? socket.resetAndDestroy() : socket.destroy();
      // 'wait': leave the socket open for the answer.
    });
  });
}

function head(method, pathname, headers) {
  return `${method} ${pathname} HTTP/1.1\r\nHost: ${server.host}:${server.port}\r\n` +
    Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n';
}

// The malformed requests of one round; each returns a short description of what happened.
function malformedRequests() {
  const expect400 = (what, pathname, body) => async () => {
    const res = await post(pathname, body);
    const text = await res.text();
    assert.equal(res.status, 400, `${what}: expected 400, got ${res.status} ${text.slice(0, 300)}`);
    const json = JSON.parse(text);
    assert.equal(typeof json.error?.message, 'string', `${what}: not an OpenAI error body: ${text.slice(0, 300)}`);
    return what;
  };
  const chat = '/v1/chat/completions';
  const invalidUtf8 = Buffer.concat([
    Buffer.from('{"messages":[{"role":"user","content":"abc '),
    Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82]),
    Buffer.from('"}],"max_tokens":4}'),
  ]);
  const bigBody = 2 * BODY_LIMIT;
  const bigPrefix = '{"messages":[{"role":"user","content":"';
  const bigSuffix = '"}],"max_tokens":4}';
  const filler = Buffer.alloc(64 * 1024, 'a');
  return [
    expect400('bad JSON', chat, '{"messages": [{"role": "user", "content": "hi"'),
    expect400('empty body', chat, ''),
    expect400('a JSON array', chat, '[1, 2, 3]'),
    expect400('messages is a string', chat, '{"messages": "hi", "max_tokens": 4}'),
    expect400('content is a number', chat, '{"messages": [{"role": "user", "content": 42}], "max_tokens": 4}'),
    expect400('max_tokens is a string', '/v1/completions', '{"prompt": "hi", "max_tokens": "four"}'),
    expect400('stream is a string', '/v1/completions', '{"prompt": "hi", "max_tokens": 4, "stream": "yes"}'),
    expect400('invalid UTF-8 in a string', chat, invalidUtf8),
    expect400('detokenize ids out of range', '/detokenize', '{"tokens": [-1, 999999999]}'),
    expect400('tokenize a number', '/tokenize', '{"content": 5}'),
    async () => {
      const r = await raw([head('POST', chat, { 'Content-Type': 'application/json', 'Content-Length': bigBody }), bigPrefix],
        { finish: 'wait', pump: { total: bigBody - bigPrefix.length - bigSuffix.length, chunk: filler, trailer: bigSuffix } });
      assert.equal(r.status, 413, `a ${bigBody}-byte body: expected 413, got ${r.status} ${r.head.slice(0, 200)}`);
      return 'huge body';
    },
    async () => {
      // The same without Content-Length: chunked transfer encoding.
      const chunk = Buffer.concat([Buffer.from(`${filler.length.toString(16)}\r\n`), filler, Buffer.from('\r\n')]);
      const r = await raw([head('POST', chat, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' })],
        { finish: 'wait', pump: { total: (bigBody / filler.length) * chunk.length, chunk, trailer: '0\r\n\r\n' } });
      assert.equal(r.status, 413, `a ${bigBody}-byte chunked body: expected 413, got ${r.status} ${r.head.slice(0, 200)}`);
      return 'huge chunked body';
    },
    async () => {
      // Headers promise 200 bytes; 20 arrive, then the client half-closes. No answer is needed.
      const r = await raw([head('POST', chat, { 'Content-Type': 'application/json', 'Content-Length': 200 }),
        '{"messages": [{"role"']);
      assert.ok(r.status === null || r.status === 400 || r.status === 408, `truncated body: got ${r.status}`);
      return 'truncated body';
    },
    async () => {
      await raw([`POST ${chat} HTTP/1.1\r\nHost: x\r\nContent-Le`], { finish: 'destroy' });
      return 'truncated headers';
    },
    async () => {
      const r = await raw([Buffer.from(Array.from({ length: 512 }, (_, k) => (k * 131 + 7) % 256)), '\r\n\r\n']);
      assert.ok(r.status === null || (r.status >= 400 && r.status < 500), `garbage bytes: got ${r.status}`);
      return 'garbage';
    },
  ];
}

// Runs `tasks` (functions returning promises) with at most `limit` at a time. Returns the results
// and the failures (Errors).
async function runPool(tasks, limit) {
  const results = new Array(tasks.length);
  const errors = [];
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < tasks.length) {
      const k = next++;
      try {
        results[k] = await tasks[k]();
      } catch (e) {
        errors.push(e);
      }
    }
  }));
  return { results, errors };
}

const describeErrors = (errors, total) =>
  `${errors.length} of ${total} requests went wrong:\n${errors.slice(0, 8).map((e) => e.message).join('\n---\n')}`;

// One round: STREAMS streamed generations (every 4th dropped after its first chunk) interleaved
// with the malformed requests, CONCURRENCY at a time.
async function round() {
  const streams = Array.from({ length: STREAMS }, (_, i) => () => streamOnce(i, i % 4 === 3));
  const bad = malformedRequests();
  const tasks = [];
  const every = Math.ceil(streams.length / bad.length);
  streams.forEach((t, i) => {
    tasks.push(t);
    if (i % every === 0 && bad.length) tasks.push(bad.shift());
  });
  tasks.push(...bad);
  const { results, errors } = await runPool(tasks, CONCURRENCY);
  const tally = {};
  for (const r of results) if (r !== undefined) tally[r] = (tally[r] ?? 0) + 1;
  return { tally, errors, total: tasks.length };
}

async function metrics() {
  const res = await fetch(`${server.url}/metrics`);
  assert.equal(res.status, 200, 'GET /metrics');
  return parseMetrics(await res.text());
}

// Waits until every gauge about requests in flight or waiting reads 0; returns the samples.
async function waitIdle() {
  const deadline = Date.now() + IDLE_WAIT_MS;
  let busy;
  for (;;) {
    const samples = await metrics();
    const gauges = samples.filter((s) => /active|running|in_flight|queue_depth|waiting|queued/.test(s.name) && !/_total$/.test(s.name));
    assert.ok(gauges.some((s) => /active/.test(s.name)), `/metrics has no "active requests" gauge: ${JSON.stringify(samples.map((s) => s.name))}`);
    busy = gauges.filter((s) => s.value !== 0);
    if (busy.length === 0) return samples;
    if (Date.now() > deadline) break;
    await sleep(100);
  }
  assert.fail(`/metrics still shows work ${IDLE_WAIT_MS} ms after the last answer: ${JSON.stringify(busy)}`);
}

const metricValue = (samples, re) => samples.find((s) => re.test(s.name))?.value;

async function checkHealthy() {
  assert.ok(server.alive(), `the server died\n${server.describe()}`);
  const res = await fetch(`${server.url}/health`);
  assert.equal(res.status, 200, 'GET /health');
  assert.deepEqual(await res.json(), { status: 'ok' });
}

describe('load check', { skip, timeout: 170_000 }, () => {
  const mb = (b) => `${(b / 1048576).toFixed(1)} MB`;
  const rss = {};

  before(async () => {
    server = await startServer({ args: ['--parallel', '4', '--queue', '8', '--ctx', String(CTX)] });
  });
  after(async () => {
    await stopAndCheck(server, assert);
  });

  test('rounds of concurrent streams and malformed requests; memory stays flat', { timeout: 110_000 }, async (t) => {
    // Warm-up: every slot and code path once.
    const warm = await runPool(Array.from({ length: 8 }, (_, i) => () => streamOnce(100 + i, false)), 4);
    assert.deepEqual(warm.errors, [], `warm-up: ${describeErrors(warm.errors, 8)}`);
    await waitIdle();
    rss.warm = rssBytes(server.pid);

    // Wrong answers are collected and reported together at the end, so that one finding does not
    // hide the others (the memory check needs both rounds).
    const problems = [];
    const check = (ok, message) => { if (!ok) problems.push(message); };
    for (const n of [1, 2]) {
      const before = await metrics();
      const { tally, errors, total } = await round();
      t.diagnostic(`round ${n}: ${JSON.stringify(tally)}`);
      check(errors.length === 0, `round ${n}: ${describeErrors(errors, total)}`);
      check((tally.done ?? 0) > 0, `round ${n}: no stream completed: ${JSON.stringify(tally)}`);
      const samples = await waitIdle();
      await checkHealthy();
      rss[n] = rssBytes(server.pid);

      // The dropped streams asked for LONG_MAX_TOKENS each; the server must have stopped them soon
      // after the client left instead of generating everything.
      const re = /generated_tokens_total$|completion_tokens_total$/;
      const gen0 = metricValue(before, re);
      const gen1 = metricValue(samples, re);
      if (gen0 !== undefined && gen1 !== undefined) {
        const dropped = tally.dropped ?? 0;
        const bound = (STREAMS - dropped) * MAX_TOKENS + dropped * (LONG_MAX_TOKENS / 2);
        t.diagnostic(`round ${n}: ${gen1 - gen0} tokens generated (${dropped} dropped streams; bound ${bound})`);
        check(gen1 - gen0 <= bound,
          `round ${n}: ${gen1 - gen0} tokens generated: the dropped streams were not cancelled (bound ${bound})`);
      } else {
        t.diagnostic('no generated-tokens counter in /metrics: cancellation not measured');
      }
    }

    t.diagnostic(`RSS: after warm-up ${mb(rss.warm)}, round 1 ${mb(rss[1])}, round 2 ${mb(rss[2])}`);
    const growth = rss[2] - rss[1];
    const allowed = Math.max(RSS_TOLERANCE.bytes, RSS_TOLERANCE.fraction * rss[1]);
    if (isSanitized()) {
      // AddressSanitizer keeps freed memory in quarantine (up to 256 MB): RSS says nothing there, and
      // LeakSanitizer checks the exit instead (stopAndCheck).
      t.diagnostic(`AddressSanitizer build: RSS growth ${mb(growth)} not checked`);
    } else {
      check(growth < allowed, `RSS grew by ${mb(growth)} from round 1 to round 2 (allowed ${mb(allowed)})`);
    }
    assert.ok(problems.length === 0, problems.join('\n======\n'));
  });

  test('wrk on /v1/completions', { skip: existsSync(WRK) ? false : `${WRK} is absent`, timeout: 40_000 }, async (t) => {
    const { stdout, stderr } = await new Promise((resolve, reject) => {
      execFile(WRK, ['-t2', '-c8', '-d3s', '--timeout', '10s', '-s', path.join(here, 'post.lua'), `${server.url}/v1/completions`],
        { timeout: 30_000 }, (error, out, err) => (error ? reject(new Error(`wrk failed: ${error.message}\n${out}\n${err}`)) : resolve({ stdout: out, stderr: err })));
    });
    t.diagnostic(stdout.trim().split('\n').join(' | '));
    const m = /(\d+) requests in/.exec(stdout);
    assert.ok(m && Number(m[1]) > 0, `wrk made no requests:\n${stdout}\n${stderr}`);
    const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
    if (errors) {
      const [, connect, read, write] = errors.map(Number);
      assert.deepEqual({ connect, read, write }, { connect: 0, read: 0, write: 0 }, `wrk socket errors:\n${stdout}`);
    }
    const statuses = [...stdout.matchAll(/^status (\d+) (\d+)$/gm)].map(([, s, c]) => [Number(s), Number(c)]);
    assert.ok(statuses.some(([s]) => s === 200), `no 200 among wrk's answers:\n${stdout}`);
    for (const [status, count] of statuses) {
      assert.ok(status === 200 || status === 503, `wrk got ${count} answers with HTTP ${status}:\n${stdout}`);
    }
    await waitIdle();
    await checkHealthy();
  });
});

describe('SIGTERM while streams are running', { skip, timeout: 90_000 }, () => {
  let busy;
  after(async () => {
    await busy?.stop(1_000);
  });

  test('the server ends the streams and exits promptly', { timeout: 60_000 }, async () => {
    busy = await startServer({ args: ['--parallel', '2', '--queue', '4', '--ctx', String(CTX)] });
    // Four long generations: two decoding, two waiting for a slot.
    const streams = Array.from({ length: 4 }, (_, i) => (async () => {
      const res = await fetch(`${busy.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: `Long story ${i}:`, max_tokens: 480, stream: true, ignore_eos: true }),
      });
      if (res.status === 503) return 'busy';
      const reader = res.body.getReader();
      let first = true;
      try {
        for (;;) {
          const { done } = await reader.read();
          if (done) return 'ended';
          if (first) { first = false; started.push(i); }
        }
      } catch {
        return 'cut';  // the connection closed mid-stream: fine
      }
    })());
    const started = [];
    const deadline = Date.now() + 20_000;
    while (started.length < 2 && Date.now() < deadline) await sleep(20);
    assert.ok(started.length >= 2, 'no two streams started within 20 s');
    const t0 = Date.now();
    const { code, signal, killed } = await busy.stop(10_000);
    assert.ok(!killed, `baichuan serve did not exit within 10 s of SIGTERM with streams running\n${busy.describe()}`);
    assert.ok(code === 0 || signal === 'SIGTERM',
      `baichuan serve ended with code ${code}, signal ${signal}\n${busy.describe()}`);
    const outcomes = await Promise.race([
      Promise.all(streams.map((p) => p.catch((e) => `error: ${e.message}`))),
      sleep(10_000).then(() => null),
    ]);
    assert.ok(outcomes, 'client streams still open 10 s after the server exited');
    assert.ok(Date.now() - t0 < 15_000);
  });
});
