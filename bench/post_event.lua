-- wrk script: POST one canonical event per request, each with a unique source_event_id.
-- BENCH_RUN names the run (so reruns do not collide); BENCH_BATCH > 1 posts JSON arrays of that many events.
local run = os.getenv("BENCH_RUN") or "run"
local batch = tonumber(os.getenv("BENCH_BATCH") or "1")
local key = os.getenv("BENCH_KEY") or "dev-cti-key"
local counter = 0
local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

-- Realistic call traffic: every call is four events (offered, ringing, answered, ended) carrying the same
-- caller number; callers are distinct across calls (a million numbers), so identity work is not cached away.
local types = {"call.offered", "call.ringing", "call.answered", "call.ended"}

local function one()
  counter = counter + 1
  local n = counter
  local call = math.floor(n / 4)
  local caller = (call * 7919 + (tid or 0) * 104729) % 1000000
  return string.format(
    '{"source":"cti.bench","source_event_id":"%s-%d-%d","channel":"voice","type":"%s",' ..
    '"occurred_at":"2026-11-28T09:41:07.120+08:00","interaction_id":"%s-%d-%d","queue":"vip",' ..
    '"direction":"inbound","agent_id":"8001","identifiers":[{"kind":"phone","value":"+86 139 %04d %04d"}],' ..
    '"attributes":{"ivr_path":["1","3"]}}',
    run, tid or 0, n, types[(n % 4) + 1], run, tid or 0, call, math.floor(caller / 100), caller % 10000)
end

function request()
  local body
  if batch > 1 then
    local parts = {}
    for i = 1, batch do parts[i] = one() end
    body = "[" .. table.concat(parts, ",") .. "]"
  else
    body = one()
  end
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json", ["X-API-Key"] = key}, body)
end
