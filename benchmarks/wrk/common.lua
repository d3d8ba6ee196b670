-- Shared by the wrk scripts of `resmon bench --only api`: the API key from
-- RESMON_BENCH_KEY, and a count of every response status, printed by done()
-- as "status <code> <count>" lines (wrk itself only counts non-2xx/3xx).
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
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  for status, count in pairs(total) do
    io.write(string.format("status %d %d\n", status, count))
  end
  io.write(string.format("errors connect %d read %d write %d timeout %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end

function auth_headers()
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("RESMON_BENCH_KEY")
  wrk.headers["Content-Type"] = "application/json"
end
