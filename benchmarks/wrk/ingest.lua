-- One UsageEvent per request, the original plan's load-test payload: the
-- customer test-customer, bandwidth, a random value below 1000 GB.
package.path = os.getenv("RESMON_WRK_DIR") .. "/?.lua;" .. package.path
require("common")
auth_headers()
wrk.method = "POST"
wrk.path = "/api/metrics/ingest"

request = function()
  local body = string.format(
    '{"customerId":"test-customer","resourceType":"bandwidth","value":%.6f,"unit":"GB"}',
    math.random() * 1000)
  return wrk.format(nil, nil, nil, body)
end
