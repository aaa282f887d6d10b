-- wrk script for bench/scaling.py: POST chat completions to the gateway, keep-alive, in a cycle of bodies.
--
--   wrk -t1 -c64 -d10s -s bench/chat_post.lua http://127.0.0.1:PORT -- BODIES_FILE GATEWAY_KEY
--
-- BODIES_FILE holds one JSON request body per line. Every request is formatted once in init(), so a
-- request costs wrk a table lookup, not a Lua string build: the load generator must stay cheap next
-- to the gateway on a 2-core machine. done() prints one JSON line (prefixed "wrk-summary ") that the
-- benchmark reads: requests, errors by kind, non-2xx answers and the duration.

local requests = {}
local next_index = 0

function init(args)
  local bodies, key = args[1], args[2]
  local headers = {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json",
    ["User-Agent"] = "shuhi-bench-wrk/1",
  }
  for line in io.lines(bodies) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("POST", "/v1/chat/completions", headers, line)
    end
  end
  if #requests == 0 then
    error("no request bodies in " .. bodies)
  end
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'wrk-summary {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
      .. '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
