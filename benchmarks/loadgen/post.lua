-- wrk script: replay one pre-built POST body and print latency percentiles as JSON.
--   wrk -t1 -c16 -d10s -s post.lua URL -- BODY_FILE CONTENT_TYPE [HEADER_LENGTH]
-- HEADER_LENGTH, when given, is sent as Inference-Header-Content-Length (Triton's binary
-- tensor extension). The request is formatted once per thread, so the client does no work
-- per request beyond writing these bytes.

local req

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local body = f:read("*a")
  f:close()
  local headers = { ["Content-Type"] = args[2] }
  if args[3] then
    headers["Inference-Header-Content-Length"] = args[3]
  end
  req = wrk.format("POST", nil, headers, body)
end

function request()
  return req
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
