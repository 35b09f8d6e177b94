-- wrk script: one GET every <ms> per connection (bench/ingest.py polls /readyz and /metrics with it).
-- args: <ms between requests>
local period = 50

function init(args)
  period = tonumber(args[1] or "50")
end

function delay()
  return period
end
