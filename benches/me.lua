-- wrk script for benches/me_throughput.sh: POST /graphql with the `me` query and the bearer
-- token in MAMORI_TOKEN. Counts responses that are not 200 with `data.me`, so a GraphQL error
-- returned with status 200 (such as a database timeout) is not counted as a success.

wrk.method = "POST"
wrk.body = '{"query":"{ me { id prefecture { code } } }"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("MAMORI_TOKEN"), "MAMORI_TOKEN is not set")

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   failed = 0
end

function response(status, headers, body)
   if status ~= 200 or not string.find(body, '"me":{"id":"', 1, true) then
      failed = failed + 1
   end
end

function done(summary, latency, requests)
   local failed_total = 0
   for _, thread in ipairs(threads) do
      failed_total = failed_total + thread:get("failed")
   end
   local errors = summary.errors
   io.write(string.format(
      "result: requests=%d seconds=%.1f requests_per_second=%.0f p50_ms=%.2f p99_ms=%.2f " ..
      "failed_responses=%d socket_errors=%d timeouts=%d\n",
      summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, failed_total,
      errors.connect + errors.read + errors.write, errors.timeout))
end
