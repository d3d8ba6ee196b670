-- A list of RESMON_BATCH UsageEvents per request (the plan's payload each); a
-- few bodies are built per thread and sent in turn.
package.path = os.getenv("RESMON_WRK_DIR") .. "/?.lua;" .. package.path
require("common")
auth_headers()
wrk.method = "POST"
wrk.path = "/api/metrics/ingest"

local size = tonumber(os.getenv("RESMON_BATCH"))
local bodies = {}
for b = 1, 8 do
  local events = {}
  for i = 1, size do
    events[i] = string.format(
      '{"customerId":"test-customer","resourceType":"bandwidth","value":%.6f,"unit":"GB"}',
      math.random() * 1000)
  end
  bodies[b] = "[" .. table.concat(events, ",") .. "]"
end
local turn = 0

request = function()
  turn = turn % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[turn])
end
