#include "server/chat_page.h"

namespace baichuan::server {

namespace {

constexpr std::string_view kPage = R"PAGE(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>baichuan.cpp chat</title>
<style>
  :root { --bg: #f6f7f9; --fg: #1d2129; --muted: #6b7280; --user: #dbeafe; --bot: #ffffff; --err: #fee2e2; --line: #d1d5db; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg);
         display: flex; flex-direction: column; height: 100vh; }
  header { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; padding: 8px 16px; border-bottom: 1px solid var(--line); background: #fff; }
  header h1 { font-size: 16px; margin: 0 12px 0 0; }
  header label { font-size: 13px; color: var(--muted); display: flex; gap: 4px; align-items: center; }
  header input { font: inherit; padding: 2px 6px; border: 1px solid var(--line); border-radius: 4px; }
  #max-tokens, #temperature { width: 80px; }
  #messages { flex: 1; overflow-y: auto; padding: 16px; display: flex; flex-direction: column; gap: 10px; }
  .message { max-width: 80%; padding: 8px 12px; border-radius: 8px; white-space: pre-wrap; word-wrap: break-word; border: 1px solid var(--line); }
  .message.user { align-self: flex-end; background: var(--user); }
  .message.assistant { align-self: flex-start; background: var(--bot); }
  .message.assistant.streaming::after { content: "\25CF"; color: var(--muted); margin-left: 4px; }
  .message.assistant[data-finish-reason="length"]::after { content: " [length limit]"; color: var(--muted); font-size: 12px; }
  .message.assistant[data-finish-reason="stopped"]::after { content: " [stopped]"; color: var(--muted); font-size: 12px; }
  #model-name { font-size: 13px; color: var(--muted); margin-right: auto; }
  #auth-needed { padding: 8px 16px; background: #fef3c7; color: #92400e; border-bottom: 1px solid #fcd34d; }
  #api-key.needed { border-color: #d97706; outline: 2px solid #fcd34d; }
  .message.error { align-self: stretch; background: var(--err); color: #991b1b; }
  form { display: flex; gap: 8px; padding: 12px 16px; border-top: 1px solid var(--line); background: #fff; }
  #prompt { flex: 1; font: inherit; min-height: 44px; max-height: 200px; resize: vertical; padding: 8px; border: 1px solid var(--line); border-radius: 6px; }
  button { font: inherit; padding: 0 16px; border: 1px solid var(--line); border-radius: 6px; background: #fff; cursor: pointer; }
  #send { background: #2563eb; color: #fff; border-color: #2563eb; }
  button:disabled { opacity: 0.5; cursor: default; }
</style>
</head>
<body>
<header>
  <h1>baichuan.cpp</h1>
  <span id="model-name" title="the model this server serves (from /v1/models)">…</span>
  <label>max tokens <input id="max-tokens" type="number" min="1" value="256"></label>
  <label>temperature <input id="temperature" type="number" min="0" step="0.1" placeholder="model default"></label>
  <label>API key <input id="api-key" type="password" autocomplete="off" placeholder="(none)"></label>
  <button id="reset" type="button">Reset</button>
</header>
<div id="auth-needed" role="alert" hidden></div>
<div id="messages"></div>
<form id="form">
  <textarea id="prompt" placeholder="Message (Enter sends, Shift+Enter for a new line)"></textarea>
  <button id="send" type="submit">Send</button>
  <button id="stop" type="button" disabled title="stop the answer (the server stops generating)">Stop</button>
</form>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const messagesEl = $("messages"), promptEl = $("prompt"), sendEl = $("send"), stopEl = $("stop"), keyEl = $("api-key");
const modelEl = $("model-name"), authEl = $("auth-needed");
let conversation = [];   // [{role, content}], sent whole with every request
let controller = null;   // aborts the stream in flight on reset or Stop

keyEl.value = localStorage.getItem("baichuan-api-key") || "";

function authHeaders() { return keyEl.value ? { "Authorization": "Bearer " + keyEl.value } : {}; }

// A 401 says the server wants a key (none given) or another one: said once, above the messages.
function showKeyNeeded(state) {
  authEl.hidden = !state;
  keyEl.classList.toggle("needed", !!state);
  if (state === "missing") authEl.textContent = "This server needs an API key: enter it in the API key field above.";
  if (state === "wrong") authEl.textContent = "The server did not accept this API key: check the API key field above.";
}

async function loadModel() {
  try {
    const response = await fetch("/v1/models", { headers: authHeaders() });
    if (response.status === 401) {
      showKeyNeeded(keyEl.value ? "wrong" : "missing");
      modelEl.textContent = "(API key needed)";
      return;
    }
    if (!response.ok) { modelEl.textContent = "(model unknown: HTTP " + response.status + ")"; return; }
    const list = await response.json();
    showKeyNeeded(null);
    modelEl.textContent = list.data && list.data.length ? list.data[0].id : "(no model)";
  } catch (e) {
    modelEl.textContent = "(server unreachable)";
  }
}

let keyTimer = null;
keyEl.addEventListener("input", () => {
  localStorage.setItem("baichuan-api-key", keyEl.value);
  clearTimeout(keyTimer);
  keyTimer = setTimeout(loadModel, 300);
});

function addMessage(kind, text) {
  const div = document.createElement("div");
  div.className = "message " + kind;
  div.textContent = text;
  messagesEl.appendChild(div);
  messagesEl.scrollTop = messagesEl.scrollHeight;
  return div;
}

function setBusy(busy) { sendEl.disabled = busy; stopEl.disabled = !busy; }

async function errorText(response) {
  const body = await response.text();
  try { return JSON.parse(body).error.message; } catch (e) { return body || response.statusText; }
}

async function send() {
  const text = promptEl.value;
  if (!text.trim() || controller) return;
  promptEl.value = "";
  addMessage("user", text);
  conversation.push({ role: "user", content: text });
  const request = { messages: conversation, stream: true };
  const maxTokens = parseInt($("max-tokens").value, 10);
  if (maxTokens > 0) request.max_tokens = maxTokens;
  const temperature = parseFloat($("temperature").value);
  if (!isNaN(temperature) && temperature >= 0) request.temperature = temperature;
  const headers = Object.assign({ "Content-Type": "application/json" }, authHeaders());

  const mine = new AbortController();
  controller = mine;
  setBusy(true);
  const bot = addMessage("assistant streaming", "");
  let answer = "", finish = null;
  const end = (reason) => {
    bot.setAttribute("data-finish-reason", reason);
    bot.classList.remove("streaming");
  };
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers, body: JSON.stringify(request), signal: mine.signal });
    if (response.status === 401) {
      showKeyNeeded(keyEl.value ? "wrong" : "missing");
      throw new Error((keyEl.value ? "The server did not accept the API key" : "This server needs an API key") +
                      " (HTTP 401: " + await errorText(response) + "). Enter it in the API key field and send again.");
    }
    if (!response.ok) throw new Error(await errorText(response));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", finished = false;
    while (!finished) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while (!finished && (cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;   // comments and other fields
          const data = line.slice(5).trim();
          if (data === "[DONE]") { finished = true; break; }
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          const choice = chunk.choices && chunk.choices[0];
          if (!choice) continue;
          if (choice.delta && choice.delta.content) {
            answer += choice.delta.content;
            bot.textContent = answer;
            messagesEl.scrollTop = messagesEl.scrollHeight;
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
    }
    if (!finish) throw new Error("the answer ended early (the connection closed)");
    conversation.push({ role: "assistant", content: answer });
    end(finish);
  } catch (e) {
    if (mine.stoppedByUser) {  // Stop: the partial answer stays, in the page and the conversation
      conversation.push({ role: "assistant", content: answer });
      end("stopped");
      return;
    }
    if (controller !== mine) return;  // reset while streaming: the page is already cleared
    end("error");
    if (!answer) bot.remove();
    conversation.pop();  // the failed question is not part of the conversation
    addMessage("error", String(e.message || e));
  } finally {
    if (controller === mine) { controller = null; setBusy(false); }
  }
}

$("form").addEventListener("submit", (e) => { e.preventDefault(); send(); });
// Aborting the fetch closes the connection; the server notices and stops generating.
stopEl.addEventListener("click", () => {
  if (!controller) return;
  controller.stoppedByUser = true;
  controller.abort();
});
promptEl.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
});
$("reset").addEventListener("click", () => {
  const old = controller;
  controller = null;
  if (old) old.abort();
  conversation = [];
  messagesEl.replaceChildren();
  setBusy(false);
  promptEl.focus();
});
promptEl.focus();
loadModel();
</script>
</body>
</html>
)PAGE";

}  // namespace

std::string_view chat_page_html() { return kPage; }

}  // namespace baichuan::server
