-- Poll only: GET /runs/{id}, cycling through the ids in BENCH_IDS (runs made beforehand).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local bench = dofile(here .. "common.lua")

local polls
local i = 0
-- Built in init(): wrk sets the Host header only after the script has loaded.
init = function()
  polls = bench.poll_requests()
end

request = function()
  i = i % #polls + 1
  return polls[i]
end

bench.finish()
