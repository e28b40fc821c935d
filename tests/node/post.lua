-- wrk script for load_check.test.mjs: POST a tiny completion and count the HTTP statuses.
--   wrk -t2 -c8 -d3s -s post.lua http://127.0.0.1:PORT/v1/completions
-- Prints one line "status CODE COUNT" per status seen, after wrk's own summary.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"prompt": "Hello, world", "max_tokens": 2, "temperature": 0}'

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local seen = thread:get("statuses")
    for status, count in pairs(seen) do
      total[status] = (total[status] or 0) + count
    end
  end
  for status, count in pairs(total) do
    io.write(string.format("status %d %d\n", status, count))
  end
end
