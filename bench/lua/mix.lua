-- A realistic mix: 1 create, then BENCH_MIX_POLLS (10) polls of existing runs, repeated.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local bench = dofile(here .. "common.lua")

local create, polls
-- Built in init(): wrk sets the Host header only after the script has loaded.
init = function()
  create = bench.create_request()
  polls = bench.poll_requests()
end

local cycle = 1 + (tonumber(os.getenv("BENCH_MIX_POLLS") or "") or 10)
local n, i = 0, 0
request = function()
  n = n % cycle + 1
  if n == 1 then
    return create
  end
  i = i % #polls + 1
  return polls[i]
end

bench.finish()
