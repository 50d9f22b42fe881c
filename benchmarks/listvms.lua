-- wrk script: PUT /sysadm/iohyve {"action": "listvms"} with a Bearer token (WRK_TOKEN),
-- and a done() that prints the figures as one JSON line starting with "RESULT ".
wrk.method = "PUT"
wrk.body = '{"action": "listvms"}'
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("WRK_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"mean_us": %.1f, "max_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
